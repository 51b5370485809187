"""``query``, ``best`` and ``status``: questions about the Parquet results of sweeps.

Every command reads ``--results DIR`` (env ``PLDISTILL_RESULTS``, default ``results/``), prints a
rich table, or CSV/JSON on stdout with ``--format`` for scripts, and never writes a file.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pldistill.cli._app import app

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

__all__ = ["query", "best", "status", "print_best", "print_protocol"]


class OutputFormat(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"


class Mode(str, enum.Enum):
    max = "max"
    min = "min"


ResultsDir = Annotated[Path, typer.Option("--results", envvar="PLDISTILL_RESULTS",
                                          help="Results folder (one sub-folder per sweep).")]
Format = Annotated[OutputFormat, typer.Option("--format", help="table for people; csv or json for scripts.")]

#: Columns ``best`` shows in a table (all columns go to csv/json).
_BEST_COLUMNS = ("sweep", "trial_id", "val_ua", "test_ua", "test_wa", "test_f1", "objective", "best_epoch",
                 "seeds_used", "seeds_stop")


def _plain(value: object) -> object:
    """A JSON-able value: NaN -> None, datetimes -> ISO strings, nested values converted too."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "" if value is None else "nan"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, dict)):
        return json.dumps(_plain(value))
    return str(value)


def _emit(table: pa.Table, fmt: OutputFormat, *, title: str | None = None,
          columns: tuple[str, ...] | list[str] | None = None, console: Console | None = None,
          caption: str | None = None) -> None:
    """Print ``table``: rich (only ``columns`` when given, ``caption`` under it), or every column as
    CSV/JSON on stdout."""
    rows = table.to_pylist()
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps([_plain(r) for r in rows], indent=2, allow_nan=False, ensure_ascii=False) + "\n")
        return
    if fmt is OutputFormat.csv:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(table.column_names)
        for r in rows:
            writer.writerow(["" if v is None else (json.dumps(_plain(v)) if isinstance(v, (list, dict))
                                                   else _plain(v)) for v in r.values()])
        return
    from pldistill.cli._table import new_table, print_table

    shown = [c for c in (columns or table.column_names) if c in table.column_names]
    numeric = [c for c in shown if _is_number(table.schema.field(c).type)]
    out = new_table(title, shown, right=numeric, whole=("trial_id", "best_trial", "sweep"), caption=caption,
                    caption_justify="left")
    for r in rows:
        out.add_row(*(_cell(r[c]) for c in shown))
    print_table(out, console, empty="[dim](no rows)[/dim]")


def _is_number(typ: object) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ))  # type: ignore[arg-type]


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="One SQL statement over tables trials, epochs and sweeps.")],
    results: ResultsDir = Path("results"),
    fmt: Format = OutputFormat.table,
) -> None:
    """Run one read-only SQL query (DuckDB) over the results; the SQL can read no other file and write none.

    Example: pldistill-sweep query "SELECT hp_weighting, avg(test_ua) FROM trials GROUP BY ALL"
    """
    from pldistill.results.query import run_query

    _emit(run_query(results, sql), fmt)


@app.command()
def best(
    metric: Annotated[str, typer.Option(help="Column to rank by (a val_ metric: ranking by test is "
                                              "selecting on test).")] = "val_ua",
    mode: Annotated[Mode | None, typer.Option(help="max or min (default: min for losses and wall_s, "
                                                    "max otherwise).", show_default=False)] = None,
    by: Annotated[str | None, typer.Option("--by", help="Best per value of this column "
                                                        "(weighting means hp_weighting).")] = None,
    sweep: Annotated[str | None, typer.Option(help="Only this sweep.")] = None,
    top: Annotated[int, typer.Option(min=1, help="Trials per group.")] = 1,
    results: ResultsDir = Path("results"),
    fmt: Format = OutputFormat.table,
) -> None:
    """Print the best completed trial(s), overall or per group."""
    print_best(results, metric=metric, mode=mode.value if mode else None, by=by, sweep=sweep, top=top, fmt=fmt)


def print_best(results: Path, *, metric: str = "val_ua", mode: str | None = None, by: str | None = None,
               sweep: str | None = None, top: int = 1, fmt: OutputFormat = OutputFormat.table,
               console: Console | None = None, protocol: bool = True) -> None:
    """What ``best`` prints, for other commands (``launch`` shows the best trials of its sweep, and its
    protocol itself): the table, then (as a table) the protocol block of each sweep's trials shown."""
    from pldistill.results.query import best_trials

    table = best_trials(results, metric=metric, mode=mode, by=by, sweep=sweep, top=top)
    meta = table.schema.metadata or {}
    metric_col, group = meta[b"pldistill.metric"].decode(), meta.get(b"pldistill.by", b"").decode()
    table = with_run_intervals(table, metric_col)
    ci = f"{metric_col} 95% CI"
    shown = list(dict.fromkeys(["rank", *([group, "trials"] if group else []), "sweep", "trial_id", metric_col,
                                *([ci] if ci in table.column_names else []), *_BEST_COLUMNS]))
    title = f"best by {metric_col} ({meta[b'pldistill.mode'].decode()})" + (f" per {group}" if group else "")
    legend = ((table.schema.metadata or {}).get(b"pldistill.intervals") or b"").decode() or None
    _emit(table, fmt, title=title, columns=shown, console=console, caption=legend)
    if protocol and fmt is OutputFormat.table:
        print_protocol(table.to_pylist(), console=console)


def print_protocol(rows: list[dict], *, console: Console | None = None) -> None:
    """The protocol block (:mod:`pldistill.results.protocol`) of ``rows``' trials, one per sweep."""
    from rich.console import Console

    from pldistill.results.protocol import protocol_lines, sweep_protocol

    console = console or Console(file=sys.stdout)  # soft_wrap below: prose is never cut to a width
    for name in dict.fromkeys(str(r.get("sweep")) for r in rows):
        lines = protocol_lines(sweep_protocol(r for r in rows if str(r.get("sweep")) == name), per_row_note=False)
        console.print(f"\nsweep {name}, the trials above. " + "\n".join(lines), markup=False, highlight=False,
                      soft_wrap=True)


def with_run_intervals(table, metric: str):
    """``table`` with a column ``<metric> 95% CI``: the mean ± half-width of the t interval over each
    trial's (seed, fold) runs, with n and the interval's marker (when the runs record ``metric``); the
    markers' legend is the schema metadata ``pldistill.intervals``."""
    import pyarrow as pa

    from pldistill.results.stats import format_estimate, interval_legend, runs_estimate

    if "fold_metrics" not in table.column_names:
        return table
    runs = table.column("fold_metrics").to_pylist()
    if not any(metric in (r or {}) for rows in runs for r in rows or []):
        return table
    ests = [runs_estimate(rows or [], metric) for rows in runs]
    out = table.append_column(f"{metric} 95% CI", pa.array([format_estimate(e, marker=True) for e in ests], pa.string()))
    legend = interval_legend(e.kind for e in ests if e.has_interval)
    return out.replace_schema_metadata({**(out.schema.metadata or {}), b"pldistill.intervals": "\n".join(legend)}) \
        if legend else out


@app.command()
def status(
    results: ResultsDir = Path("results"),
    fmt: Format = OutputFormat.table,
) -> None:
    """List sweeps with trial counts (total/completed/failed/running/pruned) and the best trial."""
    from pldistill.results.query import sweep_status

    table = sweep_status(results)
    shown = [c for c in table.column_names if c != "mode"]  # mode is implied by the metric; csv/json keep it
    _emit(table, fmt, title=f"sweeps in {results}", columns=shown)
