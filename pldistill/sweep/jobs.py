"""Sweeps as Ray Jobs: submit, list, follow, stop, through the dashboard's job server.

``pldistill-sweep launch SWEEP --address http://HEAD:8265`` submits a Ray Job whose entrypoint is
``pldistill-sweep launch SWEEP --address auto`` on the cluster (the job server sets ``RAY_ADDRESS``
to the cluster's GCS for it). The project directory (the current one, or ``--working-dir``) travels
as the job's ``working_dir``, without virtual environments, results, caches and Git data; the sweep
file must lie inside it. The job then shows on the dashboard's Jobs page with its logs.

Addresses and tokens are found the way Ray's own ``ray job`` CLI finds them: ``--address``, else
``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS``, else ``http://127.0.0.1:8265``; the token from
``RAY_AUTH_TOKEN``, else the file ``RAY_AUTH_TOKEN_PATH`` names, else ``~/.ray/auth_token`` (the
order of Ray 2.60's ``AuthenticationTokenLoader``), sent as ``Authorization: Bearer`` unless
``RAY_AUTH_MODE=disabled``. Every failure is one :class:`PldistillError` line saying what to do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pldistill.errors import InputError, PldistillError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

__all__ = [
    "DEFAULT_ADDRESS",
    "RUNTIME_ENV_EXCLUDES",
    "JobRow",
    "JobSubmission",
    "auth_headers",
    "build_submission",
    "connect",
    "find_auth_token",
    "follow_logs",
    "is_job_address",
    "job_info",
    "job_logs",
    "list_jobs",
    "relative_path_keys",
    "resolve_address",
    "stop_job",
    "submit",
]

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
SWEEP_KEY = "pldistill_sweep"  # job metadata: the sweep's name
#: Paths under the working dir that never travel with a job (Ray also honours .gitignore files).
RUNTIME_ENV_EXCLUDES = [".venv", "venv", ".git", "results", ".pldistill-cache", "__pycache__", "*.egg-info",
                        ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints"]
_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
_TOKEN_HELP = ("copy the head's token (`ray get-auth-token` on the head prints it) into ~/.ray/auth_token, "
               "or set RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH")


def is_job_address(address: str | None) -> bool:
    """True for a dashboard (job server) address, ``http(s)://HOST:PORT``."""
    return bool(address) and str(address).lower().startswith(("http://", "https://"))


def resolve_address(address: str | None, env: Mapping[str, str] | None = None) -> str:
    """The job server to talk to: ``address``, ``RAY_API_SERVER_ADDRESS``, ``RAY_ADDRESS`` or the default.

    >>> resolve_address(None, {"RAY_ADDRESS": "10.0.0.5:8265"})
    'http://10.0.0.5:8265'
    """
    env = os.environ if env is None else env
    value = address or env.get("RAY_API_SERVER_ADDRESS") or env.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    value = value.strip().rstrip("/")
    if value == "auto" or value.startswith("ray://"):
        raise InputError(None, "--address", f"the job commands need the dashboard's address "
                         f"(http://HEAD:8265), got {value!r}")
    return value if "://" in value else f"http://{value}"


def find_auth_token(env: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """The Ray auth token: ``RAY_AUTH_TOKEN``, else the file in ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return env["RAY_AUTH_TOKEN"].strip()
    if env.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(path, "RAY_AUTH_TOKEN_PATH", f"cannot read the token file ({exc.strerror})") from None
        if not token:
            raise InputError(path, "RAY_AUTH_TOKEN_PATH", "the token file is empty")
        return token
    default = (home or Path.home()) / ".ray" / "auth_token"
    try:
        return default.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def auth_headers(env: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` when a token is found (and ``RAY_AUTH_MODE`` is not disabled)."""
    env = os.environ if env is None else env
    mode = env.get("RAY_AUTH_MODE", "").strip().lower()
    if mode == "disabled":
        return {}
    token = find_auth_token(env, home)
    if token:
        return {"Authorization": f"Bearer {token}"}
    if mode == "token":
        raise PldistillError(f"RAY_AUTH_MODE=token but no Ray auth token was found: {_TOKEN_HELP}")
    return {}


@contextmanager
def _ray_errors(address: str, job_id: str | None = None) -> Iterator[None]:
    """Turn the job client's exceptions into one-line errors that say what to do."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        rejected = "403" in str(exc) or "Invalid" in str(exc)
        what = "rejected the Ray auth token" if rejected else "requires a Ray auth token"
        raise PldistillError(f"the Ray dashboard at {address} {what}: {_TOKEN_HELP}") from None
    except ConnectionError as exc:
        raise PldistillError(f"cannot reach the Ray dashboard at {address} ({_first_line(exc)}); is the "
                             "cluster up, and is this its dashboard address? (for cluster.yaml, run "
                             "`ray dashboard cluster.yaml` and use http://127.0.0.1:8265)") from None
    except RuntimeError as exc:
        text = str(exc)
        if job_id is not None and ("404" in text or "does not exist" in text):
            raise PldistillError(f"no job {job_id!r} at {address}; `pldistill-sweep jobs` lists them") from None
        raise PldistillError(f"Ray job server at {address}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def connect(address: str | None = None) -> tuple[JobSubmissionClient, str]:
    """A ``JobSubmissionClient`` for the resolved address (with the auth token), and that address."""
    import requests
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    headers = auth_headers()
    with _ray_errors(url):
        try:
            return JobSubmissionClient(url, headers=headers), url
        except requests.exceptions.RequestException as exc:
            raise ConnectionError(_first_line(exc)) from None


@dataclass
class JobSubmission:
    """What :func:`submit` sends: the entrypoint, runtime env, metadata and a readable id."""

    entrypoint: str
    runtime_env: dict[str, Any]
    submission_id: str
    metadata: dict[str, str] = field(default_factory=dict)


def build_submission(sweep_file: Path, sweep_name: str, working_dir: Path,
                     launch_args: tuple[str, ...] = ()) -> JobSubmission:
    """The job for ``sweep_file``, which must lie inside ``working_dir`` (the directory that travels)."""
    working_dir, sweep_file = Path(working_dir).resolve(), Path(sweep_file).resolve()
    if not working_dir.is_dir():
        raise InputError(working_dir, "--working-dir", "not a directory")
    try:
        relative = sweep_file.relative_to(working_dir)
    except ValueError:
        raise InputError(sweep_file, None, f"the sweep file must lie inside the working dir {working_dir}, "
                         "which is uploaded as the job's working_dir (run from the project root, or pass "
                         "--working-dir)") from None
    args = ["pldistill-sweep", "launch", relative.as_posix(), "--address", "auto", *launch_args]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return JobSubmission(
        entrypoint=shlex.join(args),
        runtime_env={"working_dir": str(working_dir), "excludes": list(RUNTIME_ENV_EXCLUDES)},
        submission_id=f"pldistill-{sweep_name}-{stamp}-{secrets.token_hex(2)}",
        metadata={SWEEP_KEY: sweep_name, "pldistill_sweep_file": relative.as_posix()},
    )


def relative_path_keys(sweep_file: Path) -> list[str]:
    """Keys of the sweep file whose paths are relative (``results`` counts when left out): on a
    cluster they resolve inside the job's temporary working dir and vanish with it."""
    raw = yaml.safe_load(Path(sweep_file).read_text(encoding="utf-8")) or {}
    base = raw.get("base") or {}
    data = base.get("data") or {}
    found = {"results": raw.get("results", "results"), "base.cache_dir": base.get("cache_dir", ".pldistill-cache"),
             "base.data.manifests": data.get("manifests"), "base.data.audio_root": data.get("audio_root")}
    return [k for k, v in found.items() if isinstance(v, str) and not Path(v).expanduser().is_absolute()]


def submit(client: JobSubmissionClient, address: str, job: JobSubmission) -> str:
    """Submit ``job``; returns its id."""
    with _ray_errors(address):
        return client.submit_job(entrypoint=job.entrypoint, runtime_env=job.runtime_env,
                                 submission_id=job.submission_id, metadata=job.metadata)


@dataclass
class JobRow:
    job_id: str
    status: str
    sweep: str
    start: datetime | None
    duration_s: float | None
    message: str = ""


def _row(details: Any, now: float) -> JobRow:
    start_ms, end_ms = details.start_time, details.end_time
    start = datetime.fromtimestamp(start_ms / 1000, tz=timezone.utc) if start_ms else None
    duration = ((end_ms or now * 1000) - start_ms) / 1000 if start_ms else None
    status = getattr(details.status, "value", str(details.status))
    return JobRow(job_id=details.submission_id, status=status, sweep=(details.metadata or {}).get(SWEEP_KEY, ""),
                  start=start, duration_s=duration, message=details.message or "")


def list_jobs(client: JobSubmissionClient, address: str) -> list[JobRow]:
    """Submitted jobs (those ``logs``/``stop`` can name), oldest first; ``sweep`` is empty for non-pldistill jobs."""
    with _ray_errors(address):
        jobs = client.list_jobs()
    now = time.time()
    rows = [_row(j, now) for j in jobs if j.submission_id]
    return sorted(rows, key=lambda r: r.start or datetime.max.replace(tzinfo=timezone.utc))


def job_info(client: JobSubmissionClient, address: str, job_id: str) -> JobRow:
    with _ray_errors(address, job_id):
        return _row(client.get_job_info(job_id), time.time())


def job_logs(client: JobSubmissionClient, address: str, job_id: str) -> str:
    """The logs of ``job_id`` so far."""
    job_info(client, address, job_id)
    with _ray_errors(address, job_id):
        return str(client.get_job_logs(job_id))


def stop_job(client: JobSubmissionClient, address: str, job_id: str) -> bool:
    """Ask the job server to stop ``job_id``; False when it had already finished."""
    job_info(client, address, job_id)  # unknown ids fail here, with the one-line message
    with _ray_errors(address, job_id):
        return bool(client.stop_job(job_id))


def follow_logs(client: JobSubmissionClient, address: str, job_id: str,
                write: Callable[[str], None]) -> JobRow:
    """Stream ``job_id``'s logs to ``write`` until the job ends; returns its final state."""
    job_info(client, address, job_id)
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # "WebSocket closed" lines

    async def _tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    with _ray_errors(address, job_id):
        asyncio.run(_tail())
    row = job_info(client, address, job_id)
    for _ in range(50):  # the log stream can close a moment before the status is final
        if row.status in _TERMINAL:
            break
        time.sleep(0.2)
        row = job_info(client, address, job_id)
    return row
