"""The sweep file: a typed model of ``sweeps/<what>_<how>.yaml``, loading and validation.

A sweep file is plain YAML with five sections, each validated with unknown keys refused:

* ``base`` -- a :class:`~pldistill.config.TrialConfig` without hyperparameters (data, model, train,
  cache_dir); every trial starts from it.
* ``fixed`` -- :class:`~pldistill.config.Hyperparameters` set for every trial (unset names keep the
  paper's defaults).
* ``search`` -- what varies: sampled ``space`` domains (optuna / random) or ``grid`` axes and named
  ``variants`` (grid); a name is either fixed or varied, never both.
* ``resources`` -- Ray Train workers per trial and what each holds.

:func:`load_sweep` reports every problem of a file at once in a :class:`SweepFileError`, one line
each: ``<file>: <dotted.key>: <what was expected> (line N)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, model_validator

from pldistill.config import DataConfig, Hyperparameters, ModelConfig, TrainConfig, TrialConfig
from pldistill.errors import InputError
from pldistill.sweep._problems import (
    Loc,
    Problem,
    _index_nodes,
    _render,
    _show,
    _translate,
    _unwrap,
)

__all__ = [
    "ALGORITHMS",
    "HPARAM_NAMES",
    "METRIC_NAMES",
    "ASHAConfig",
    "ChoiceDomain",
    "FailuresConfig",
    "Domain",
    "IntDomain",
    "LogUniformDomain",
    "ResourcesConfig",
    "SearchConfig",
    "SweepBase",
    "SweepConfig",
    "SweepFileError",
    "UniformDomain",
    "VariantConfig",
    "check_resources",
    "load_sweep",
]

ALGORITHMS = ("optuna", "random", "grid")
#: Metrics a trial reports to Tune (and that a sweep may optimise); ``*_loss`` defaults to mode min.
METRIC_NAMES = ("val_ua", "val_wa", "val_f1", "val_loss", "test_ua", "test_wa", "test_f1", "test_loss")
#: Every sweepable name, in the order of :class:`Hyperparameters`.
HPARAM_NAMES = tuple(Hyperparameters.model_fields)
_NAME_PATTERN = r"^[a-z0-9_-]+$"
_BOTH = "also set under fixed; a hyperparameter is either fixed or varied"


class SweepFileError(InputError):
    """Every problem of one sweep file. ``str(err)`` is one problem per line; ``err.problems`` the lines."""

    def __init__(self, file: str | Path, problems: list[tuple[str | None, str]]) -> None:
        self._raw = list(problems)
        self.problems = [": ".join(p for p in (str(file), key, msg) if p) for key, msg in problems]
        key, msg = problems[0]
        super().__init__(file, key, msg)
        self.args = ("\n".join(self.problems),)

    def __reduce__(self):
        return (type(self), (self.file, self._raw))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_are_defaults(cls, data: Any) -> Any:
        # ``fixed:`` with every entry commented out loads as None: treat it as absent.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls._NULLABLE}
        return data

    _NULLABLE: ClassVar[frozenset[str]] = frozenset()


# --- search-space domains -------------------------------------------------------------------------------


class _Range(_Strict):
    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if not self.low < self.high:  # type: ignore[attr-defined]
            raise ValueError("expected low < high (a constant belongs under fixed)")
        return self

    def extremes(self) -> list[tuple[Loc, Any]]:
        """(key, value) pairs that must each be valid for the hyperparameter."""
        return [(("low",), self.low), (("high",), self.high)]  # type: ignore[attr-defined]


class UniformDomain(_Range):
    """A float drawn uniformly from [low, high]."""

    type: Literal["uniform"]
    low: float
    high: float


class LogUniformDomain(_Range):
    """A float drawn log-uniformly from [low, high] (low > 0)."""

    type: Literal["loguniform"]
    low: float = Field(gt=0.0)
    high: float


class IntDomain(_Range):
    """An integer from [low, high], both inclusive; ``log`` samples log-uniformly, ``step`` quantises."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _step_fits(self) -> IntDomain:
        if self.log and self.low < 1:
            raise ValueError(f"log needs low >= 1, got {self.low}")
        if self.step > 1:
            if self.log:
                raise ValueError("log and step > 1 together are not supported (Optuna refuses them)")
            if self.low % self.step or self.high % self.step:
                # Tune draws multiples of step, Optuna low + k * step: they agree only on multiples.
                raise ValueError(f"low and high must be multiples of step ({self.step})")
        return self


class ChoiceDomain(_Strict):
    """One of a list of values (categorical)."""

    type: Literal["choice"]
    values: list[Any] = Field(min_length=2)

    @model_validator(mode="after")
    def _plain_distinct(self) -> ChoiceDomain:
        if any(isinstance(v, (dict, list)) for v in self.values):
            raise ValueError("values must be plain scalars")
        if len({repr(v) for v in self.values}) != len(self.values):
            raise ValueError("values must not repeat")
        return self

    def extremes(self) -> list[tuple[Loc, Any]]:
        return [(("values", i), v) for i, v in enumerate(self.values)]


Domain = Annotated[UniformDomain | LogUniformDomain | IntDomain | ChoiceDomain, Field(discriminator="type")]


# --- sections -------------------------------------------------------------------------------------------


class SweepBase(_Strict):
    """What every trial shares: a TrialConfig without name, hyperparameters and output_dir."""

    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"data", "model", "train"})
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    #: Once-per-config artefacts (fine-tuned teacher, synthetic corpus); relative to the CWD.
    cache_dir: Path = Path(".pldistill-cache")


class VariantConfig(Hyperparameters):
    """A named set of hyperparameter overrides: one point of the ``variant`` grid axis."""

    name: str = Field(pattern=_NAME_PATTERN)

    def overrides(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set - {"name"})


class ASHAConfig(_Strict):
    """Asynchronous successive halving over reported epochs (Tune's ``training_iteration``)."""

    type: Literal["asha"]
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)
    #: Default: ``base.train.epochs`` (a trial reports once per epoch).
    max_t: int | None = Field(None, ge=1)


class SearchConfig(_Strict):
    """How trials are chosen: ``space`` for optuna/random, ``grid`` and ``variants`` for grid."""

    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"space", "grid", "variants", "scheduler"})
    algorithm: Literal["optuna", "random", "grid"]
    metric: Literal["val_ua", "val_wa", "val_f1", "val_loss", "test_ua", "test_wa", "test_f1", "test_loss"] = (
        "val_ua"
    )
    #: Default: ``min`` for ``*_loss`` metrics, ``max`` otherwise.
    mode: Literal["max", "min"] | None = None
    #: optuna/random: number of trials (required). grid: repeats of every grid point (default 1).
    num_samples: int | None = Field(None, ge=1)
    max_concurrent_trials: int = Field(1, ge=1)
    seed: int = 0
    scheduler: ASHAConfig | None = None
    space: dict[str, Domain] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    variants: list[VariantConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_mode(self) -> SearchConfig:
        if self.mode is None:
            self.mode = "min" if self.metric.endswith("_loss") else "max"
        return self

    @property
    def effective_mode(self) -> Literal["max", "min"]:
        """``mode``, never None (it is filled in on validation)."""
        return self.mode or ("min" if self.metric.endswith("_loss") else "max")

    @property
    def repeats(self) -> int:
        return self.num_samples or 1


class ResourcesConfig(_Strict):
    """What one trial's Ray Train worker group holds (its driver holds a custom resource, no CPU)."""

    workers_per_trial: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0.0)
    #: May be fractional (0.5: two workers share a GPU).
    gpus_per_worker: float = Field(0.0, ge=0.0)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    #: ``auto``: nccl when workers hold GPUs, gloo otherwise.
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    #: ``ddp`` (student replicated) or ``fsdp`` (teacher and student sharded across the trial's workers);
    #: copied into every trial's ``train.parallelism``.
    parallelism: Literal["ddp", "fsdp"] = "ddp"

    @property
    def effective_backend(self) -> Literal["gloo", "nccl"]:
        if self.backend == "auto":
            return "nccl" if self.gpus_per_worker > 0 else "gloo"
        return self.backend


class FailuresConfig(_Strict):
    """How much failure a trial absorbs before it is recorded as failed (the sweep always goes on).

    ``worker_restarts`` is Ray Train's ``FailureConfig.max_failures``: a trial whose worker or node
    died restarts its worker group from the trial's last epoch checkpoint. ``trial_retries`` is Ray
    Tune's: the whole trial driver is started again (it too resumes from the last checkpoint).
    A loss that turns NaN or infinite is never retried: the same numbers would diverge again.
    """

    worker_restarts: int = Field(3, ge=0)
    trial_retries: int = Field(0, ge=0)


class SweepConfig(_Strict):
    """One sweep file. Results go to ``<results>/<name>/``; trial ``t`` writes ``runs/<t>/`` there."""

    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"base", "fixed", "resources", "failures", "description"})
    name: str = Field(pattern=_NAME_PATTERN)
    description: str = ""
    #: Results root; relative paths are resolved against the CWD by :func:`load_sweep`.
    results: Path = Path("results")
    base: SweepBase = Field(default_factory=SweepBase)
    #: Only the names written in the file count as fixed (``model_fields_set``).
    fixed: Hyperparameters = Field(default_factory=Hyperparameters)
    search: SearchConfig
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    failures: FailuresConfig = Field(default_factory=FailuresConfig)
    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        """The file this sweep was loaded from (None when built in code)."""
        return self._source

    @property
    def results_dir(self) -> Path:
        return self.results / self.name

    def fixed_values(self) -> dict[str, Any]:
        """The hyperparameters the file fixes explicitly."""
        return self.fixed.model_dump(include=self.fixed.model_fields_set)

    def varied_names(self) -> list[str]:
        """Hyperparameter names that differ between trials (space, grid axes, variant overrides)."""
        s = self.search
        names = [*s.space, *s.grid]
        names += [k for v in s.variants for k in v.overrides() if k not in names]
        return list(dict.fromkeys(names))

    def trial_count(self) -> int:
        s = self.search
        if s.algorithm != "grid":
            return s.repeats
        points = math.prod(len(v) for v in s.grid.values()) * max(1, len(s.variants))
        return points * s.repeats

    def summary(self) -> str:
        s = self.search
        if s.algorithm == "grid":
            axes = [f"{k}({len(v)})" for k, v in s.grid.items()]
            if s.variants:
                axes.append("variant(" + ", ".join(v.name for v in s.variants) + ")")
            what = "grid: " + ", ".join(axes)
        else:
            what = "space: " + ", ".join(s.space)
        return f"{self.trial_count()} trials, algorithm {s.algorithm}, {what}"


# --- problems: YAML, pydantic's errors, cross-checks -----------------------------------------------------


def _parse_yaml(text: str) -> tuple[dict[str, Any] | None, dict[Loc, int], list[Problem]]:
    """The document, the line of every key and list item, and problems (syntax, duplicate keys)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        what = "; ".join(str(p) for p in (exc.problem, exc.context) if p)
        return None, {}, [(where, f"malformed YAML: {what}")]
    except yaml.YAMLError as exc:
        return None, {}, [("YAML", f"malformed YAML: {exc}")]
    lines: dict[Loc, int] = {}
    problems: list[Problem] = []
    if node is not None:
        _index_nodes(node, (), lines, problems)
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else _show(raw)
        problems.append(((), f"expected a mapping with keys {', '.join(SweepConfig.model_fields)}, got {got}"))
        return None, lines, problems
    return raw, lines, problems


def _kind(name: str) -> str:
    ann = _unwrap(Hyperparameters.model_fields[name].annotation)
    return {float: "float", int: "int", bool: "boolean"}.get(ann, "categorical")


def _value_problems(name: str, value: Any, loc: Loc) -> list[Problem]:
    """Problems of ``name = value`` by the ranges of :class:`Hyperparameters`, placed at ``loc``."""
    try:
        Hyperparameters.model_validate({name: value})
    except ValidationError as exc:
        return [(loc, msg) for _, msg in _translate(exc, Hyperparameters)]
    return []


def _domain_problems(name: str, domain: Any) -> list[Problem]:
    loc: Loc = ("search", "space", name)
    if name not in HPARAM_NAMES:
        return [(loc, f"unknown hyperparameter; valid: {', '.join(HPARAM_NAMES)}")]
    kind, numeric = _kind(name), {"float": ("uniform", "loguniform"), "int": ("int",)}
    if domain.type != "choice" and domain.type not in numeric.get(kind, ()):
        fits = ", ".join(numeric.get(kind, ())) + (" or choice" if kind in numeric else "choice")
        return [((*loc, "type"), f"{name} takes {kind} values: expected type {fits}, got {domain.type!r}")]
    problems: list[Problem] = []
    for sub, value in domain.extremes():
        problems += _value_problems(name, value, (*loc, *sub))
    return problems


def _search_problems(search: SearchConfig) -> list[Problem]:
    s, alg, problems = ("search",), search.algorithm, []
    if alg == "grid":
        if search.space:
            problems.append(((*s, "space"), "algorithm grid takes search.grid and search.variants; "
                             "sampled domains need algorithm optuna or random"))
        if not search.grid and not search.variants:
            problems.append((s, "algorithm grid needs search.grid or search.variants"))
    else:
        for key in ("grid", "variants"):
            if getattr(search, key):
                problems.append(((*s, key), f"only with algorithm grid, not {alg} (a choice domain in "
                                 "search.space samples categories)"))
        if not search.space:
            problems.append(((*s, "space"), f"empty: algorithm {alg} needs at least one sampled hyperparameter"))
        if search.num_samples is None:
            problems.append(((*s, "num_samples"), f"required for algorithm {alg} (the number of trials)"))
    for name, domain in search.space.items():
        problems += _domain_problems(name, domain)
    for name, values in search.grid.items():
        loc: Loc = (*s, "grid", name)
        if name not in HPARAM_NAMES:
            problems.append((loc, f"unknown hyperparameter; valid: {', '.join(HPARAM_NAMES)}"))
            continue
        if len({repr(v) for v in values}) != len(values) or not values:
            problems.append((loc, "expected a non-empty list of distinct values"))
        for i, value in enumerate(values):
            problems += _value_problems(name, value, (*loc, i))
    names: set[str] = set()
    for i, variant in enumerate(search.variants):
        if variant.name in names:
            problems.append(((*s, "variants", i, "name"), f"duplicate variant name {variant.name!r}"))
        names.add(variant.name)
        problems += [((*s, "variants", i, k), f"also a grid axis (search.grid.{k}); set it in one place")
                     for k in variant.overrides() if k in search.grid]
    return problems


def _fixed_conflicts(fixed_names: set[str], search: SearchConfig) -> list[Problem]:
    problems: list[Problem] = [(("search", key, n), _BOTH) for key in ("space", "grid")
                               for n in getattr(search, key) if n in fixed_names]
    for i, variant in enumerate(search.variants):
        problems += [(("search", "variants", i, k), _BOTH) for k in variant.overrides() if k in fixed_names]
    return problems


def _base_problems(base: SweepBase, fixed: Hyperparameters) -> list[Problem]:
    problems: list[Problem] = []
    if base.data.source == "emobox" and base.data.manifests is None:
        problems.append((("base", "data", "manifests"), "required when data.source is emobox"))
    try:  # TrialConfig's own cross-field checks
        TrialConfig(data=base.data, model=base.model, train=base.train, cache_dir=base.cache_dir, hparams=fixed)
    except ValidationError as exc:
        problems += [(("base", *loc), msg) for loc, msg in _translate(exc, TrialConfig) if isinstance(loc, tuple)]
    return problems


# --- loading --------------------------------------------------------------------------------------------


def load_sweep(path: str | Path, *, check_paths: bool = False, cwd: Path | None = None) -> SweepConfig:
    """Read and validate a sweep file; raise :class:`SweepFileError` with all of its problems.

    Relative paths (``results``, ``base.cache_dir``, ``base.data.manifests``, ``base.data.audio_root``)
    are made absolute against ``cwd`` (default: the current directory), because Tune runs trials in
    their own directories. ``check_paths`` also requires manifests, audio and model folders to exist.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SweepFileError(path, [(None, f"cannot read sweep file: {reason}")]) from None
    raw, lines, problems = _parse_yaml(text)
    sweep: SweepConfig | None = None
    if raw is not None:
        try:
            sweep = SweepConfig.model_validate(raw)
        except ValidationError as exc:
            problems += _translate(exc, SweepConfig)
            parts = _partial_sections(raw)
            problems += _semantic_problems(**parts)
            if parts["search"] is None:
                problems += _loose_search_problems(raw, parts["fixed_names"])
        else:
            problems += _semantic_problems(sweep.base, sweep.fixed, sweep.search, sweep.resources,
                                           set(sweep.fixed.model_fields_set))
    if sweep is not None and not problems:
        _absolutize(sweep, cwd or Path.cwd())
        if check_paths:
            problems += _path_problems(sweep)
    if problems:
        raise SweepFileError(path, _render(problems, lines))
    assert sweep is not None
    sweep._source = path
    return sweep


def _partial_sections(raw: dict[str, Any]) -> dict[str, Any]:
    """Sections that validate on their own, so cross-checks still run when another section is broken."""

    def attempt(model: type[BaseModel], key: str) -> Any:
        value = raw.get(key)
        try:
            return model.model_validate({} if value is None else value)
        except ValidationError:
            return None

    fixed = raw.get("fixed")
    return {"base": attempt(SweepBase, "base"), "fixed": attempt(Hyperparameters, "fixed"),
            "search": attempt(SearchConfig, "search") if "search" in raw else None,
            "resources": attempt(ResourcesConfig, "resources"),
            "fixed_names": {str(k) for k in fixed} if isinstance(fixed, dict) else set()}


def _loose_search_problems(raw: dict[str, Any], fixed_names: set[str]) -> list[Problem]:
    """When ``search`` does not validate: conflicts with ``fixed`` and the domains that validate alone."""
    search = raw.get("search")
    search = search if isinstance(search, dict) else {}
    space, grid = (search.get(k) if isinstance(search.get(k), dict) else {} for k in ("space", "grid"))
    problems: list[Problem] = [(("search", key, str(n)), _BOTH) for key, names in (("space", space), ("grid", grid))
                               for n in names if n in fixed_names]
    for name, value in space.items():
        try:
            domain = TypeAdapter(Domain).validate_python(value)
        except ValidationError:
            continue
        problems += _domain_problems(str(name), domain)
    return problems


def _semantic_problems(
    base: SweepBase | None, fixed: Hyperparameters | None, search: SearchConfig | None,
    resources: ResourcesConfig | None, fixed_names: set[str],
) -> list[Problem]:
    problems: list[Problem] = []
    if search is not None:
        problems += _search_problems(search)
        problems += _fixed_conflicts(fixed_names, search)
    if base is not None:
        problems += _base_problems(base, fixed or Hyperparameters())
        if search is not None and search.scheduler is not None:
            max_t = search.scheduler.max_t or base.train.epochs
            if search.scheduler.grace_period > max_t:
                problems.append((("search", "scheduler", "grace_period"),
                                 f"expected <= max_t ({max_t}), got {search.scheduler.grace_period}"))
    if resources is not None and resources.backend == "nccl" and resources.gpus_per_worker == 0:
        problems.append((("resources", "backend"), "nccl needs gpus_per_worker > 0 (use gloo or auto on CPU)"))
    return problems


def _absolutize(sweep: SweepConfig, cwd: Path) -> None:
    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else cwd / p

    sweep.results = absolute(sweep.results)
    sweep.base.cache_dir = absolute(sweep.base.cache_dir)
    data = sweep.base.data
    if data.manifests is not None:
        data.manifests = absolute(data.manifests)
    if data.audio_root is not None:
        data.audio_root = absolute(data.audio_root)


def _path_problems(sweep: SweepConfig) -> list[Problem]:
    problems: list[Problem] = []
    data, model = sweep.base.data, sweep.base.model
    if data.source == "emobox" and data.manifests is not None:
        root = data.manifests / data.dataset
        expected = [root / "label_map.json"] + [
            root / f"fold_{k}" / f"{data.dataset}_{split}_fold_{k}.jsonl"
            for k in data.folds for split in ("train", "test")]
        missing = [str(p) for p in expected if not p.is_file()]
        if missing:
            problems.append((("base", "data", "manifests"), "missing EmoBox files: " + ", ".join(missing)))
        audio = data.audio_root or data.manifests
        if not audio.is_dir():
            problems.append((("base", "data", "audio_root"), f"no such folder: {audio}"))
    for key in ("teacher", "student_llm"):
        value = getattr(model, key)
        if value != "tiny" and not Path(value).exists():
            problems.append((("base", "model", key), f"no such model folder: {value}"))
    return problems


# --- launch-time checks ---------------------------------------------------------------------------------


def check_resources(sweep: SweepConfig, cluster_resources: dict[str, float], *,
                    driver_resource: str | None = None) -> list[str]:
    """Problems running ``sweep`` on a cluster with ``cluster_resources`` (``ray.cluster_resources()``).

    ``max_concurrent_trials`` worker groups must fit at once; with ``driver_resource`` (the custom
    resource each trial's driver holds) there must also be one slot of it per concurrent trial.
    Only totals are checked: a worker larger than every single node is not detected.
    """
    r, n = sweep.resources, sweep.search.max_concurrent_trials
    prefix = f"{sweep.source}: " if sweep.source else ""
    have = {unit: float(cluster_resources.get(unit, 0)) for unit in ("CPU", "GPU")}
    need = {"CPU": r.workers_per_trial * r.cpus_per_worker, "GPU": r.workers_per_trial * r.gpus_per_worker}
    per = {"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker}
    problems: list[str] = []
    if need["GPU"] > 0 and have["GPU"] == 0:
        problems.append(f"{prefix}resources.gpus_per_worker: {r.gpus_per_worker:g} GPU per worker asked for, "
                        "but the cluster has no GPU")
    for unit in ("GPU", "CPU"):
        how = f"{r.workers_per_trial} worker(s) x {per[unit]:g} {unit}"
        if need[unit] == 0 or have[unit] == 0 and unit == "GPU":
            continue
        if need[unit] > have[unit]:
            problems.append(f"{prefix}resources: one trial needs {need[unit]:g} {unit} ({how}), "
                            f"but the cluster has {have[unit]:g}")
        elif n * need[unit] > have[unit]:
            problems.append(f"{prefix}search.max_concurrent_trials: {n} trials x {need[unit]:g} {unit} ({how}) "
                            f"= {n * need[unit]:g} {unit}, but the cluster has {have[unit]:g}; at most "
                            f"{int(have[unit] // need[unit])} fit at once")
    slots = cluster_resources.get(driver_resource, 0) if driver_resource else n
    if slots < n:
        problems.append(f"{prefix}search.max_concurrent_trials: {n} trials need {n} '{driver_resource}' "
                        f"driver slots, but the cluster has {slots:g}")
    return problems
