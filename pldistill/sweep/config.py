"""The sweep file as typed models: ``sweeps/<what>_<how>.yaml`` section by section.

A sweep file is plain YAML with these sections, each validated with unknown keys refused:

* ``base`` -- a :class:`~pldistill.config.TrialConfig` without hyperparameters (data, model, train,
  cache_dir); every trial starts from it.
* ``fixed`` -- :class:`~pldistill.config.Hyperparameters` set for every trial (unset names keep the
  paper's defaults).
* ``search`` -- what varies: sampled ``space`` domains (optuna / random) or ``grid`` axes and named
  ``variants`` (grid); a name is either fixed or varied, never both.
* ``resources`` -- Ray Train workers per trial and what each holds.
* ``failures`` -- how much failure a trial absorbs.
* ``tracking`` -- where else trials are written: the Optuna study's storage, MLflow, TensorBoard.

This module holds the models only; :func:`pldistill.sweep.load.load_sweep` reads a file into them
and runs the cross-checks, :mod:`pldistill.sweep.resources` checks them against a cluster.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from pldistill.config import (
    METRIC_NAMES,
    DataConfig,
    Hyperparameters,
    MetricName,
    ModelConfig,
    ReplicatesConfig,
    TrainConfig,
    metric_mode,
)
from pldistill.sweep._problems import Loc

__all__ = [
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
    "SweepModelConfig",
    "SweepTrainConfig",
    "MLflowConfig",
    "TrackingConfig",
    "UniformDomain",
    "VariantConfig",
]

#: Every sweepable name, in the order of :class:`Hyperparameters`.
HPARAM_NAMES = tuple(Hyperparameters.model_fields)
_NAME_PATTERN = r"^[a-z0-9_-]+$"


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


class SweepModelConfig(ModelConfig):
    """``base.model``: a :class:`~pldistill.config.ModelConfig` whose ``teacher_mode`` defaults to
    ``cached``: a sweep's trials share the encoder and teacher outputs, computed once per fold,
    instead of running the frozen models in every step of every trial. A bare TrialConfig keeps
    ``online``, which needs no cache."""

    teacher_mode: Literal["online", "cached"] = "cached"


class SweepTrainConfig(TrainConfig):
    """``base.train``: a :class:`~pldistill.config.TrainConfig` without ``parallelism``. A sweep file
    says it once, as ``resources.parallelism``, beside the worker group it describes; the trial's
    ``train.parallelism`` is filled from there (:func:`pldistill.sweep.space.resolve_trial_config`)."""

    #: Refused when given, left out of dumps (sweep.json): placeholders, never read.
    parallelism: Literal["ddp", "fsdp"] = Field("ddp", exclude=True)
    seeds: list[int] = Field(default_factory=lambda: [0], exclude=True)
    replicates: ReplicatesConfig | None = Field(None, exclude=True)

    @field_validator("parallelism", mode="before")
    @classmethod
    def _said_under_resources(cls, value: Any) -> Any:
        raise ValueError("a sweep file sets it once, as resources.parallelism (how a trial's workers share "
                         "the models)")

    @field_validator("seeds", mode="before")
    @classmethod
    def _said_under_search(cls, value: Any) -> Any:
        raise ValueError("a sweep file asks for replicates once, as search.seeds (every trial runs once per seed)")

    @field_validator("replicates", mode="before")
    @classmethod
    def _replicates_under_search(cls, value: Any) -> Any:
        raise ValueError("a sweep file asks for adaptive replicates once, as search.replicates")


class SweepBase(_Strict):
    """What every trial shares: a TrialConfig without name, hyperparameters and output_dir."""

    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"data", "model", "train"})
    data: DataConfig = Field(default_factory=DataConfig)
    model: SweepModelConfig = Field(default_factory=SweepModelConfig)
    train: SweepTrainConfig = Field(default_factory=SweepTrainConfig)
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

    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"space", "grid", "variants", "scheduler", "replicates"})
    algorithm: Literal["optuna", "random", "grid"]
    metric: MetricName = "val_ua"
    #: Default: the metric's own (:func:`~pldistill.config.metric_mode`: ``min`` for a loss, else ``max``).
    mode: Literal["max", "min"] | None = None
    #: optuna/random: number of trials (required). grid: repeats of every grid point (default 1).
    num_samples: int | None = Field(None, ge=1)
    max_concurrent_trials: int = Field(1, ge=1)
    #: The searcher's own seed (Optuna's TPE, random sampling), not the trials'.
    seed: int = 0
    #: Replicates: every trial (configuration) runs once per seed (student initialisation, LoRA init,
    #: data order), on every fold; Optuna and ASHA see the mean over the (seed, fold) runs.
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    #: Replicate until decided (:class:`~pldistill.config.ReplicatesConfig`): every trial runs ``min_seeds``
    #: seeds, then more until its validation metric's interval is narrow enough or ``max_seeds`` ran.
    #: ``seeds`` then lists the first ``min_seeds`` seeds (default ``0 .. min_seeds - 1``).
    replicates: ReplicatesConfig | None = None
    #: A test metric as ``metric`` selects on test (every figure the sweep reports is then biased
    #: upwards). Refused unless set here; the report then says so on top.
    allow_test_selection: bool = False
    scheduler: ASHAConfig | None = None
    space: dict[str, Domain] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    variants: list[VariantConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_mode(self) -> SearchConfig:
        if self.mode is None:
            self.mode = metric_mode(self.metric)
        if self.replicates is not None and "seeds" not in self.model_fields_set:
            self.seeds = list(range(self.replicates.min_seeds))
        return self

    @property
    def effective_mode(self) -> Literal["max", "min"]:
        """``mode``, never None (it is filled in on validation)."""
        return self.mode or metric_mode(self.metric)

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
    #: its only home in a sweep file, copied into every trial's ``train.parallelism``.
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


class MLflowConfig(_Strict):
    """``tracking.mlflow``: one MLflow run per trial."""

    #: Default: MLflow's own (``MLFLOW_TRACKING_URI``, else its local default).
    tracking_uri: str | None = None
    #: Default: the sweep's name.
    experiment: str | None = None


class TrackingConfig(_Strict):
    """Where else a sweep's trials are written, beside its Parquet results. An optuna sweep's study is
    always kept in a storage; MLflow and TensorBoard are opt-in (the ``tracking`` extra)."""

    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"mlflow"})
    #: An Optuna RDB URL (``sqlite:///...``, ``postgresql://...``) for the study; default: a journal file
    #: under the sweep's results folder (:data:`pldistill.sweep.study.JOURNAL_FILE`).
    optuna_storage: str | None = None
    mlflow: MLflowConfig | None = None
    #: One event stream per trial under ``<results>/<name>/tensorboard/<trial id>``.
    tensorboard: bool = False


class SweepConfig(_Strict):
    """One sweep file. Results go to ``<results>/<name>/``; trial ``t`` writes ``runs/<t>/`` there."""

    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"base", "fixed", "resources", "failures", "description",
                                                     "tracking"})
    name: str = Field(pattern=_NAME_PATTERN)
    description: str = ""
    #: Results root; relative paths are resolved against the CWD by ``load_sweep``.
    results: Path = Path("results")
    base: SweepBase = Field(default_factory=SweepBase)
    #: Only the names written in the file count as fixed (``model_fields_set``).
    fixed: Hyperparameters = Field(default_factory=Hyperparameters)
    search: SearchConfig
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    failures: FailuresConfig = Field(default_factory=FailuresConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
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
