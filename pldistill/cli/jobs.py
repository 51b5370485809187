"""``jobs``, ``logs`` and ``stop``: sweeps submitted as Ray Jobs (``launch SWEEP --address http://HEAD:8265``).

Each command talks to the dashboard's job server: ``--address``, else ``RAY_API_SERVER_ADDRESS`` /
``RAY_ADDRESS``, else ``http://127.0.0.1:8265``; the Ray auth token is found as Ray's own clients
find it (see :mod:`pldistill.sweep.jobs`).
"""

from __future__ import annotations

import enum
import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from pldistill.cli._app import app

if TYPE_CHECKING:
    from pldistill.sweep.jobs import JobRow

__all__ = ["jobs_cmd", "logs_cmd", "stop_cmd", "print_followed"]

Address = Annotated[str | None, typer.Option(
    "--address", help="Ray dashboard address, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, "
    "$RAY_ADDRESS, else http://127.0.0.1:8265).", show_default=False)]
JobId = Annotated[str, typer.Argument(help="Job id, as `pldistill-sweep jobs` lists it.")]


class JobsFormat(str, enum.Enum):
    table = "table"
    json = "json"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _json_row(row: JobRow) -> dict[str, object]:
    return {"job_id": row.job_id, "status": row.status, "sweep": row.sweep,
            "start": row.start.isoformat() if row.start else None, "duration_s": row.duration_s,
            "message": row.message}


@app.command("jobs")
def jobs_cmd(
    address: Address = None,
    fmt: Annotated[JobsFormat, typer.Option("--format", help="table for people; json for scripts.")]
    = JobsFormat.table,
) -> None:
    """List the jobs submitted to the cluster: id, status, sweep, start, duration."""
    from pldistill.sweep.jobs import connect, list_jobs

    client, url = connect(address)
    rows = list_jobs(client, url)
    if fmt is JobsFormat.json:
        sys.stdout.write(json.dumps([_json_row(r) for r in rows], indent=2) + "\n")
        return
    from pldistill.cli._table import new_table, print_table, table_console

    if not rows:
        table_console().print(f"no jobs at {url}")
        return
    # the full job id: `logs` and `stop` take it
    table = new_table(f"Ray jobs at {url}", ("job id", "status", "sweep", "start", "duration"),
                      whole=("job id", "start"))
    for r in rows:
        start = r.start.astimezone().strftime("%Y-%m-%d %H:%M:%S") if r.start else ""
        table.add_row(r.job_id, r.status, r.sweep, start, _duration(r.duration_s))
    print_table(table)


def print_followed(row: JobRow) -> int:
    """The last line after following a job: its final status; exit status 0 only for SUCCEEDED."""
    if row.status == "SUCCEEDED":
        print(f"job {row.job_id} SUCCEEDED after {_duration(row.duration_s)}", file=sys.stderr)
        return 0
    detail = f": {row.message.splitlines()[0]}" if row.message.strip() else ""
    print(f"job {row.job_id} {row.status}{detail}", file=sys.stderr)
    return 1


@app.command("logs")
def logs_cmd(
    job_id: JobId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until the job ends; exit 0 only if "
                                         "it succeeded (Ctrl-C stops following, not the job).")] = False,
    address: Address = None,
) -> None:
    """Print a job's logs (the sweep's own output: progress, trials, the best results)."""
    from pldistill.sweep.jobs import connect, follow_logs, job_logs

    client, url = connect(address)
    if follow:
        row = follow_logs(client, url, job_id, lambda chunk: (sys.stdout.write(chunk), sys.stdout.flush()))
        raise typer.Exit(print_followed(row))
    sys.stdout.write(job_logs(client, url, job_id))


@app.command("stop")
def stop_cmd(job_id: JobId, address: Address = None) -> None:
    """Stop a running job (its trials are stopped with it; finished trials' results stay)."""
    from pldistill.sweep.jobs import connect, job_info, stop_job

    client, url = connect(address)
    if stop_job(client, url, job_id):
        print(f"stop requested for job {job_id}; `pldistill-sweep jobs` shows when it has STOPPED")
    else:
        print(f"job {job_id} had already finished ({job_info(client, url, job_id).status})")
