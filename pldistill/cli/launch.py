"""``pldistill-sweep launch``: run a sweep file on a private local Ray, an existing cluster, or as a Ray Job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pldistill.cli._app import app

__all__ = ["launch_cmd", "submit_as_job", "print_summary"]


@app.command("launch")
def launch_cmd(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep file, e.g. sweeps/smoke.yaml.")],
    address: Annotated[str | None, typer.Option("--address", help="Attach to this Ray cluster (auto, HOST:PORT, "
                                                "ray://...) instead of starting a private local one; "
                                                "http(s)://HEAD:8265 submits the sweep as a Ray Job.")] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", help="CPUs of the local Ray (default: all).")] = None,
    dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard",
                                            help="Start the Ray dashboard (loopback only).")] = True,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Show live progress.")] = True,
    working_dir: Annotated[Path | None, typer.Option(
        "--working-dir", help="Ray Job only: the project directory uploaded as the job's working_dir "
        "(default: the current directory); the sweep file must lie inside it.", show_default=False)] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Ray Job only: stream the job's logs until it ends "
                                         "(exit 0 only if it succeeded; Ctrl-C stops following, not the job).")] = False,
) -> None:
    """Validate SWEEP_FILE, run it with Ray Tune + Optuna, and print the best trials."""
    from rich.console import Console

    from pldistill.sweep.jobs import is_job_address

    console = Console()
    if is_job_address(address):
        raise typer.Exit(submit_as_job(sweep_file, str(address), working_dir or Path.cwd(), follow=follow,
                                       progress=progress, console=console))

    from pldistill.sweep.launch import LaunchOptions, launch

    if address:  # on a cluster (and in a Ray Job) say which copy of the code runs
        import pldistill

        console.print(f"[dim]pldistill {pldistill.__version__} from {Path(pldistill.__file__).parent}[/dim]",
                      highlight=False, soft_wrap=True)
    summary = launch(sweep_file, LaunchOptions(address=address, num_cpus=num_cpus, dashboard=dashboard,
                                               progress=progress), console=console)
    print_summary(summary, console)


def print_summary(summary, console) -> None:
    """The end of ``launch`` and ``resume``: how the sweep's trials stand (the words and counts of
    ``status``), how to continue it when it was interrupted, and its best trials."""
    from pldistill.cli.results import print_best  # duckdb and pyarrow are core dependencies
    from pldistill.results.status import describe_counts

    where = summary.results / summary.name
    took = f" in {summary.wall_s:.0f} s" if summary.wall_s else ""
    console.print(f"sweep [bold]{summary.name}[/bold] {summary.status}: {describe_counts(summary.counts)}{took}; "
                  f"results in {where}", highlight=False, soft_wrap=True)
    console.print("\n".join(summary.protocol), markup=False, highlight=False, soft_wrap=True)
    if summary.status != "finished":
        results = "" if summary.results == Path("results").resolve() else f" --results {summary.results}"
        console.print(f"continue it with: pldistill-sweep resume {summary.name}{results}", highlight=False,
                      soft_wrap=True)
    print_best(summary.results, sweep=summary.name, metric=summary.metric, mode=summary.mode, top=5, console=console,
               protocol=False)


def submit_as_job(sweep_file: Path, address: str, working_dir: Path, *, follow: bool, progress: bool,
                  console) -> int:
    """Validate locally, submit the sweep as a Ray Job, and say how to watch it; returns the exit status."""
    import sys

    from pldistill.cli.jobs import print_followed
    from pldistill.sweep.jobs import build_submission, connect, follow_logs, relative_path_keys, submit
    from pldistill.sweep.load import load_sweep

    sweep = load_sweep(sweep_file)  # fail here, not on the cluster
    job = build_submission(sweep_file, sweep.name, working_dir, () if progress else ("--quiet",))
    relative = relative_path_keys(sweep_file)
    if relative:
        console.print(f"[yellow]note:[/yellow] {', '.join(relative)} relative: on the cluster they resolve "
                      "inside the job's temporary working dir; use absolute paths on shared storage to keep them")
    client, url = connect(address)
    job_id = submit(client, url, job)
    console.print(f"submitted sweep [bold]{sweep.name}[/bold] as Ray Job [bold]{job_id}[/bold] "
                  f"({url}/#/jobs/{job_id})", highlight=False, soft_wrap=True)
    if not follow:
        console.print(f"follow it:  pldistill-sweep logs {job_id} --follow --address {url}\n"
                      f"stop it:    pldistill-sweep stop {job_id} --address {url}", highlight=False, soft_wrap=True)
        return 0
    row = follow_logs(client, url, job_id, lambda chunk: (sys.stdout.write(chunk), sys.stdout.flush()))
    return print_followed(row)
