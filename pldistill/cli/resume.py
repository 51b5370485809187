"""``pldistill-sweep resume``: continue an interrupted sweep where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pldistill.cli._app import app

__all__ = ["resume_cmd"]


@app.command("resume")
def resume_cmd(
    name: Annotated[str, typer.Argument(help="The sweep's name (its folder under the results root).")],
    results: Annotated[Path, typer.Option("--results", help="Results root the sweep wrote to.")] = Path("results"),
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", help="CPUs of the local Ray (default: all).")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Attach to this Ray cluster instead of "
                                                "starting a private local one.")] = None,
    dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard",
                                            help="Start the Ray dashboard (loopback only).")] = True,
    progress: Annotated[bool, typer.Option("--progress/--quiet", help="Show live progress.")] = True,
) -> None:
    """Continue sweep NAME with the config it started with: finished trials are kept, unfinished ones
    carry on from their last epoch checkpoint, and the searcher (Optuna's study) picks up where it was.
    (Launching the same sweep file again does the same.)"""
    from rich.console import Console

    from pldistill.sweep.launch import LaunchOptions, resume

    console = Console()
    summary = resume(name, results, LaunchOptions(address=address, num_cpus=num_cpus, dashboard=dashboard,
                                                  progress=progress), console=console)
    from pldistill.cli.launch import print_summary

    print_summary(summary, console)
