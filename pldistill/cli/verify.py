"""``pldistill-sweep verify``: rerun a recorded run and say whether it reproduces, or set two sweeps'
records side by side (``--against``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pldistill.cli._app import app
from pldistill.cli.results import ResultsDir

if TYPE_CHECKING:
    from pldistill.sweep.verify import SweepComparison, Verification

__all__ = ["verify", "print_verification", "print_comparison"]


@app.command()
def verify(
    sweep: Annotated[str, typer.Argument(help="The sweep (a folder under --results).")],
    trial: Annotated[str | None, typer.Option("--trial", help="Trial id (default: the sweep's best by its own "
                                              "validation metric).", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Replicate seed of the run (default: the trial's "
                                             "first recorded run).", show_default=False)] = None,
    fold: Annotated[int | None, typer.Option("--fold", min=1, help="Fold of the run (default: the trial's first "
                                             "recorded run).", show_default=False)] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Reuse the artifacts in this cache folder "
                                                   "(default: a fresh temporary one, everything rebuilt).",
                                                   show_default=False)] = None,
    against: Annotated[str | None, typer.Option("--against", help="Rerun nothing: compare SWEEP's recorded "
                                                "environment and run hashes with this sweep's (a name under "
                                                "--results or a sweep folder).", show_default=False)] = None,
    results: ResultsDir = Path("results"),
) -> None:
    """Rerun one (seed, fold) run of a trial from its recorded config, in a temporary folder with clean
    caches, and compare its test predictions' hash with the recorded one: exit 0 when identical, 1
    when it differs (with every way this machine's environment differs from the recorded one)."""
    from pldistill.errors import InputError
    from pldistill.serve._quiet import quiet_hf
    from pldistill.sweep.verify import compare_sweeps, pick_run, verify_run

    if against is not None:
        given = [name for name, v in (("--trial", trial), ("--seed", seed), ("--fold", fold),
                                      ("--cache-dir", cache_dir)) if v is not None]
        if given:
            raise InputError(None, "--against", f"reruns nothing: drop {', '.join(given)}")
        print_comparison(compare_sweeps(results, sweep, against))
        return
    if cache_dir is not None and not cache_dir.is_dir():
        raise InputError(cache_dir, "--cache-dir", "not a folder")
    run = pick_run(results, sweep, trial=trial, seed=seed, fold=fold)
    where = f"caches reused from {cache_dir}" if cache_dir is not None else "clean caches in a temporary folder"
    typer.echo(f"verify {run.sweep}: trial {run.trial_id}, seed {run.seed}, fold {run.fold} ({where})")
    with quiet_hf():  # weights written and read back, the libraries' FutureWarnings: not this command's words
        checked = verify_run(run, cache_dir=cache_dir, log=typer.echo)
    if not print_verification(checked):
        raise typer.Exit(1)


def _text(value: Any) -> str:
    if value is None:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value)


def _env_table(title: str, diff: list[tuple[str, Any, Any]], columns: tuple[str, str]) -> None:
    from pldistill.cli._table import new_table, print_table

    typer.echo(title)  # a line of its own: a table's title wraps at the table's width
    table = new_table(None, ("key", *columns), whole=("key",))
    for key, a, b in diff:
        table.add_row(key, _text(a), _text(b))
    print_table(table)


def print_verification(v: Verification) -> bool:
    """Print a rerun beside its record; True when identical."""
    run = v.run
    typer.echo(f"trial {run.trial_id}, seed {run.seed}, fold {run.fold}")
    typer.echo(f"recorded: {run.recorded_sha256}")
    missing = f"(no predictions: {v.failure or 'none written'})"
    typer.echo(f"rerun:    {v.rerun_sha256 or missing}")
    if v.reused_cache is not None:
        typer.echo(f"note: caches reused from {v.reused_cache}: an artifact built differently here would not show")
    if not run.config.train.num_threads:
        typer.echo("note: the trial does not pin train.num_threads: this rerun used this process's torch "
                   "threads, the sweep's workers their own, and the count alone changes results")
    if (run.num_workers or 1) > 1:
        typer.echo(f"note: the sweep ran this trial on {run.num_workers} workers, the rerun on one process")
    if v.environment is None:
        typer.echo("environment: the sweep recorded none (an older sweep)")
    elif v.environment:
        _env_table("environment: where this machine differs from the recorded one", v.environment,
                   ("recorded", "here"))
    else:
        typer.echo("environment: as recorded")
    if v.identical:
        typer.echo("verdict: identical (the rerun's test predictions equal the recorded ones to the last bit)")
    else:
        typer.echo("verdict: differs (the rerun's test predictions are not the recorded ones)")
    return v.identical


def print_comparison(c: SweepComparison) -> None:
    """Print two sweeps' environments and shared runs side by side."""
    from pldistill.cli._table import new_table, print_table

    if c.environment is None:
        typer.echo("environment: not recorded by both sweeps")
    elif c.environment:
        _env_table(f"environment: where {c.name} and {c.other} differ", c.environment, (c.name, c.other))
    else:
        typer.echo("environment: recorded the same")
    table = new_table("runs in both (trials matched by config, not by id)",
                      ("trial", "other trial", "seed", "fold", "sha256", "other sha256", "verdict"),
                      right=("seed", "fold"), whole=("trial", "other trial", "sha256", "other sha256"))
    for r in c.runs:
        table.add_row(r.trial, r.other_trial, str(r.seed), str(r.fold), r.sha256 or "", r.other_sha256 or "", r.verdict)
    print_table(table, empty="(no run recorded by both)")
    counts = {v: sum(r.verdict == v for r in c.runs) for v in ("equal", "different", "no hash")}
    typer.echo(f"{len(c.runs)} runs in both: {counts['equal']} equal, {counts['different']} different, "
               f"{counts['no hash']} without a hash; {c.only_here} only in {c.name}, {c.only_other} only in {c.other}")
