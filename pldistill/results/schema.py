"""The Parquet schema of sweep results: the one place that names columns, types and the version.

Two tables, one Parquet file per trial each (see :mod:`pldistill.results.store`):

* ``trials``: one row per trial. Fixed columns, plus one typed ``hp_<name>`` column per
  hyperparameter of that sweep (so the schema of a sweep is :func:`trials_schema` of its
  hyperparameters), plus ``loss_<term>`` for every name in :data:`LOSS_TERMS`.
* ``epochs``: one row per (trial, fold, epoch).

Every file carries ``pldistill.schema_version`` and ``pldistill.table`` in its schema metadata
and a ``schema_version`` column, so a reader (Arrow, DuckDB, pandas) can tell what it holds.
Rows are checked before they become Arrow tables: an unknown column or a value of the wrong
type raises :class:`SchemaError` naming the table, the column and what was expected.
"""

from __future__ import annotations

import datetime as dt
import functools
import numbers
import re
import statistics
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import pyarrow as pa

from pldistill import __version__
from pldistill.config import METRIC_NAMES
from pldistill.results.status import TRIAL_STATUSES

__all__ = [
    "SCHEMA_VERSION", "LOSS_TERMS", "TRIAL_STATUSES", "SEEDS_STOPS", "SWEEP_STATUSES", "SWEEP_META_KEYS", "SchemaError",
    "FoldMetrics", "TrialRecord", "EpochRecord", "trials_schema", "epochs_schema", "sweeps_schema", "hp_column",
    "trials_table", "epochs_table", "validate_sweep_meta", "schema_version_of",
]

#: Bump when a column changes meaning or type (adding a nullable column needs no bump).
SCHEMA_VERSION = 1
#: Loss terms logged under their own name (``loss_<term>`` in trials, ``train_loss_<term>`` in epochs):
#: ``total`` and the terms registered in ``pldistill.losses`` (a unit test checks they agree; spelled
#: out here so that reading results never imports torch).
LOSS_TERMS = ("total", "ce", "cka", "kl_audio", "kl_response", "rkl_response", "relation", "relation_projector",
              "kl_response_cd", "class_ce", "kl_prosodic", "kl_linguistic", "cos_prosodic", "cos_linguistic")
#: ``seeds_stop``: why a trial ran the seeds it ran (``pldistill.train.replicates``): its validation
#: interval was narrow enough, it reached ``max_seeds`` first, or it ran a fixed list (no rule).
SEEDS_STOPS = ("precision", "cap", "fixed")
SWEEP_STATUSES = ("running", "finished", "failed", "interrupted")
#: Keys of ``sweep.json``; ``config`` is the resolved sweep config, ``counts`` Tune's final
#: trial counts and ``space`` the searched distributions (``ParamSpec.to_json`` entries; any JSON values).
SWEEP_META_KEYS = ("name", "sweep_file", "config", "started_at", "ended_at", "status", "counts",
                   "pldistill_version", "git_commit", "metric", "mode", "schema_version", "space",
                   "environment", "artifacts", "prepare_wall_s")

_META_VERSION = b"pldistill.schema_version"
_META_TABLE = b"pldistill.table"
_HP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METRICS = METRIC_NAMES
#: EmoDistill's teachers' figures kept per trial (mean over folds) and per run, as ``FoldResult.teacher`` names them.
_SUB_TEACHER = ("prosodic_val_ua", "prosodic_test_ua", "linguistic_val_ua", "linguistic_test_ua")
_SUB_TEACHER_FOLD = ("prosodic_test_ua", "linguistic_test_ua")
_TS = pa.timestamp("us", tz="UTC")
_PY_ARROW: dict[Any, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
                                     dt.datetime: _TS}
#: Record field metadata of a column that may not be null.
_REQUIRED: Mapping[str, Any] = types.MappingProxyType({"nullable": False})


class SchemaError(ValueError):
    """A row that does not fit the results schema (a bug in the writer, not the user's input)."""


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


def _with_meta(fields: list[pa.Field], table: str) -> pa.Schema:
    return pa.schema(fields, metadata={_META_VERSION: str(SCHEMA_VERSION).encode(), _META_TABLE: table.encode()})


def hp_column(name: str) -> str:
    """The column of hyperparameter ``name``."""
    return f"hp_{name}"


def _arrow_type(tp: Any) -> pa.DataType:
    """The Arrow type of a record field's annotation (``X | None`` is a nullable ``X``)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return _arrow_type(args[0])
    if typing.get_origin(tp) is list:
        return pa.list_(_arrow_type(args[0]))
    if is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return pa.struct([pa.field(f.name, _arrow_type(hints[f.name])) for f in fields(tp)])
    return _PY_ARROW[tp]


def _record_fields(cls: type, expand: Mapping[str, Sequence[pa.Field]]) -> list[pa.Field]:
    """The columns of a record dataclass, derived from its fields in order: one per field, except
    the dict fields named in ``expand`` (``hparams``, ``losses``), which stand for the columns given
    there; then ``schema_version``."""
    hints = typing.get_type_hints(cls)
    out: list[pa.Field] = []
    for f in fields(cls):
        if f.name in expand:
            out.extend(expand[f.name])
        else:
            out.append(_f(f.name, _arrow_type(hints[f.name]), f.metadata.get("nullable", True)))
    return [*out, _f("schema_version", pa.int64(), False)]


_SWEEP_FIELDS = [
    _f("name", pa.string(), False), _f("sweep_file", pa.string()), _f("status", pa.string()),
    _f("metric", pa.string()), _f("mode", pa.string()), _f("started_at", _TS), _f("ended_at", _TS),
    _f("pldistill_version", pa.string()), _f("git_commit", pa.string()), _f("config_json", pa.string()),
    _f("schema_version", pa.int64()),
]


@functools.cache
def _declared_hp_types() -> dict[str, pa.DataType]:
    """Arrow types of the fields of :class:`pldistill.config.Hyperparameters`, from their annotations,
    so that a column keeps one type across the trials of a sweep even when a value is None."""
    from pldistill.config import Hyperparameters

    py_to_arrow = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    out: dict[str, pa.DataType] = {}
    for name, info in Hyperparameters.model_fields.items():
        args = [a for a in typing.get_args(info.annotation) if a is not type(None)]
        ann = info.annotation
        if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(args) == 1:
            ann = args[0]
        if typing.get_origin(ann) is typing.Literal:
            ann = type(typing.get_args(ann)[0])
        if ann in py_to_arrow:
            out[name] = py_to_arrow[ann]  # type: ignore[index]
    return out


def _is_bool(value: object) -> bool:
    """A Python or NumPy bool (neither may pass as a number)."""
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"))


def _hp_type(name: str, value: object) -> pa.DataType:
    if not isinstance(name, str) or not _HP_NAME.match(name):
        raise SchemaError(f"trials: hyperparameter name {name!r} cannot be a column; use letters, digits, _")
    declared = _declared_hp_types().get(name)
    if declared is not None:
        return declared
    if value is None or isinstance(value, str):
        return pa.string()
    if _is_bool(value):
        return pa.bool_()
    if isinstance(value, numbers.Integral):
        return pa.int64()
    if isinstance(value, numbers.Real):
        return pa.float64()
    raise SchemaError(f"trials: hp_{name}: expected a bool, int, float or str, got {type(value).__name__}")


def trials_schema(hparams: Mapping[str, object] | None = None) -> pa.Schema:
    """The trials schema of a sweep whose hyperparameters are ``hparams`` (name -> example value).

    Fields of :class:`~pldistill.config.Hyperparameters` keep their declared type; other names take
    the Python type of the value (bool, int64, float64, string; None -> string).
    """
    hp = [_f(hp_column(n), _hp_type(n, v)) for n, v in sorted((hparams or {}).items())]
    losses = [_f(f"loss_{t}", pa.float64()) for t in LOSS_TERMS]
    return _with_meta(_record_fields(TrialRecord, {"hparams": hp, "losses": losses}), "trials")


def epochs_schema() -> pa.Schema:
    """The epochs schema: one row per (trial, fold, epoch)."""
    losses = [_f(f"train_loss_{t}", pa.float64()) for t in LOSS_TERMS]
    return _with_meta(_record_fields(EpochRecord, {"train_losses": losses}), "epochs")


def sweeps_schema() -> pa.Schema:
    """The ``sweeps`` table of the query layer (one row per ``sweep.json``)."""
    return _with_meta(list(_SWEEP_FIELDS), "sweeps")


def schema_version_of(schema: pa.Schema) -> tuple[str | None, int | None]:
    """``(table, schema_version)`` from a file's schema metadata; None where absent."""
    meta = schema.metadata or {}
    table = meta.get(_META_TABLE)
    version = meta.get(_META_VERSION)
    return (table.decode() if table else None, int(version) if version else None)


# ---------------------------------------------------------------- records


@dataclass(kw_only=True)
class FoldMetrics:
    """Scores of one fold at its best epoch."""

    fold: int
    seed: int | None = None
    best_epoch: int | None = None
    val_ua: float | None = None
    val_wa: float | None = None
    val_f1: float | None = None
    val_loss: float | None = None
    val_conflict_ua: float | None = None
    test_ua: float | None = None
    test_wa: float | None = None
    test_f1: float | None = None
    test_loss: float | None = None
    test_conflict_ua: float | None = None
    #: The fold's teacher on the same test clips (the same for every seed).
    teacher_test_ua: float | None = None
    teacher_test_wa: float | None = None
    teacher_test_f1: float | None = None
    teacher_test_conflict_ua: float | None = None
    #: EmoDistill's two teachers (classifier student) on the same test clips.
    teacher_prosodic_test_ua: float | None = None
    teacher_linguistic_test_ua: float | None = None
    #: The run's test predictions, hashed (``pldistill.train.loop.predictions_hash``): equal runs, equal hash.
    predictions_sha256: str | None = None


@dataclass(kw_only=True)
class TrialRecord:
    """One trial. ``sweep`` may stay None: :class:`~pldistill.results.ResultsStore` fills it in.

    ``hparams`` become ``hp_<name>`` columns, ``losses`` (term -> value at the best epoch)
    ``loss_<term>`` columns; metrics are means over ``folds``.
    """

    sweep: str | None = field(default=None, metadata=_REQUIRED)
    trial_id: str = field(metadata=_REQUIRED)
    status: str = field(metadata=_REQUIRED)
    error: str | None = None
    hparams: dict[str, object] = field(default_factory=dict)
    objective: str | None = None
    #: Which student the trial trained: ``audiolm`` or ``classifier`` (``pldistill.config.STUDENT_FAMILIES``).
    student_family: str | None = None
    dataset: str | None = None
    folds: list[int] = field(default_factory=list)
    #: The replicate seeds: every fold ran once per seed; figures are means over the (seed, fold) runs.
    seeds: list[int] = field(default_factory=list)
    #: How many seeds the trial ran (each over every fold) and why no more (:data:`SEEDS_STOPS`); the
    #: half-width of its selection metric's stratified 95% interval over the runs at that point.
    #: Set on completion (``search.replicates`` adds seeds until decided).
    seeds_used: int | None = None
    seeds_stop: str | None = None
    seeds_half_width: float | None = None
    best_epoch: int | None = None
    val_ua: float | None = None
    val_wa: float | None = None
    val_f1: float | None = None
    val_loss: float | None = None
    #: UA over the conflict clips (words of another emotion than the voice), where a corpus marks them.
    val_conflict_ua: float | None = None
    test_ua: float | None = None
    test_wa: float | None = None
    test_f1: float | None = None
    test_loss: float | None = None
    test_conflict_ua: float | None = None
    #: The teacher's own scores on the same splits (mean over folds), beside the student's.
    teacher_val_ua: float | None = None
    teacher_val_wa: float | None = None
    teacher_val_f1: float | None = None
    teacher_val_loss: float | None = None
    teacher_val_conflict_ua: float | None = None
    teacher_test_ua: float | None = None
    teacher_test_wa: float | None = None
    teacher_test_f1: float | None = None
    teacher_test_loss: float | None = None
    teacher_test_conflict_ua: float | None = None
    #: EmoDistill's teachers (classifier student), mean over folds: prosodic (eGeMAPS) and linguistic
    #: (transcripts); ``FoldResult.teacher`` names them ``<kind>_<split>_<metric>``.
    teacher_prosodic_val_ua: float | None = None
    teacher_prosodic_test_ua: float | None = None
    teacher_linguistic_val_ua: float | None = None
    teacher_linguistic_test_ua: float | None = None
    fold_metrics: list[FoldMetrics] = field(default_factory=list)
    losses: dict[str, float | None] = field(default_factory=dict)
    wall_s: float | None = None
    samples_per_s: float | None = None
    num_workers: int | None = None
    nodes: list[str] = field(default_factory=list)
    #: Times the trial resumed from a checkpoint (after a worker, node or sweep restart).
    restarts: int | None = None
    config_json: str | None = None
    pldistill_version: str | None = __version__
    git_commit: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None

    @classmethod
    def from_result(cls, result: Mapping[str, Any], **values: Any) -> TrialRecord:
        """A trial from ``asdict(pldistill.train.trial.TrialResult)``: metrics (means over folds),
        ``loss_<term>``, per-fold scores, ``folds``, ``wall_s``, ``samples_per_s``, ``num_workers``
        (world size) and ``best_epoch`` (the lower median over folds). ``values`` (``trial_id``,
        ``status``, ``hparams``, ...) are set as given and win over what ``result`` says."""
        metrics = dict(result.get("metrics") or {})
        unknown = sorted(k for k in metrics if k not in _METRICS and not k.startswith("loss_"))
        if unknown:
            raise SchemaError(f"trials: unknown metric(s) {', '.join(unknown)}; valid: {', '.join(_METRICS)}, loss_<term>")
        folds = list(result.get("folds") or [])
        derived: dict[str, Any] = {
            **{m: metrics.get(m) for m in _METRICS},
            "losses": {k[len("loss_"):]: v for k, v in metrics.items() if k.startswith("loss_")},
            "folds": sorted({f["fold"] for f in folds}),
            "seeds": sorted({f.get("seed", 0) for f in folds}),
            "fold_metrics": [FoldMetrics(fold=f["fold"], seed=f.get("seed", 0), best_epoch=f.get("best_epoch"),
                                         **{m: (f.get("best") or {}).get(m) for m in _METRICS},
                                         **{f"teacher_{m}": (f.get("teacher") or {}).get(m)
                                            for m in ("test_ua", "test_wa", "test_f1", "test_conflict_ua",
                                                      *_SUB_TEACHER_FOLD)},
                                         predictions_sha256=f.get("predictions_sha256"))
                             for f in folds],
            "best_epoch": statistics.median_low([f["best_epoch"] for f in folds]) if folds else None,
            **{f"teacher_{m}": _mean([(f.get("teacher") or {}).get(m) for f in folds])
               for m in (*_METRICS, *_SUB_TEACHER)},
            "wall_s": result.get("wall_s"), "samples_per_s": result.get("samples_per_s"),
            "num_workers": result.get("world_size"), "restarts": result.get("restarts"),
            # a result from before replication was adaptive names neither (0 / None): left null
            "seeds_used": result.get("seeds_used") or None, "seeds_stop": result.get("seeds_stop"),
            "seeds_half_width": result.get("seeds_half_width"),
        }
        return cls(**{**derived, **values})

    def to_row(self) -> dict[str, object]:
        """The flat row: column name -> value."""
        row: dict[str, object] = {k: v for k, v in vars(self).items() if k not in ("hparams", "losses")}
        row["fold_metrics"] = [vars(f) if isinstance(f, FoldMetrics) else f for f in self.fold_metrics]
        row.update({hp_column(k): v for k, v in self.hparams.items()})
        row.update(_loss_columns("trials", "loss_", self.losses))
        return row


@dataclass(kw_only=True)
class EpochRecord:
    """One epoch of one fold of a trial; ``train_losses`` are the epoch's mean loss terms."""

    sweep: str | None = field(default=None, metadata=_REQUIRED)
    trial_id: str | None = field(default=None, metadata=_REQUIRED)
    seed: int | None = None
    fold: int = field(metadata=_REQUIRED)
    epoch: int = field(metadata=_REQUIRED)
    train_losses: dict[str, float | None] = field(default_factory=dict)
    val_ua: float | None = None
    val_wa: float | None = None
    val_f1: float | None = None
    val_loss: float | None = None
    val_conflict_ua: float | None = None
    test_ua: float | None = None
    test_wa: float | None = None
    test_f1: float | None = None
    test_loss: float | None = None
    test_conflict_ua: float | None = None
    samples_per_s: float | None = None
    lr: float | None = None
    wall_s: float | None = None
    #: Which run of the trial produced the row: 0 first, k after the k-th restart.
    attempt: int | None = None

    @classmethod
    def from_metrics(cls, sweep: str | None, trial_id: str | None, metrics: Mapping[str, Any]) -> EpochRecord:
        """One epoch from the row the trial loop reports (``fold``, ``epoch``, ``train_loss_<term>``,
        ``val_*``, ``test_*``, ``samples_per_s``, ``lr``, ``wall_s``); any other key raises SchemaError."""
        plain = {f.name for f in fields(cls)} - {"sweep", "trial_id", "train_losses"}
        losses = {k[len("train_loss_"):]: v for k, v in metrics.items() if k.startswith("train_loss_")}
        rest = {k: v for k, v in metrics.items() if not k.startswith("train_loss_")}
        unknown = sorted(set(rest) - plain)
        if unknown:
            raise SchemaError(f"epochs: unknown metric(s) {', '.join(unknown)}; valid: {', '.join(sorted(plain))}, "
                              "train_loss_<term>")
        return cls(sweep=sweep, trial_id=trial_id, train_losses=losses, **rest)

    def to_row(self) -> dict[str, object]:
        row: dict[str, object] = {k: v for k, v in vars(self).items() if k != "train_losses"}
        row.update(_loss_columns("epochs", "train_loss_", self.train_losses))
        return row


def _mean(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _loss_columns(table: str, prefix: str, losses: Mapping[str, object]) -> dict[str, object]:
    unknown = sorted(set(losses) - set(LOSS_TERMS))
    if unknown:
        raise SchemaError(f"{table}: unknown loss term(s) {', '.join(unknown)}; valid: {', '.join(LOSS_TERMS)}")
    return {f"{prefix}{k}": v for k, v in losses.items()}


# ---------------------------------------------------------------- validation


def _check(table: str, column: str, typ: pa.DataType, value: Any) -> Any:
    """``value`` as a plain Python value of Arrow type ``typ``, or :class:`SchemaError`."""
    if value is None:
        return None

    def bad(expected: str) -> SchemaError:
        return SchemaError(f"{table}: column {column}: expected {expected}, got {type(value).__name__} {value!r:.60}")

    is_bool = _is_bool(value)
    if pa.types.is_boolean(typ):
        if is_bool:
            return bool(value)
        raise bad("a bool")
    if pa.types.is_integer(typ):
        if isinstance(value, numbers.Integral) and not is_bool:
            return int(value)
        raise bad("an int")
    if pa.types.is_floating(typ):
        if isinstance(value, numbers.Real) and not is_bool:
            return float(value)
        raise bad("a number")
    if pa.types.is_string(typ):
        if isinstance(value, str):
            return value
        raise bad("a str")
    if pa.types.is_timestamp(typ):
        if isinstance(value, dt.datetime) and value.utcoffset() is not None:
            return value
        raise bad("a timezone-aware datetime")
    if pa.types.is_list(typ):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise bad("a list")
        return [_check(table, f"{column}[]", typ.value_type, v) for v in value]
    if pa.types.is_struct(typ):
        if isinstance(value, FoldMetrics):
            value = vars(value)
        if not isinstance(value, Mapping):
            raise bad("a mapping")
        names = [typ.field(i).name for i in range(typ.num_fields)]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise SchemaError(f"{table}: column {column}: unknown field(s) {', '.join(map(str, unknown))}; "
                              f"valid: {', '.join(names)}")
        return {n: _check(table, f"{column}.{n}", typ.field(n).type, value.get(n)) for n in names}
    raise bad(str(typ))  # pragma: no cover - every type in the schema is handled above


def _to_table(table: str, schema: pa.Schema, rows: Sequence[Mapping[str, object]]) -> pa.Table:
    known = set(schema.names)
    clean = []
    for row in rows:
        unknown = sorted(set(row) - known)
        if unknown:
            raise SchemaError(f"{table}: unknown column(s) {', '.join(map(str, unknown))}")
        out = {}
        for fld in schema:
            value = _check(table, fld.name, fld.type, row.get(fld.name))
            if value is None and not fld.nullable:
                raise SchemaError(f"{table}: column {fld.name} must not be null")
            out[fld.name] = value
        clean.append(out)
    return pa.Table.from_pylist(clean, schema=schema)


def _as_row(record: object) -> dict[str, object]:
    if isinstance(record, (TrialRecord, EpochRecord)):
        return record.to_row()
    if isinstance(record, Mapping):
        return dict(record)
    raise SchemaError(f"expected a record or a mapping of columns, got {type(record).__name__}")


def trials_table(records: Sequence[TrialRecord | Mapping[str, object]]) -> pa.Table:
    """Trial records (or flat column mappings) as a table of :func:`trials_schema`.

    ``schema_version`` is filled in; ``status`` must be one of :data:`TRIAL_STATUSES`.
    """
    rows = [{**_as_row(r), "schema_version": SCHEMA_VERSION} for r in records]
    hparams: dict[str, object] = {}
    for row in rows:
        if row.get("status") not in TRIAL_STATUSES:
            raise SchemaError(f"trials: column status: expected one of {', '.join(TRIAL_STATUSES)}, "
                              f"got {row.get('status')!r}")
        if row.get("seeds_stop") not in (None, *SEEDS_STOPS):
            raise SchemaError(f"trials: column seeds_stop: expected one of {', '.join(SEEDS_STOPS)}, "
                              f"got {row.get('seeds_stop')!r}")
        for col, value in row.items():
            if col.startswith("hp_") and hparams.get(col[3:]) is None:
                hparams[col[3:]] = value
    return _to_table("trials", trials_schema(hparams), rows)


def epochs_table(records: Sequence[EpochRecord | Mapping[str, object]]) -> pa.Table:
    """Epoch records (or flat column mappings) as a table of :func:`epochs_schema`."""
    rows = [{**_as_row(r), "schema_version": SCHEMA_VERSION} for r in records]
    return _to_table("epochs", epochs_schema(), rows)


def validate_sweep_meta(meta: Mapping[str, object]) -> dict[str, object]:
    """``sweep.json`` content checked against :data:`SWEEP_META_KEYS`; datetimes become ISO strings."""
    unknown = sorted(set(meta) - set(SWEEP_META_KEYS))
    if unknown:
        raise SchemaError(f"sweep.json: unknown key(s) {', '.join(unknown)}; valid: {', '.join(SWEEP_META_KEYS)}")
    out: dict[str, object] = dict(meta)
    for key in ("started_at", "ended_at"):
        value = out.get(key)
        if isinstance(value, dt.datetime):
            _check("sweep.json", key, _TS, value)
            out[key] = value.isoformat()
        elif value is not None:
            try:
                dt.datetime.fromisoformat(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise SchemaError(f"sweep.json: {key}: expected a datetime or ISO string, got {value!r}") from None
    for key in ("name", "sweep_file", "status", "metric", "mode", "pldistill_version", "git_commit"):
        if out.get(key) is not None and not isinstance(out[key], str):
            out[key] = str(out[key]) if key == "sweep_file" else _check("sweep.json", key, pa.string(), out[key])
    if out.get("status") is not None and out["status"] not in SWEEP_STATUSES:
        raise SchemaError(f"sweep.json: status: expected one of {', '.join(SWEEP_STATUSES)}, got {out['status']!r}")
    if out.get("mode") is not None and out["mode"] not in ("max", "min"):
        raise SchemaError(f"sweep.json: mode: expected max or min, got {out['mode']!r}")
    return out

