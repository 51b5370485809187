"""``pldistill-sweep prepare``: build what a sweep's trials read; ``cache``: list (and prune) the entries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pldistill.cli._app import app

__all__ = ["prepare_cmd", "cache_cmd"]


@app.command("prepare")
def prepare_cmd(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep file, e.g. sweeps/smoke.yaml.")],
    address: Annotated[str | None, typer.Option("--address", help="Build on this Ray cluster instead of a "
                                                "private local one.")] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", help="CPUs of the local Ray (default: all).")] = None,
) -> None:
    """Build every artifact SWEEP_FILE's trials read, each once, folds side by side (launch does it too).

    For every variant and sampled objective: the corpus, each fold's features, teacher (fine-tuned or
    scored), eGeMAPS and EmoDistill teachers, the student prior and each fold's teacher cache (Ray
    Data), under the sweep's cache_dir. Prints each entry, built or reused, and where it is.
    """
    from pldistill.cli._table import new_table, print_table
    from pldistill.sweep.launch import prepare_sweep
    from pldistill.sweep.load import load_sweep

    sweep = load_sweep(sweep_file)
    report = prepare_sweep(sweep, log=typer.echo, address=address, num_cpus=num_cpus)
    table = new_table(f"{sweep.name}: prepared", ["artifact", "fold", "", "s", "entry"], right=["s"],
                      whole=["entry"])
    for e in report.entries:
        table.add_row(e.artifact, "" if e.fold is None else str(e.fold), "built" if e.built else "reused",
                      f"{e.seconds:.1f}", e.path)
    print_table(table)
    built = sum(e.built for e in report.entries)
    typer.echo(f"{built} built, {len(report.entries) - built} reused in {report.wall_s:.1f} s")


@app.command("cache")
def cache_cmd(
    cache_dir: Annotated[Path, typer.Option("--cache-dir", help="The cache folder (a sweep's base.cache_dir).")]
    = Path(".pldistill-cache"),
    results: Annotated[Path, typer.Option("--results", help="Results root whose sweeps may use the entries.")]
    = Path("results"),
    gc: Annotated[bool, typer.Option("--gc", help="Remove the entries no sweep under --results uses.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="With --gc: do not ask first.")] = False,
) -> None:
    """List the artifact entries under --cache-dir: key, size, age and the sweeps under --results that
    read them (from their sweep.json). --gc removes the unused ones (after asking, unless --yes)."""
    from pldistill.cli._table import new_table, print_table
    from pldistill.errors import InputError
    from pldistill.prepare.inventory import attach_users, cache_entries, remove_entry
    from pldistill.results.store import read_sweep_metas

    if not cache_dir.is_dir():
        raise InputError(cache_dir, "--cache-dir", "no such folder")
    entries = cache_entries(cache_dir)
    unknown = attach_users(entries, read_sweep_metas(results))
    table = new_table(f"{cache_dir}: {len(entries)} entries", ["artifact", "key", "size", "age", "used by"],
                      right=["size", "age"], whole=["key"])
    for e in entries:
        table.add_row(e.artifact, e.key, _size(e.bytes), _age(e.age_s), ", ".join(e.users) or "-")
    print_table(table)
    if unknown:
        typer.echo(f"sweeps under {results} that recorded no artifacts (launched by an older version): "
                   + ", ".join(unknown))
    if not gc:
        return
    if unknown:  # what they read cannot be told: removing "unused" entries might remove theirs
        raise InputError(results, "--gc", "refused: some sweeps recorded no artifacts (listed above); "
                                          "move them aside or launch them again with this version")
    unused = [e for e in entries if not e.users]
    if not unused:
        typer.echo("nothing to remove: every entry is used")
        return
    freed = sum(e.bytes for e in unused)
    if not yes and not typer.confirm(f"remove {len(unused)} unused entries ({_size(freed)})?"):
        raise typer.Exit(1)
    for e in unused:
        remove_entry(e)
    typer.echo(f"removed {len(unused)} entries, {_size(freed)} freed")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _age(s: float) -> str:
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"
