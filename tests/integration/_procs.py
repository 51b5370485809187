"""Running ``pldistill-sweep`` as a real process that tests can kill, and finding the processes of
one private Ray instance (by the ``RAY_TMPDIR`` in their environment, so other Ray instances on the
machine are never touched)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import yaml
from _corpus import SMALL_CORPUS

CLI = str(Path(sys.executable).with_name("pldistill-sweep"))


def start_cli(args: list[str], ray_tmp: str, log: Path) -> subprocess.Popen:
    """``pldistill-sweep ARGS`` in its own session, with its own ``RAY_TMPDIR``; output to ``log``."""
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    fh = open(log, "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen([CLI, *args], env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def ray_processes(ray_tmp: str) -> list[psutil.Process]:
    """Every live process that belongs to the Ray instance using ``ray_tmp``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid == os.getpid():
                continue
            env = proc.environ()
            cmd = " ".join(proc.cmdline())
            if env.get("RAY_TMPDIR") == ray_tmp or ray_tmp in cmd:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_for(what: str, cond: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    """Poll ``cond`` every 0.5 s; fail with the process's log if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None and not cond():
            raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{_tail(log)}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{_tail(log)}")


def sigkill_and_wait(proc: subprocess.Popen, ray_tmp: str, timeout: float = 120) -> None:
    """SIGKILL the launcher alone (as a preempted machine would lose it), then wait until every
    process of its Ray instance has gone too (Ray's processes share the driver's fate).

    Up to two minutes: most go within seconds, but with two Ray instances on 2 busy cores two of a
    killed instance's processes were once still there after 60 s. If any outlive the wait, the
    failure names them (what they are, their parent, their age), so a leak can be told from a slow exit."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + timeout
    while ray_processes(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = ray_processes(ray_tmp)
    described = [_describe(p) for p in left]
    for p in left:  # do not leak into the next test, whatever happened
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    assert not left, f"Ray processes outlived their killed driver by {timeout:.0f} s: {described}"


def _describe(p: psutil.Process) -> str:
    try:
        return (f"pid {p.pid} ppid {p.ppid()} age {time.time() - p.create_time():.0f}s "
                f"{' '.join(p.cmdline())[:120]!r}")
    except psutil.Error:
        return f"pid {p.pid} (gone)"


def stop(proc: subprocess.Popen, ray_tmp: str) -> None:
    """Best-effort cleanup for a test's finally: kill the CLI's session and its Ray instance."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    for p in ray_processes(ray_tmp):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _tail(log: Path | None, n: int = 40) -> str:
    if log is None or not log.is_file():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def registered_checkpoint_epochs(train_root: Path) -> list[int]:
    """Epochs of the trial checkpoints Ray Train has *registered* under ``train_root`` (a checkpoint
    folder is uploaded before the controller registers it, and only registered ones are handed to a
    restarted worker group)."""
    from pldistill.train.checkpoint import load_state

    found = []
    for snap in Path(train_root).rglob("checkpoint_manager_snapshot.json"):
        try:
            names = [c["checkpoint_dir_name"] for c in json.loads(snap.read_text())["checkpoint_results"]]
            found += [load_state(snap.parent / n).epoch for n in names]
        except (ValueError, KeyError, TypeError, AttributeError):  # being written right now
            continue
    return sorted(found)


def tune_checkpoint_epochs(experiment: Path) -> list[int]:
    """Epochs of the latest checkpoint of each trial in Tune's experiment snapshot at ``experiment``
    (``<results>/<name>/ray-tune/<name>``): where in-process trials resume from when the sweep is
    restored (a checkpoint Tune holds only in memory is lost with the launcher)."""
    from ray.tune import ExperimentAnalysis

    from pldistill.train.checkpoint import load_state

    if not any(Path(experiment).glob("experiment_state-*.json")):
        return []
    try:
        trials = ExperimentAnalysis(str(experiment)).trials
        states = [load_state(Path(t.checkpoint.path)) for t in trials if t.checkpoint is not None]
        return sorted(s.epoch for s in states if s is not None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # a snapshot or checkpoint being written
        return []


def tune_checkpoint_paths(experiment: Path) -> list[Path]:
    """The latest checkpoint folder of each unfinished trial as Tune's experiment snapshot at
    ``experiment`` names it (whether or not it still exists)."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(experiment)).trials
    return [Path(t.checkpoint.path) for t in trials
            if t.checkpoint is not None and t.status not in ("TERMINATED", "ERROR")]


def tiny_sweep(name: str, tmp_path: Path, cache: str, search: dict, *, epochs: int = 1,
               max_steps_per_epoch: int | None = None, fixed: dict | None = None,
               failures: dict | None = None, workers: int = 1) -> Path:
    """Write a sweep file on the synthetic corpus with tiny models (fold 1, ``workers`` 1-CPU workers
    per trial, results under ``tmp_path/results``) and return its path."""
    train = {"epochs": epochs, "batch_size": 8, "grad_accum": 1, "num_threads": 1}
    if max_steps_per_epoch:
        train["max_steps_per_epoch"] = max_steps_per_epoch
    sweep = {"name": name, "results": str(tmp_path / "results"),
             "base": {"data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS}, "train": train,
                      "cache_dir": cache},
             "search": search, "resources": {"workers_per_trial": workers, "cpus_per_worker": 1},
             **({"fixed": fixed} if fixed else {}), **({"failures": failures} if failures else {})}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def launch_locally(path: Path, monkeypatch):
    """``launch`` on a private 2-CPU Ray with its own temp dir, always shut down."""
    import ray

    from pldistill.sweep.launch import LaunchOptions, launch

    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    try:
        return launch(path, LaunchOptions(num_cpus=2, dashboard=False, progress=False, ray_tmpdir=ray_tmp))
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
