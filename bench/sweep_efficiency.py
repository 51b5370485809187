"""How much of the smoke sweep's wall time is spent training, and where the rest goes.

Efficiency = time inside the training loops / (wall time x concurrent trial slots). The sweep is
``sweeps/smoke.yaml`` unchanged except for ``results`` (a temp folder) and ``base.cache_dir``, launched
through :func:`pldistill.sweep.launch.launch` in a child process with a private Ray (``RAY_TMPDIR`` and
``ray_tmpdir`` in a fresh short folder under /tmp, no dashboard). Sources of each figure:

* the child wraps ``prepare_sweep`` (and the ``prepare_fold``, ``ensure_teacher`` and
  ``ensure_student_llm`` it calls), ``_start_ray``, ``Tuner.fit`` and ``ray.shutdown`` with timers
  (wrappers installed in the child; no pldistill code is changed);
* the results Parquet gives each trial's training time (sum of its epochs' ``wall_s``), its window
  (``started_at`` .. ``ended_at``, written by the recorder in the launching process) and, for completed
  trials, ``run_trial``'s own ``wall_s``;
* the private Ray's Train logs (``<session>/logs/train/*.log``, JSON lines) give, per trial, when its
  Train controller logged first and when its worker group had started;
* what ``run_trial`` does besides training is not recorded, so one smoke trial is run through
  ``run_trial`` in a fresh process (torch imported first, as Ray Train's worker has it) with timers
  around the imports a worker makes after torch (transformers' model classes, peft, pldistill),
  ``prepare_fold``, ``ensure_teacher``, the student build, ``_evaluate`` (val and test, every
  epoch), ``_save_student`` and the per-epoch checkpoint. Those costs are applied to each sweep
  trial's epochs (marked "est.");
* Ray's start and stop alone are timed in another child, with the arguments ``launch`` uses.

Since issue #17 the smoke sweep's one-worker trials run in the Tune trial's own process, which Tune
reuses: they leave no Train log marks (their start is in "rest"), and only the first trial of each
process pays the calibrated set-up, so the "est." rows overstate the others (their "rest" is negative).

The bench cache is shared with ``step_breakdown.py``. When it lacks the tiny teacher or the student
prior the run is cold: ``prepare_sweep`` builds the corpus and features, fine-tunes the teacher and
pre-trains the student prior before Ray starts. ``--cold`` forces a cold run on a fresh, empty cache;
``--cold --warm`` runs the sweep twice (cold, then warm on the same cache). Every Ray process this
bench starts belongs to its private instance; any still alive after a child exits is terminated by
pid (found by the private folder in its command line). ``ray stop`` is never called.

    .venv/bin/python bench/sweep_efficiency.py            # warm: about 3-4 minutes
    .venv/bin/python bench/sweep_efficiency.py --cold --warm    # about 8-10 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from _util import DEFAULT_CACHE, REPO, SMOKE, smoke_trial_config, table

CHILD_TIMEOUT_S = 1200
#: Ray Train 2.60 log messages that mark a trial's worker group as started.
_WG_STARTED = "Started training worker group"

# ------------------------------------------------------------------ child processes


def _record(spans: dict[str, list[list[float]]], obj: Any, name: str, key: str) -> None:
    """Replace ``obj.name`` by a wrapper that appends ``[start, end]`` (epoch seconds) to ``spans[key]``."""
    original = getattr(obj, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            spans.setdefault(key, []).append([t0, time.time()])

    setattr(obj, name, timed)


def child_sweep(sweep_file: str, ray_tmp: str, cache_dir: str) -> dict[str, Any]:
    """Run ``launch`` on ``sweep_file``; the timestamps of its phases."""
    marks = {"child_start": time.time()}
    import ray
    from ray import tune

    import pldistill.sweep.launch as launch_mod
    import pldistill.train.dataset as dataset_mod
    import pldistill.train.student_prior as prior_mod
    import pldistill.train.teacher as teacher_mod

    spans: dict[str, list[list[float]]] = {}
    _record(spans, launch_mod, "prepare_sweep", "prepare_sweep")
    # prepare_sweep imports these at call time, so it picks up the wrappers (in this process only).
    _record(spans, dataset_mod, "prepare_fold", "prep_data")
    _record(spans, teacher_mod, "ensure_teacher", "prep_teacher")
    _record(spans, prior_mod, "ensure_student_llm", "prep_prior")
    _record(spans, launch_mod, "_start_ray", "ray_start")
    _record(spans, tune.Tuner, "fit", "tune_fit")
    _record(spans, ray, "shutdown", "ray_shutdown")
    marks["launch_start"] = time.time()
    opts = launch_mod.LaunchOptions(dashboard=False, progress=False, ray_tmpdir=ray_tmp)
    summary = launch_mod.launch(Path(sweep_file), opts)
    marks["launch_end"] = time.time()
    return {"marks": marks, "spans": spans, "counts": summary.counts}


def child_ray_start(sweep_file: str, ray_tmp: str, cache_dir: str) -> dict[str, Any]:
    """``import ray``, Ray's start as ``launch`` does it (``_start_ray``) and ``ray.shutdown``, in seconds."""
    t0 = time.time()
    import ray

    from pldistill.sweep import load_sweep
    from pldistill.sweep.launch import LaunchOptions, _start_ray

    t1 = time.time()
    _start_ray(load_sweep(sweep_file), LaunchOptions(dashboard=False, progress=False, ray_tmpdir=ray_tmp))
    t2 = time.time()
    ray.shutdown()
    return {"import_ray": t1 - t0, "ray_init": t2 - t1, "ray_shutdown": time.time() - t2}


def child_trial(sweep_file: str, ray_tmp: str, cache_dir: str) -> dict[str, Any]:
    """One smoke trial through ``run_trial``; seconds of each call of its non-training parts."""
    import torch  # noqa: F401  (a Ray Train worker has torch loaded before the train function runs)

    t0 = time.perf_counter()
    import peft  # noqa: F401  (imported on first use by build_student)
    import transformers
    from transformers import Qwen2AudioForConditionalGeneration  # noqa: F401  (lazily loaded submodules)

    import pldistill.train.trial as trial
    from pldistill.prepare import prepare_trial

    calls: dict[str, list[float]] = {"import": [time.perf_counter() - t0]}
    transformers.utils.logging.disable_progress_bar()
    keys = {"prepare_fold": "data", "ensure_teacher": "teacher", "ensure_student_llm": "student",
            "load_student_llm": "student", "build_student": "student", "_evaluate": "eval",
            "_save_student": "save", "_save_checkpoint": "checkpoint"}

    def timed(fn: Any, key: str) -> Any:
        def inner(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                calls.setdefault(key, []).append(time.perf_counter() - t)
        return inner

    for name, key in keys.items():
        setattr(trial, name, timed(getattr(trial, name), key))
    cfg = smoke_trial_config(Path(cache_dir), Path(ray_tmp).parent / "calibration")
    with contextlib.redirect_stdout(sys.stderr):  # run_trial's progress lines
        result = trial.run_trial(prepare_trial(cfg), report=lambda metrics, row, ckpt: None)
    epochs = [e for f in result.folds for e in f.epochs]
    return {"calls": calls, "train_s": sum(e["wall_s"] for e in epochs), "epochs": len(epochs),
            "wall_s": result.wall_s}


CHILDREN = {"sweep": child_sweep, "ray-start": child_ray_start, "trial": child_trial}


def _leftovers(tag: str) -> list[int]:
    """Pids of processes whose command line names ``tag`` (this run's private Ray folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if tag in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(entry.name))
    return pids


def _run_child(mode: str, root: Path, sweep_file: Path, cache: Path) -> tuple[dict[str, Any], float, float]:
    """Run this file as child ``mode``; returns (its result, its start time, its wall seconds)."""
    ray_tmp, out, log = root / "ray", root / f"{mode}.json", root / f"{mode}.log"
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(sweep_file), str(ray_tmp),
           str(cache), str(out)]
    start = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    wall = time.time() - start
    deadline = time.time() + 10  # Ray's own processes exit shortly after the driver
    while _leftovers(str(ray_tmp)) and time.time() < deadline:
        time.sleep(0.5)
    stray = _leftovers(str(ray_tmp))
    for pid in stray:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if stray:
        print(f"  (terminated {len(stray)} leftover process(es) of this run's private Ray: {stray})")
    if rc != 0 or not out.exists():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise SystemExit(f"child {mode} failed (exit {rc}); log {log}:\n{tail}")
    return json.loads(out.read_text()), start, wall


# ------------------------------------------------------------------ per-trial figures


@dataclass
class TrialCosts:
    """Seconds per call of what ``run_trial`` does besides training (from :func:`child_trial`)."""

    calls: dict[str, list[float]]
    train_s: float
    epochs: int
    wall_s: float

    def per_call(self, key: str) -> float:
        xs = self.calls.get(key, [])
        return sum(xs) / len(xs) if xs else 0.0

    @property
    def setup(self) -> float:
        """Once per trial (the smoke sweep has one fold): imports, data, teacher and student."""
        return sum(sum(self.calls.get(k, [])) for k in ("import", "data", "teacher", "student"))

    def in_loop(self, epochs: int, saves: int) -> dict[str, float]:
        return {"setup": self.setup, "eval": epochs * 2 * self.per_call("eval"),
                "checkpoint": epochs * self.per_call("checkpoint") + saves * self.per_call("save")}


@dataclass
class TrialRow:
    trial_id: str
    status: str
    epochs: int
    saves: int  # epochs that were their fold's best so far (each writes the best student)
    start: float
    end: float
    train_s: float
    run_trial_s: float | None  # run_trial's own wall (completed trials only)
    controller_s: float | None = None  # trial start -> first log line of its Train controller
    worker_group_s: float | None = None  # controller's first line -> worker group started

    @property
    def window(self) -> float:
        return self.end - self.start


def _train_log_marks(ray_tmp: Path) -> dict[str, dict[str, float]]:
    """Per Train run name: ``first`` controller line and ``started`` worker group (epoch seconds)."""
    marks: dict[str, dict[str, float]] = defaultdict(dict)
    for path in sorted((ray_tmp / "session_latest" / "logs" / "train").glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
                name, ts, comp = rec["run_name"], rec["timestamp_ns"] / 1e9, rec["component"]
            except (ValueError, KeyError, TypeError):
                continue
            if comp == "controller":
                marks[name]["first"] = min(ts, marks[name].get("first", ts))
                if str(rec.get("message", "")).startswith(_WG_STARTED):
                    marks[name].setdefault("started", ts)
    return marks


def _trial_rows(results: Path, ray_tmp: Path) -> list[TrialRow]:
    from pldistill.results import read_epochs, read_trials

    epochs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in read_epochs(results, "smoke").to_pylist():
        epochs[e["trial_id"]].append(e)
    logs = _train_log_marks(ray_tmp)
    rows = []
    for t in read_trials(results, "smoke").to_pylist():
        eps = sorted(epochs[t["trial_id"]], key=lambda e: (e["fold"], e["epoch"]))
        saves, best = 0, {}
        for e in eps:
            if e["fold"] not in best or e["val_ua"] > best[e["fold"]]:
                saves, best[e["fold"]] = saves + 1, e["val_ua"]
        row = TrialRow(t["trial_id"], t["status"], len(eps), saves, t["started_at"].timestamp(),
                       (t["ended_at"] or t["started_at"]).timestamp(), sum(e["wall_s"] for e in eps),
                       t["wall_s"] if t["status"] == "completed" else None)
        mark = logs.get(f"train-{t['trial_id']}", {})
        if "first" in mark and "started" in mark:
            row.controller_s, row.worker_group_s = mark["first"] - row.start, mark["started"] - mark["first"]
        rows.append(row)
    return sorted(rows, key=lambda r: r.start)


# ------------------------------------------------------------------ report


def _span(child: dict[str, Any], key: str) -> float:
    return sum(b - a for a, b in child["spans"].get(key, []))


def breakdown(child: dict[str, Any], start: float, wall: float, rows: list[TrialRow],
              costs: TrialCosts) -> list[tuple[str, float]]:
    """(label, seconds) rows that add up to ``wall``."""
    m, sp = child["marks"], child["spans"]
    fit0, fit1 = sp["tune_fit"][0]
    est = [costs.in_loop(r.epochs, r.saves) for r in rows]
    inside = {
        "trials: Tune trial driver + Train controller start": sum(r.controller_s or 0.0 for r in rows),
        "trials: worker group start (actors, torch.distributed)": sum(r.worker_group_s or 0.0 for r in rows),
        "trials: imports, data, teacher load, student build (est.)": sum(e["setup"] for e in est),
        "trials: training loops (epochs' wall_s)": sum(r.train_s for r in rows),
        "trials: evaluation, val + test every epoch (est.)": sum(e["eval"] for e in est),
        "trials: checkpoints + best-student saves (est.)": sum(e["checkpoint"] for e in est),
    }
    windows = sum(r.window for r in rows)
    return [
        ("python start + imports (pldistill, ray)", m["launch_start"] - start),
        ("load sweep + prepare_sweep (corpus, teacher, prior)",
         sp["prepare_sweep"][0][1] - m["launch_start"]),
        ("Ray start (_start_ray)", _span(child, "ray_start")),
        ("Tuner set-up, sweep.json", fit0 - sp["ray_start"][0][1]),
        *inside.items(),
        ("trials: rest of windows (reports, checkpoint upload, stop)", windows - sum(inside.values())),
        ("Tune between trial windows (trial actors, search, teardown)", (fit1 - fit0) - windows),
        ("after fit: sweep.json, Ray shutdown", m["launch_end"] - fit1),
        ("process exit", start + wall - m["launch_end"]),
    ]


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def print_trials(rows: list[TrialRow], costs: TrialCosts) -> None:
    out = []
    for r in rows:
        est = costs.in_loop(r.epochs, r.saves)
        known = r.train_s + sum(est.values()) + (r.controller_s or 0.0) + (r.worker_group_s or 0.0)
        out.append([r.trial_id, r.status, r.epochs, r.window, _fmt(r.controller_s), _fmt(r.worker_group_s),
                    est["setup"], r.train_s, est["eval"] + est["checkpoint"], r.window - known,
                    _fmt(r.run_trial_s), _fmt(r.train_s + sum(est.values()) if r.run_trial_s else None)])
    print(table(["trial", "status", "epochs", "window", "driver+ctrl", "worker grp", "setup est",
                 "train", "eval+ckpt est", "rest", "run_trial", "run_trial est"], out))
    if any(r.controller_s is None for r in rows):
        print("(no Ray Train log marks for some trials: their driver/worker-group time is in 'rest')")


def print_report(kind: str, child: dict[str, Any], start: float, wall: float, rows: list[TrialRow],
                 costs: TrialCosts, slots: int) -> None:
    cache = "empty cache" if kind == "cold" else "warm cache"
    print(f"\n=== {kind} sweep ({cache}), trials {child['counts']} | per-trial seconds ===")
    print_trials(rows, costs)
    parts = breakdown(child, start, wall, rows, costs)
    print()
    print(table(["where the wall time goes", "s", "% of wall"],
                [[k, s, 100 * s / wall] for k, s in parts] + [["total wall (child process)", wall, 100.0]]))
    train = sum(r.train_s for r in rows)
    fit0, fit1 = child["spans"]["tune_fit"][0]
    per_trial = (sum(r.window for r in rows) - train) / max(1, len(rows))
    print(f"(prepare_sweep {_span(child, 'prepare_sweep'):.1f} s: data {_span(child, 'prep_data'):.1f} s, "
          f"teacher {_span(child, 'prep_teacher'):.1f} s, student prior {_span(child, 'prep_prior'):.1f} s; "
          f"Ray shutdown {_span(child, 'ray_shutdown'):.1f} s)\n"
          f"training {train:.1f} s in {sum(r.epochs for r in rows)} epochs of {len(rows)} trials | "
          f"wall {wall:.1f} s x {slots} slot(s)\n"
          f"efficiency = training / (wall x slots)        = {train / (wall * slots):.3f}\n"
          f"             training / (Tune fit x slots)    = {train / ((fit1 - fit0) * slots):.3f}\n"
          f"             training / sum of trial windows  = {train / sum(r.window for r in rows):.3f}\n"
          f"non-training time per trial window: {per_trial:.1f} s "
          f"(vs {train / max(1, sum(r.epochs for r in rows)):.2f} s of training per epoch)")


def print_calibration(costs: TrialCosts, ray_alone: dict[str, float]) -> None:
    labels = [("import", "imports after torch: transformers, peft, pldistill"),
              ("data", "prepare_fold (cached features)"),
              ("teacher", "ensure_teacher (hash + load by path)"),
              ("student", "ensure_student_llm, load, build (3 calls)"),
              ("eval", "_evaluate (val or test)"), ("checkpoint", "epoch checkpoint (save_pretrained)"),
              ("save", "best student save")]
    rows: list[list[object]] = [[text, f"{costs.per_call(k):.3f}", len(costs.calls.get(k, []))]
                                for k, text in labels]
    rows.append(["training, per epoch", f"{costs.train_s / max(1, costs.epochs):.3f}", costs.epochs])
    print("\n=== one smoke trial in a fresh process (run_trial, 1 thread, warm cache): seconds per call ===")
    print(table(["part", "s/call", "calls"], rows))
    print(f"run_trial wall {costs.wall_s:.1f} s, of which training {costs.train_s:.1f} s "
          f"({100 * costs.train_s / costs.wall_s:.0f}%)")
    print(f"\n=== Ray alone (launch's arguments, no dashboard): import ray {ray_alone['import_ray']:.1f} s, "
          f"ray.init {ray_alone['ray_init']:.1f} s, ray.shutdown {ray_alone['ray_shutdown']:.1f} s ===")


# ------------------------------------------------------------------ main


def _write_sweep(root: Path, cache_dir: Path) -> Path:
    """smoke.yaml with ``results`` and ``base.cache_dir`` pointing into the bench's folders."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw["results"] = str(root / "results")
    raw.setdefault("base", {})["cache_dir"] = str(cache_dir)
    path = root / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _is_warm(cache_dir: Path) -> bool:
    subs = [cache_dir / "teachers", cache_dir / "students"]
    return all(sub.is_dir() and any(sub.iterdir()) for sub in subs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--cold", action="store_true", help="run the sweep on a fresh, empty cache")
    ap.add_argument("--warm", action="store_true", help="with --cold: then run it again on that cache")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (results, Ray logs)")
    args = ap.parse_args()
    started = time.time()
    # Short: Ray's socket paths below it must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="pldb-", dir="/tmp"))
    cache = root / "cache" if args.cold else args.cache_dir
    if args.cold and args.warm:
        runs = ["cold", "warm"]
    else:
        runs = ["cold" if args.cold or not _is_warm(cache) else "warm"]
    print(f"temp folder {root} | cache {cache} | sweep runs: {', '.join(runs)}")
    slots = int(yaml.safe_load(SMOKE.read_text())["search"]["max_concurrent_trials"])
    try:
        sweep_file = _write_sweep(root, cache)
        ray_alone, _, _ = _run_child("ray-start", root, sweep_file, cache)
        swept = []
        for kind in runs:
            shutil.rmtree(root / "results", ignore_errors=True)  # one sweep's results at a time
            child, t0, wall = _run_child("sweep", root, sweep_file, cache)
            swept.append((kind, child, t0, wall, _trial_rows(root / "results", root / "ray")))
            print(f"  {kind} sweep: {wall:.0f} s")
        costs = TrialCosts(**_run_child("trial", root, sweep_file, cache)[0])
        print_calibration(costs, ray_alone)
        for kind, child, t0, wall, rows in swept:
            print_report(kind, child, t0, wall, rows, costs, slots)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nbench total {time.time() - started:.0f} s")


def _child_main(mode: str, sweep_file: str, ray_tmp: str, cache_dir: str, out: str) -> None:
    Path(out).write_text(json.dumps(CHILDREN[mode](sweep_file, ray_tmp, cache_dir)))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        _child_main(*sys.argv[2:])
    else:
        main()
