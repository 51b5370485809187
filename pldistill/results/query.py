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

from pldistill.errors import InputError
from pldistill.results.schema import epochs_schema, sweeps_schema, trials_schema
from pldistill.results.store import read_sweep_metas, readable_files, result_files

if TYPE_CHECKING:
    import duckdb

__all__ = ["open_results", "run_query", "best_trials", "sweep_status", "resolve_column", "default_mode"]

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
                    "hive_partitioning=false)", {"files": [str(f) for f in files]})
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
    raise InputError(None, what, f"unknown {kind} {name!r}; available: {', '.join(candidates)}")


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
        where = f"status = 'completed' AND {_ident(m)} IS NOT NULL AND NOT isnan({_ident(m)}::DOUBLE)"
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
        sql = (f"WITH ranked AS (SELECT row_number() OVER ({partition} ORDER BY {_ident(m)} "
               f"{'DESC' if mode == 'max' else 'ASC'}, sweep, trial_id) AS rank, * FROM trials WHERE {where}) "
               f"SELECT rank, {lead_sql}, * EXCLUDE (rank, {lead_sql}) FROM ranked "
               f"WHERE rank <= $top ORDER BY {order}")
        meta = {"pldistill.metric": m, "pldistill.mode": mode, "pldistill.by": group or ""}
        return _execute(con, sql, params).replace_schema_metadata(meta)
    finally:
        con.close()


def sweep_status(root: str | Path) -> pa.Table:
    """One row per sweep: its status, trial counts by status, and its best trial by the sweep's own
    metric and mode (``val_ua``/max when sweep.json names none)."""
    con = open_results(root)
    try:
        counts = _execute(con, """
            WITH names AS (SELECT name AS sweep FROM sweeps UNION SELECT DISTINCT sweep FROM trials)
            SELECT n.sweep, any_value(s.status) AS status, any_value(s.started_at) AS started_at,
                   count(t.trial_id) AS total,
                   count(t.trial_id) FILTER (WHERE t.status = 'completed') AS completed,
                   count(t.trial_id) FILTER (WHERE t.status = 'failed') AS failed,
                   count(t.trial_id) FILTER (WHERE t.status = 'running') AS running,
                   count(t.trial_id) FILTER (WHERE t.status = 'pruned') AS pruned,
                   any_value(s.metric) AS metric, any_value(s.mode) AS mode
            FROM names n LEFT JOIN sweeps s ON s.name = n.sweep LEFT JOIN trials t ON t.sweep = n.sweep
            GROUP BY n.sweep ORDER BY n.sweep""")
        cols = _columns(con, "trials")
        rows = counts.to_pylist()
        for row in rows:
            row["metric"] = row["metric"] or _DEFAULT_STATUS_METRIC
            row["mode"] = row["mode"] if row["mode"] in ("max", "min") else default_mode(row["metric"])
            row["best"], row["best_trial"] = _best_of(con, cols, row["sweep"], row["metric"], row["mode"])
        schema = counts.schema.append(pa.field("best", pa.float64())).append(pa.field("best_trial", pa.string()))
        return pa.Table.from_pylist(rows, schema=schema)
    finally:
        con.close()


def _best_of(con: duckdb.DuckDBPyConnection, cols: dict[str, str], sweep: str, metric: str,
             mode: str) -> tuple[float | None, str | None]:
    if metric not in cols or not _NUMERIC.match(cols[metric]):
        return None, None
    m = _ident(metric)
    found = con.execute(
        f"SELECT {m}::DOUBLE, trial_id FROM trials WHERE sweep = $sweep AND status = 'completed' "
        f"AND {m} IS NOT NULL AND NOT isnan({m}::DOUBLE) ORDER BY {m} {'DESC' if mode == 'max' else 'ASC'}, "
        "trial_id LIMIT 1", {"sweep": sweep}).fetchone()
    return (found[0], found[1]) if found else (None, None)
