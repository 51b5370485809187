"""``pldistill-sweep launch``: run a sweep file on a private local Ray or an existing cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pldistill.cli._app import app

__all__ = ["launch_cmd"]


@app.command("launch")
def launch_cmd(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep file, e.g. sweeps/smoke.yaml.")],
    address: Annotated[str | None, typer.Option("--address", help="Attach to this Ray cluster instead of "
                                                "starting a private local one.")] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", help="CPUs of the local Ray (default: all).")] = None,
    dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard",
                                            help="Start the Ray dashboard (loopback only).")] = True,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Show live progress.")] = True,
) -> None:
    """Validate SWEEP_FILE, run it with Ray Tune + Optuna, and print the best trials."""
    from rich.console import Console

    from pldistill.sweep.launch import LaunchOptions, launch

    console = Console()
    summary = launch(sweep_file, LaunchOptions(address=address, num_cpus=num_cpus, dashboard=dashboard,
                                               progress=progress), console=console)
    c = summary.counts
    console.print(f"sweep [bold]{summary.name}[/bold]: {c.get('completed', 0)} completed, "
                  f"{c.get('failed', 0)} failed in {summary.wall_s:.0f} s; results in {summary.results / summary.name}")
    try:
        from pldistill.cli.results import print_best

        print_best(summary.results, sweep=summary.name, top=5, console=console)
    except ImportError:
        pass
