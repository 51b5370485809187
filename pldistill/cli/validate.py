"""``pldistill-sweep validate``: check sweep files without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pldistill.cli._app import app


@app.command()
def validate(
    sweeps: Annotated[list[Path], typer.Argument(help="Sweep files (sweeps/*.yaml).", metavar="SWEEP.yaml...",
                                                     show_default=False)],
    check_paths: Annotated[bool, typer.Option(
        "--check-paths", help="Also require manifests, audio and model folders to exist.")] = False,
) -> None:
    """Validate sweep files: one 'ok' line per good file, every problem of the others (exit status 2)."""
    from pldistill.errors import PldistillError
    from pldistill.sweep.load import SweepFileError, load_sweep

    failed = 0
    for path in sweeps:
        try:
            sweep = load_sweep(path, check_paths=check_paths)
        except SweepFileError as err:
            failed += 1
            for line in err.problems:
                typer.echo(line, err=True)
            continue
        typer.echo(f"ok: {path} ({sweep.summary()})")
    if failed:  # run_app prints it as ``error: ...`` and exits with status 2
        raise PldistillError(f"{failed} of {len(sweeps)} sweep file(s) have problems (listed above)")
