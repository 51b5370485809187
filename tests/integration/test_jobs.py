"""Sweeps as Ray Jobs against a real local Ray head with its dashboard on 127.0.0.1 and token auth on.

The head is a ``ray start --head --block`` subprocess in its own process group, on free ports and
a private temp dir; the fixture terminates that group (never ``ray stop``: other Ray instances may
run on this machine). Through the CLI only: ``launch --address http://...`` submits a one-trial
sweep, ``jobs`` lists it, ``logs --follow`` streams it to success, ``query`` reads its Parquet;
the job ran the copy of pldistill uploaded in its working_dir; a second job is stopped while it
runs. Wrong, missing and unneeded tokens, and unknown job ids, give one-line errors (exit 2).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from _corpus import SMALL_CORPUS

from pldistill.cli import run_app

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


_SAMPLE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')


def scrape(url: str, sweep: str, timeout: float) -> list[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of the ``pldistill`` series of ``sweep`` in ``url``'s Prometheus text,
    polling until some appear (Ray exports periodically)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                text = r.read().decode()
        except OSError:
            text = ""
        found = []
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m and "pldistill" in m.group(1):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
                if labels.get("sweep") == sweep:
                    found.append((m.group(1), labels, float(m.group(3))))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(2)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _our_processes(marker: str) -> list[int]:
    """Pids whose command line names ``marker`` (our head's private temp dir)."""
    pattern = re.compile(re.escape(marker) + r"(/|\s|$)")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if pattern.search(cmd) and int(entry) != os.getpid():
                pids.append(int(entry))
    return pids


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/gcs_healthz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"Ray dashboard at {url} not healthy after {timeout:.0f} s: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ray_head() -> Iterator[dict[str, str]]:
    """A Ray head (2 CPUs, 2 driver slots) with dashboard, token auth and metrics export on loopback."""
    tmp = tempfile.mkdtemp(prefix="rj", dir="/tmp")
    names = ("port", "dashboard", "agent_http", "agent_grpc", "runtime_env", "metrics", "client", "nm", "om")
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(ports["port"]), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(ports["dashboard"]),
           "--dashboard-agent-listen-port", str(ports["agent_http"]),
           "--dashboard-agent-grpc-port", str(ports["agent_grpc"]),
           "--runtime-env-agent-port", str(ports["runtime_env"]), "--metrics-export-port", str(ports["metrics"]),
           "--ray-client-server-port", str(ports["client"]), "--node-manager-port", str(ports["nm"]),
           "--object-manager-port", str(ports["om"]), "--temp-dir", tmp, "--num-cpus", "2",
           "--resources", json.dumps({"pldistill_driver": 2}), "--object-store-memory", str(200 * 2**20),
           "--disable-usage-stats"]
    log = Path(tmp) / "ray-start.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=tmp)
    url = f"http://127.0.0.1:{ports['dashboard']}"
    try:
        _wait_healthy(url, proc, log)
        yield {"url": url, "token": token, "metrics": f"http://127.0.0.1:{ports['metrics']}/metrics", "tmp": tmp}
    finally:
        _terminate(proc, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _terminate(proc: subprocess.Popen, marker: str) -> None:
    """SIGTERM our head's process group, then SIGKILL whatever of ours is left (by pid)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = _our_processes(marker)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3  # up to 3 s for them to go, polled: most go at once
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = _our_processes(marker)


def _sweep(path: Path, name: str, results: Path, cache: str, epochs: int) -> Path:
    sweep = {
        "name": name,
        "results": str(results),
        "base": {
            "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
            "model": {"teacher": "tiny", "student_llm": "tiny"},
            "train": {"epochs": epochs, "batch_size": 8, "grad_accum": 1, "num_threads": 1},
            "cache_dir": cache,
        },
        "fixed": {"objective": "pl_distill"},
        "search": {"algorithm": "optuna", "num_samples": 1, "max_concurrent_trials": 1, "seed": 5,
                   "space": {"alpha": {"type": "uniform", "low": 0.0, "high": 2.0}}},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1},
    }
    path.write_text(yaml.safe_dump(sweep))
    return path


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = run_app(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _jobs(capsys, url: str) -> dict[str, dict]:
    rc, out, err = _cli(capsys, "jobs", "--address", url, "--format", "json")
    assert rc == 0, err
    return {j["job_id"]: j for j in json.loads(out)}


def _wait_status(capsys, url: str, job_id: str, wanted: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = _jobs(capsys, url)[job_id]
        if job["status"] in wanted or time.monotonic() > deadline:
            return job
        time.sleep(1)


def _project(tmp_path: Path) -> Path:
    """A project dir to upload: a copy of the package, so the test can tell which copy the job ran."""
    proj = tmp_path / "proj"
    shutil.copytree(REPO / "pldistill", proj / "pldistill", ignore=shutil.ignore_patterns("__pycache__"))
    (proj / ".venv").mkdir()
    (proj / ".venv" / "big.bin").write_bytes(b"x" * 1024)  # excluded: must not travel
    return proj


def test_sweep_as_ray_job(ray_head, tmp_path, tiny_cache, capsys, monkeypatch):
    url = ray_head["url"]
    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_head["token"])
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    proj, results = _project(tmp_path), tmp_path / "results"
    sweep = _sweep(proj / "tiny.yaml", "jobtiny", results, tiny_cache, epochs=1)

    rc, out, err = _cli(capsys, "launch", str(sweep), "--address", url, "--working-dir", str(proj))
    assert rc == 0, err
    job_id = re.search(r"as Ray Job (\S+)", out).group(1)
    assert job_id.startswith("pldistill-jobtiny-")

    listed = _jobs(capsys, url)
    assert listed[job_id]["sweep"] == "jobtiny"
    assert listed[job_id]["status"] in {"PENDING", "RUNNING", "SUCCEEDED"}
    monkeypatch.setenv("RAY_ADDRESS", url)  # the default address of the job commands
    rc, out, err = _cli(capsys, "logs", job_id, "--follow")
    assert rc == 0, f"{err}\n{out[-4000:]}"
    assert "SUCCEEDED" in err
    assert re.search(r"trial \w+ completed", out), out[-4000:]
    code_dir = re.search(r"pldistill \S+ from (\S+)", out).group(1)
    assert "working_dir_files" in code_dir and not code_dir.startswith(str(REPO)), code_dir
    uploaded = Path(code_dir).parent  # the head is this machine: look at what travelled
    assert (uploaded / "tiny.yaml").is_file() and not (uploaded / ".venv").exists()
    rc, out, err = _cli(capsys, "logs", job_id)
    assert rc == 0 and re.search(r"trial \w+ completed", out), err

    rc, out, err = _cli(capsys, "query", "select trial_id, status, val_ua from trials", "--results", str(results),
                        "--format", "json")
    assert rc == 0, err
    rows = json.loads(out)
    assert len(rows) == 1 and rows[0]["status"] == "completed" and 0.0 <= rows[0]["val_ua"] <= 1.0
    job = _jobs(capsys, url)[job_id]
    assert job["status"] == "SUCCEEDED" and job["duration_s"] > 0
    # The trial's live metrics reached the head's Prometheus export (tests/integration/test_metrics_export.py
    # checks names, tags and values in detail)
    trial = rows[0]["trial_id"]
    series = scrape(ray_head["metrics"], "jobtiny", timeout=40)
    assert any(name == "ray_pldistill_eval" and tags["trial"] == trial and tags["split"] == "val"
               and 0.0 <= value <= 1.0 for name, tags, value in series), series

    # A second job, stopped while it runs
    long = _sweep(proj / "long.yaml", "jobstop", results, tiny_cache, epochs=30)
    rc, out, err = _cli(capsys, "launch", str(long), "--address", url, "--working-dir", str(proj))
    assert rc == 0, err
    stop_id = re.search(r"as Ray Job (\S+)", out).group(1)
    assert _wait_status(capsys, url, stop_id, {"RUNNING"}, 60)["status"] == "RUNNING"
    rc, out, err = _cli(capsys, "stop", stop_id)
    assert rc == 0 and "stop requested" in out, err
    assert _wait_status(capsys, url, stop_id, {"STOPPED"}, 60)["status"] == "STOPPED"
    rc, out, err = _cli(capsys, "stop", stop_id)
    assert rc == 0 and "already finished (STOPPED)" in out


def _one_line_error(capsys, *args: str) -> str:
    rc, out, err = _cli(capsys, *args)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_token_and_job_id_errors(ray_head, tmp_path, capsys, monkeypatch):
    url = ray_head["url"]
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token

    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert "rejected the Ray auth token" in _one_line_error(capsys, "jobs", "--address", url)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    # 401 (no token sent); 403 if Ray's own loader added one it had cached in this process
    assert "auth token" in _one_line_error(capsys, "jobs", "--address", url)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert "no Ray auth token was found" in _one_line_error(capsys, "jobs", "--address", url)

    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(ray_head["token"] + "\n")
    assert "no job 'nope'" in _one_line_error(capsys, "logs", "nope", "--address", url)
    assert "no job 'nope'" in _one_line_error(capsys, "stop", "nope", "--address", url)
    rc, out, err = _cli(capsys, "jobs", "--address", url)
    assert rc == 0, err
