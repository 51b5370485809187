"""Writing and reading sweep results on disk.

Layout under a results root::

    <root>/<sweep>/sweep.json                  sweep metadata (SWEEP_META_KEYS)
    <root>/<sweep>/trials/<trial_id>.parquet   one row: the trial
    <root>/<sweep>/epochs/<trial_id>.parquet   the trial's rows, one per (fold, epoch)

One file per trial makes writes idempotent (a trial written again replaces its file) and a
half-finished sweep readable. Every write goes to ``.<name>.tmp-<random>`` in the target folder,
is fsynced and then renamed into place, so a reader sees the old file or the new one, never part
of one; readers skip names starting with a dot. Folders are created user-only (0o700).
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from pldistill import __version__
from pldistill._fs import atomic_write, private_dirs
from pldistill.errors import DiskFullError, InputError
from pldistill.results.schema import (
    SCHEMA_VERSION,
    EpochRecord,
    TrialRecord,
    epochs_schema,
    epochs_table,
    trials_schema,
    trials_table,
    validate_sweep_meta,
)

__all__ = ["ResultsStore", "read_trials", "read_epochs", "read_sweep_metas", "list_sweeps", "result_files",
           "readable_files", "unreadable_files", "git_commit"]

SWEEP_FILE = "sweep.json"

log = logging.getLogger(__name__)


@functools.cache
def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the pldistill source tree when it is a git checkout, else None.

    Only the folder holding the package is asked (an installed copy inside some other
    repository must not report that repository's commit). Never raises.
    """
    tree = Path(__file__).resolve().parents[2]
    if not (tree / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) >= 40 else None


def _check_name(value: str, what: str) -> str:
    """A sweep name or trial id that is safe as one path component."""
    if (not isinstance(value, str) or not value or value.startswith(".") or len(value) > 200
            or any(c in value for c in "/\\\0")):
        raise InputError(None, what, f"{value!r} cannot be a file name (no '/', '\\', leading '.' or empty)")
    return value


class ResultsStore:
    """Writes one sweep's results under ``<root>/<sweep>/`` (atomic, idempotent per trial)."""

    def __init__(self, root: str | Path, sweep: str) -> None:
        self.root = Path(root)
        self.sweep = _check_name(sweep, "sweep name")
        self._ready = False

    @property
    def sweep_dir(self) -> Path:
        return self.root / self.sweep

    def trial_path(self, trial_id: str) -> Path:
        return self.sweep_dir / "trials" / f"{_check_name(trial_id, 'trial_id')}.parquet"

    def epochs_path(self, trial_id: str) -> Path:
        return self.sweep_dir / "epochs" / f"{_check_name(trial_id, 'trial_id')}.parquet"

    def check_writable(self) -> None:
        """Prove the sweep's folders can be created and written, without leaving anything behind:
        a probe file goes into each folder's nearest existing ancestor and is removed at once.
        InputError naming the folder otherwise. Call before any work starts."""
        folder = self.sweep_dir
        try:
            for sub in ("trials", "epochs"):
                folder = self.sweep_dir / sub
                existing = next(p for p in (folder, *folder.parents) if p.exists())
                if not existing.is_dir():
                    raise NotADirectoryError(20, f"{existing} is not a folder", str(existing))
                fd, probe = tempfile.mkstemp(prefix=".probe.tmp-", dir=existing)
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            raise InputError(folder, None, f"results folder is not writable ({exc.strerror or exc})") from exc
        self._ready = True

    def _write(self, path: Path, write: Callable[[IO[bytes]], None]) -> Path:
        if not self._ready:
            self.check_writable()
        try:
            for sub in ("trials", "epochs"):  # the layout appears with the first write, user-only
                private_dirs(self.sweep_dir / sub)
            atomic_write(path, write)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # the sweep stops for it (pldistill.sweep.launch)
                raise DiskFullError(path) from exc
            raise InputError(path, None, f"cannot write results ({exc.strerror or exc})") from exc
        return path

    def write_sweep_meta(self, meta: Mapping[str, object]) -> Path:
        """Write ``sweep.json``. Missing ``name``, ``status``, ``started_at``, ``pldistill_version``,
        ``git_commit`` and ``schema_version`` are filled in; unknown keys raise SchemaError."""
        full: dict[str, object] = {
            "name": self.sweep, "status": "running", "started_at": dt.datetime.now(dt.timezone.utc),
            "pldistill_version": __version__, "git_commit": git_commit(), "schema_version": SCHEMA_VERSION,
            **meta,
        }
        if full["name"] != self.sweep:
            raise InputError(None, "sweep name", f"sweep.json names {full['name']!r} but the store is {self.sweep!r}")
        blob = json.dumps(validate_sweep_meta(full), indent=2, default=str).encode() + b"\n"
        return self._write(self.sweep_dir / SWEEP_FILE, lambda fh: fh.write(blob))

    def read_sweep_meta(self) -> dict[str, object] | None:
        """The current ``sweep.json`` (None when there is none)."""
        path = self.sweep_dir / SWEEP_FILE
        return _load_meta(path) if path.exists() else None

    def write_trial(self, record: TrialRecord | Mapping[str, object]) -> Path:
        """Write (or replace) the trial's row. ``sweep`` is filled in; ``git_commit`` too when unset."""
        row = record.to_row() if isinstance(record, TrialRecord) else dict(record)
        row = self._own(row)
        if row.get("git_commit") is None:
            row["git_commit"] = git_commit()
        table = trials_table([row])
        return self._write(self.trial_path(str(row["trial_id"])), lambda fh: pq.write_table(table, fh))

    def write_epochs(self, trial_id: str, records: Iterable[EpochRecord | Mapping[str, object]]) -> Path:
        """Write (or replace) all epoch rows of ``trial_id``."""
        rows = [self._own({**(r.to_row() if isinstance(r, EpochRecord) else dict(r))}, trial_id) for r in records]
        table = epochs_table(rows)
        return self._write(self.epochs_path(trial_id), lambda fh: pq.write_table(table, fh))

    def _own(self, row: dict[str, object], trial_id: str | None = None) -> dict[str, object]:
        """Fill in ``sweep`` (and ``trial_id``); a row that names another one is refused."""
        for key, value in (("sweep", self.sweep), ("trial_id", trial_id)):
            if value is None:
                continue
            if row.get(key) not in (None, value):
                raise InputError(None, key, f"row says {row[key]!r}, expected {value!r}")
            row[key] = value
        _check_name(str(row.get("trial_id") or ""), "trial_id")
        return row


# ---------------------------------------------------------------- reading


def _load_meta(path: Path) -> dict[str, object]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, None, f"cannot read sweep metadata ({exc})") from exc
    if not isinstance(meta, dict):
        raise InputError(path, None, "sweep metadata must be a JSON object")
    return meta


def list_sweeps(root: str | Path) -> list[str]:
    """Names of the sweep folders under ``root`` (those with a sweep.json or a trials folder)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".")
                  and ((p / SWEEP_FILE).is_file() or (p / "trials").is_dir()))


def read_sweep_metas(root: str | Path) -> list[dict[str, object]]:
    """Every ``sweep.json`` under ``root``; ``name`` is the folder's name."""
    root = Path(root)
    return [{**_load_meta(root / s / SWEEP_FILE), "name": s}
            for s in list_sweeps(root) if (root / s / SWEEP_FILE).is_file()]


def result_files(root: str | Path, kind: str, sweep: str | None = None) -> list[Path]:
    """The ``trials`` or ``epochs`` Parquet files under ``root`` (temp files skipped), sorted."""
    sweeps = [_check_name(sweep, "sweep name")] if sweep is not None else list_sweeps(root)
    files: list[Path] = []
    for s in sweeps:
        folder = Path(root) / s / kind
        if folder.is_dir():
            files += [p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".")]
    return sorted(files)


def _problem(table: pa.Table, schema: pa.Schema) -> str | None:
    """Why a file's ``table`` is not a results table of ``schema`` (None when it is): a required
    column missing or of another type (a file from another program, or one damaged past its footer)."""
    for fld in schema:
        if fld.nullable:
            continue
        if fld.name not in table.column_names:
            return f"no column {fld.name!r}"
        got = table.schema.field(fld.name).type
        if got != fld.type:
            return f"column {fld.name!r} is {got}, expected {fld.type}"
    return None


def _load(files: list[Path], schema: pa.Schema) -> tuple[list[pa.Table], list[tuple[Path, str]]]:
    """The tables of ``files`` that read as ``schema``, and each other file with why it does not."""
    tables, bad = [], []
    for f in files:
        try:
            table = pq.read_table(f)
        except (OSError, pa.ArrowException) as exc:
            bad.append((f, f"cannot read results file ({str(exc).splitlines()[0] if str(exc) else exc})"))
            continue
        problem = _problem(table, schema)
        if problem is None:
            tables.append(_named_by_folder(table, f))
        else:
            bad.append((f, f"not a results file of this kind ({problem})"))
    return tables, bad


def _named_by_folder(table: pa.Table, path: Path) -> pa.Table:
    """``table`` with its ``sweep`` column set to the folder it was read from (``<sweep>/<kind>/<id>``):
    the folder is the sweep, so a sweep folder copied under another name counts once under each name,
    never twice under the name its rows were written with."""
    i = table.schema.get_field_index("sweep")
    if i < 0:
        return table
    name = path.parent.parent.name
    return table.set_column(i, table.schema.field(i), pa.array([name] * table.num_rows, table.schema.field(i).type))


def _warn_skipped(bad: list[tuple[Path, str]]) -> None:
    for path, why in bad:  # one line each; the answer comes from the other files
        log.warning("warning: skipping %s: %s", path, why)


def readable_files(files: list[Path], schema: pa.Schema) -> list[Path]:
    """``files`` without the unreadable ones, each skipped with a one-line warning naming it."""
    tables, bad = _load(files, schema)
    _warn_skipped(bad)
    skipped = {p for p, _ in bad}
    return [f for f in files if f not in skipped]


def unreadable_files(root: str | Path, sweep: str) -> list[tuple[Path, str]]:
    """The ``trials`` and ``epochs`` files of ``sweep`` that cannot be read as results, with why."""
    return [*_load(result_files(root, "trials", sweep), trials_schema())[1],
            *_load(result_files(root, "epochs", sweep), epochs_schema())[1]]


def _read(files: list[Path], empty: pa.Schema, where: Path) -> pa.Table:
    tables, bad = _load(files, empty)
    _warn_skipped(bad)
    if not tables:
        return empty.empty_table()
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Two sweeps used one hp name with different types (an int here, a str there): like DuckDB's
        # union_by_name, fall back to strings for that column.
        types: dict[str, set[pa.DataType]] = {}
        for t in tables:
            for fld in t.schema:
                types.setdefault(fld.name, set()).add(fld.type)
        clash = {n for n, ts in types.items() if len(ts) > 1 and not all(_is_numeric(x) for x in ts)}
        try:
            tables = [t.cast(pa.schema([f.with_type(pa.string()) if f.name in clash else f for f in t.schema],
                                       metadata=t.schema.metadata)) for t in tables]
            table = pa.concat_tables(tables, promote_options="permissive")
        except pa.ArrowException as exc:
            raise InputError(where, None, f"result files disagree on column types ({exc})") from exc
    return table.replace_schema_metadata(empty.metadata)


def _is_numeric(typ: pa.DataType) -> bool:
    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ))


def read_trials(root: str | Path, sweep: str | None = None) -> pa.Table:
    """All trial rows under ``root`` (or of one sweep), columns unioned by name across sweeps."""
    return _read(result_files(root, "trials", sweep), trials_schema(), Path(root))


def read_epochs(root: str | Path, sweep: str | None = None, trial_id: str | None = None) -> pa.Table:
    """All epoch rows under ``root`` (or of one sweep, or of one trial of that sweep)."""
    files = result_files(root, "epochs", sweep)
    if trial_id is not None:
        files = [f for f in files if f.stem == trial_id]
    return _read(files, epochs_schema(), Path(root))
