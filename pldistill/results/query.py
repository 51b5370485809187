"""SQL over a results folder: an in-memory DuckDB that can read nothing but the results.

:func:`open_results` loads every sweep's Parquet files into the tables ``trials`` and ``epochs``
(columns unioned by name: sweeps differ in their ``hp_*`` columns) and the ``sweep.json`` files
into ``sweeps``, then locks the database down before any user SQL runs:

* ``enable_external_access=false``: no file or network access from SQL (COPY, read_csv, ATTACH,
  EXPORT/IMPORT DATABASE, INSTALL/LOAD, Python replacement scans);
* ``disabled_filesystems='LocalFileSystem'``: the same again at the file-system layer;
* ``temp_directory=''``: a large query fails with "out of memory" rather than spilling to ``.tmp/``;
* extension auto-install/auto-load off;
* ``lock_configuration=true``: none of the above can be ``SET`` or ``RESET`` back.

:func:`run_query` further accepts exactly one read-only statement (SELECT, DESCRIBE, SHOW,
SUMMARIZE, PIVOT, EXPLAIN).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from pldistill.errors import InputError, did_you_mean
from pldistill.results.schema import epochs_schema, sweeps_schema, trials_schema
from pldistill.results.status import COMPLETED, TRIAL_STATUSES, describe_counts
from pldistill.results.store import read_sweep_metas, readable_files, result_files

if TYPE_CHECKING:
    import duckdb

__all__ = ["open_results", "run_query", "best_trials", "sweep_status", "resolve_column", "default_mode",
           "rank_key"]

_LOCKDOWN = (
    "SET temp_directory=''",
    "SET python_enable_replacements=false",
    "SET autoinstall_known_extensions=false",
    "SET autoload_known_extensions=false",
    "SET allow_community_extensions=false",
    "SET disabled_filesystems='LocalFileSystem'",
    "SET enable_external_access=false",
    "SET lock_configuration=true",
)
_NUMERIC = re.compile(r"^(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|DOUBLE|FLOAT|REAL|DECIMAL.*)$")
_DEFAULT_STATUS_METRIC = "val_ua"


def _duckdb_message(exc: Exception) -> str:
    """The first line of a DuckDB error, plus its "Did you mean ..." hint when it has one."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    hint = [ln for ln in lines[1:] if ln.startswith(("Did you mean", "Candidate"))]
    return " ".join(lines[:1] + hint[:1]) or type(exc).__name__


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _load_parquet(con: duckdb.DuckDBPyConnection, table: str, files: list[Path], empty: pa.Schema,
                  root: Path) -> None:
    import duckdb

    files = readable_files(files, empty)  # an unreadable file is skipped with a warning, not fatal
    if not files:
        con.register("_pldistill_empty", empty.empty_table())
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM _pldistill_empty")
        con.unregister("_pldistill_empty")
        return
    try:  # explicit file list: temp files never match; hive_partitioning off so 'a=b' names add no column
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet($files, union_by_name=true, "
                    "hive_partitioning=false, filename=true)", {"files": [str(f) for f in files]})
        # the folder is the sweep (<sweep>/<kind>/<id>.parquet): a sweep folder copied under another name
        # counts once under each name, never twice under the name its rows were written with
        if "sweep" in _columns(con, table):
            con.execute(f"UPDATE {table} SET sweep = regexp_extract(filename, '([^/]+)/[^/]+/[^/]+$', 1)")
        con.execute(f"ALTER TABLE {table} DROP COLUMN filename")
    except duckdb.Error as exc:
        raise InputError(root, None, f"cannot load {table}: {_duckdb_message(exc)}") from exc


def _timestamp(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        return None  # a hand-edited sweep.json should not block every query
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)


def _sweeps_table(root: Path) -> pa.Table:
    rows = []
    for meta in read_sweep_metas(root):
        row = {k: (str(meta[k]) if meta.get(k) is not None else None)
               for k in ("name", "sweep_file", "status", "metric", "mode", "pldistill_version", "git_commit")}
        row["started_at"] = _timestamp(meta.get("started_at"))
        row["ended_at"] = _timestamp(meta.get("ended_at"))
        row["config_json"] = json.dumps(meta["config"]) if meta.get("config") is not None else None
        version = meta.get("schema_version")
        row["schema_version"] = version if isinstance(version, int) and not isinstance(version, bool) else None
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=sweeps_schema())


def open_results(root: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory, locked-down DuckDB with tables ``trials``, ``epochs`` and ``sweeps`` of ``root``."""
    import duckdb

    root = Path(root)
    if not root.is_dir():
        raise InputError(root, None, "no results folder here (run a sweep, or pass --results DIR)")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone='UTC'")
        _load_parquet(con, "trials", result_files(root, "trials"), trials_schema(), root)
        _load_parquet(con, "epochs", result_files(root, "epochs"), epochs_schema(), root)
        con.register("_pldistill_sweeps", _sweeps_table(root))
        con.execute("CREATE TABLE sweeps AS SELECT * FROM _pldistill_sweeps")
        con.unregister("_pldistill_sweeps")
        for statement in _LOCKDOWN:
            con.execute(statement)
    except BaseException:
        con.close()
        raise
    return con


def _execute(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object] | None = None) -> pa.Table:
    import duckdb

    try:
        rel = con.sql(sql, params=params)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    except duckdb.Error as exc:
        raise InputError(None, "query", _duckdb_message(exc)) from exc


def run_query(root: str | Path, sql: str) -> pa.Table:
    """The result of one read-only SQL statement over ``root``'s results; SQL errors are InputError."""
    import duckdb

    con = open_results(root)
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise InputError(None, "query", _duckdb_message(exc)) from exc
        if len(statements) != 1:
            raise InputError(None, "query", f"expected exactly one SQL statement, got {len(statements)}")
        kind = statements[0].type
        # MULTI is how DuckDB parses PIVOT (it defines an enum type, then selects).
        if kind not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.MULTI):
            raise InputError(None, "query", f"only read-only queries (SELECT, DESCRIBE, SHOW, SUMMARIZE, "
                                            f"PIVOT, EXPLAIN) are allowed, got {kind.name}")
        return _execute(con, sql)
    finally:
        con.close()


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {name: typ for name, typ, *_ in con.execute(f"DESCRIBE {table}").fetchall()}


def resolve_column(columns: dict[str, str], name: str, what: str, *, numeric: bool = False) -> str:
    """``name`` as a column of ``columns`` (``weighting`` finds ``hp_weighting``); InputError listing the
    available ones otherwise."""
    candidates = {c: t for c, t in columns.items() if not numeric or _NUMERIC.match(t)}
    for col in (name, f"hp_{name}"):
        if col in candidates:
            return col
    kind = "numeric column" if numeric else "column"
    # the closest names (hp_ columns by their short names, which resolve too), not every column of every sweep
    close = did_you_mean(name.removeprefix("hp_"), [c.removeprefix("hp_") for c in candidates])
    hps = [c for c in candidates if c.startswith("hp_")]
    hint = (f"; did you mean {close}?" if close else
            (f"; hyperparameters: {', '.join(hps)}" if hps else "") + "; all columns: query 'DESCRIBE trials'")
    raise InputError(None, what, f"unknown {kind} {name!r}{hint}")


def rank_key(value: float, trial_id: str, mode: str, sweep: str = "") -> tuple[float, str, str]:
    """The one order of "best": the metric (``mode``), then ties go to the lower sweep name, then
    the lower trial id. Live progress, the launch summary, ``best``, ``export`` and the report all
    rank by it (in SQL through :func:`_order_sql`, which must agree)."""
    return (-float(value) if mode == "max" else float(value), sweep, trial_id)


def _order_sql(metric: str, mode: str) -> str:
    """:func:`rank_key` as an SQL ORDER BY list."""
    return f"{_ident(metric)} {'DESC' if mode == 'max' else 'ASC'}, sweep, trial_id"


def default_mode(metric: str) -> str:
    """``min`` for losses and times, ``max`` for scores."""
    return "min" if "loss" in metric or metric in ("wall_s",) else "max"


def _known_sweeps(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute("SELECT name FROM sweeps UNION SELECT DISTINCT sweep FROM trials ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def best_trials(root: str | Path, *, metric: str = "test_ua", mode: str | None = None, by: str | None = None,
                sweep: str | None = None, top: int = 1) -> pa.Table:
    """The ``top`` completed trials by ``metric`` overall, or per value of column ``by``.

    Columns: ``rank``, the ``by`` column, ``sweep``, ``trial_id``, the metric, then all other columns.
    The schema metadata names the resolved ``pldistill.metric``, ``pldistill.mode`` and ``pldistill.by``.
    """
    if top < 1:
        raise InputError(None, "top", f"expected a number >= 1, got {top}")
    con = open_results(root)
    try:
        cols = _columns(con, "trials")
        m = resolve_column(cols, metric, "metric", numeric=True)
        mode = mode or default_mode(m)
        if mode not in ("max", "min"):
            raise InputError(None, "mode", f"expected max or min, got {mode!r}")
        group = resolve_column(cols, by, "by") if by else None
        params: dict[str, object] = {"top": top}
        where = f"status = '{COMPLETED}' AND {_ident(m)} IS NOT NULL AND NOT isnan({_ident(m)}::DOUBLE)"
        if sweep is not None:
            known = _known_sweeps(con)
            if sweep not in known:
                raise InputError(None, "sweep", f"unknown sweep {sweep!r}; known: {', '.join(known) or 'none'}")
            where += " AND sweep = $sweep"
            params["sweep"] = sweep
        lead = list(dict.fromkeys([*([group] if group else []), "sweep", "trial_id", m]))
        lead_sql = ", ".join(_ident(c) for c in lead)
        partition = f"PARTITION BY {_ident(group)}" if group else ""
        order = f"{_ident(group)} NULLS LAST, rank" if group else "rank"
        sql = (f"WITH ranked AS (SELECT row_number() OVER ({partition} ORDER BY {_order_sql(m, mode)}) "
               f"AS rank, * FROM trials WHERE {where}) "
               f"SELECT rank, {lead_sql}, * EXCLUDE (rank, {lead_sql}) FROM ranked "
               f"WHERE rank <= $top ORDER BY {order}")
        meta = {"pldistill.metric": m, "pldistill.mode": mode, "pldistill.by": group or ""}
        table = _execute(con, sql, params)
        if group:  # every group tried, also those whose trials were all pruned or failed
            tally_where = "sweep = $sweep" if sweep is not None else "true"
            table = _with_group_tallies(con, table, group, m, tally_where, {k: v for k, v in params.items() if k != "top"})
        return table.replace_schema_metadata(meta)
    finally:
        con.close()


def _with_group_tallies(con: duckdb.DuckDBPyConnection, table: pa.Table, group: str, metric: str, where: str,
                        params: dict[str, object]) -> pa.Table:
    """``table`` (the best rows per ``group``) with a column ``trials``, how the group's trials ended
    ("2 completed, 1 pruned"), and one row (rank empty) for each group with no completed trial."""
    tallies = _execute(con, f"SELECT {_ident(group)} AS grp, {_status_counts('status', 'trial_id')} "
                            f"FROM trials WHERE {where} GROUP BY ALL ORDER BY grp NULLS LAST", params).to_pylist()
    text = {_group_key(t["grp"]): describe_counts(t, skip_zero=True) for t in tallies}
    rows = table.to_pylist()
    ranked = {_group_key(r[group]) for r in rows}
    rows += [{group: t["grp"]} for t in tallies if _group_key(t["grp"]) not in ranked]
    for row in rows:
        row["trials"] = text.get(_group_key(row[group]), "")
        if row.get("rank") is None and "completed" in row["trials"]:  # all of them NaN or missing
            row["trials"] += f"; none with a {metric}"
    schema = table.schema.append(pa.field("trials", pa.string()))
    rows.sort(key=lambda r: (r[group] is None, r[group] if r[group] is not None else 0, r.get("rank") or 0))
    return pa.Table.from_pylist(rows, schema=schema)


def _group_key(value: object) -> str:
    return json.dumps(value, default=str)


def sweep_status(root: str | Path) -> pa.Table:
    """One row per sweep: its status, trial counts by status, and its best trial by the sweep's own
    metric and mode (``val_ua``/max when sweep.json names none)."""
    con = open_results(root)
    try:
        counts = _execute(con, f"""
            WITH names AS (SELECT name AS sweep FROM sweeps UNION SELECT DISTINCT sweep FROM trials)
            SELECT n.sweep, any_value(s.status) AS status, any_value(s.started_at) AS started_at,
                   count(t.trial_id) AS total, {_status_counts("t.status", "t.trial_id")},
                   any_value(s.metric) AS metric, any_value(s.mode) AS mode
            FROM names n LEFT JOIN sweeps s ON s.name = n.sweep LEFT JOIN trials t ON t.sweep = n.sweep
            GROUP BY n.sweep ORDER BY n.sweep""")
        cols = _columns(con, "trials")
        rows = counts.to_pylist()
        for row in rows:
            row["metric"] = row["metric"] or _DEFAULT_STATUS_METRIC
            row["mode"] = row["mode"] if row["mode"] in ("max", "min") else default_mode(row["metric"])
            row["best"], row["best_trial"], row["best_seeds"] = _best_of(con, cols, row["sweep"], row["metric"],
                                                                         row["mode"])
        schema = counts.schema.append(pa.field("best", pa.float64())).append(pa.field("best_trial", pa.string()))
        schema = schema.append(pa.field("best_seeds", pa.string()))
        return pa.Table.from_pylist(rows, schema=schema)
    finally:
        con.close()


def _status_counts(status: str, what: str) -> str:
    """SQL columns ``completed, pruned, failed, running``: how many ``what`` have each status."""
    return ", ".join(f"count({what}) FILTER (WHERE {status} = '{word}') AS {word}" for word in TRIAL_STATUSES)


def _best_of(con: duckdb.DuckDBPyConnection, cols: dict[str, str], sweep: str, metric: str,
             mode: str) -> tuple[float | None, str | None, str | None]:
    """The best completed trial's figure and id, and its seeds as ``<used> (<why no more>)``."""
    if metric not in cols or not _NUMERIC.match(cols[metric]):
        return None, None, None
    m = _ident(metric)
    # sweeps from before adaptive replication have no seeds_used/seeds_stop columns
    seeds = "seeds_used, seeds_stop" if {"seeds_used", "seeds_stop"} <= cols.keys() else "NULL, NULL"
    found = con.execute(
        f"SELECT {m}::DOUBLE, trial_id, {seeds} FROM trials WHERE sweep = $sweep AND status = '{COMPLETED}' "
        f"AND {m} IS NOT NULL AND NOT isnan({m}::DOUBLE) ORDER BY {_order_sql(metric, mode)} LIMIT 1",
        {"sweep": sweep}).fetchone()
    if not found:
        return None, None, None
    used = None if found[2] is None else f"{found[2]}" + (f" ({found[3]})" if found[3] else "")
    return found[0], found[1], used
