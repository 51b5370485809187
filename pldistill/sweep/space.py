"""The search space in Ray Tune's terms, and a trial's sampled values back into a :class:`TrialConfig`.

The launcher builds the Tune objects once::

    ts = build_tune_search(sweep)
    tuner = tune.Tuner(trainable, param_space=ts.param_space,
                       tune_config=tune.TuneConfig(**ts.tune_config_kwargs()))

and each trial's driver turns the config Tune hands it into a validated trial::

    trial = resolve_trial_config(sweep, config, trial_id=tune.get_context().get_trial_id())

Every algorithm puts Tune domains into ``param_space``; OptunaSearch converts them itself when Tune
calls ``set_search_properties`` (Ray 2.60 refuses ``grid_search`` there, so grids use Tune's own
BasicVariantGenerator). Metric and mode go to ``TuneConfig`` only: the searcher and the ASHA scheduler
are built without them and receive them from Tune (a scheduler given both ways makes Tune raise).
Ray is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pldistill.config import Hyperparameters, ModelConfig, TrainConfig, TrialConfig
from pldistill.errors import InputError
from pldistill.sweep.config import (
    HPARAM_NAMES,
    ChoiceDomain,
    IntDomain,
    LogUniformDomain,
    SweepConfig,
    UniformDomain,
)

__all__ = [
    "VARIANT_KEY",
    "every_trial_config",
    "TuneSearch",
    "build_param_space",
    "build_scheduler",
    "build_search_alg",
    "build_tune_search",
    "hparams_of",
    "param_specs",
    "resolve_trial_config",
    "shared_config",
    "variant_name",
]

#: The ``param_space`` key of the named-variant grid axis; its values are ``{"name": ..., **overrides}``.
VARIANT_KEY = "variant"


@dataclass
class TuneSearch:
    """Everything Tune needs to run a sweep's search (single use: searchers keep state)."""

    param_space: dict[str, Any]
    #: ``ConcurrencyLimiter(OptunaSearch)`` or ``BasicVariantGenerator``; both already hold the
    #: concurrency limit, so ``TuneConfig(max_concurrent_trials=...)`` must stay unset.
    search_alg: Any
    #: ``ASHAScheduler`` or None (Tune's FIFO).
    scheduler: Any | None
    #: Tune's num_samples: trials (optuna, random) or repeats of every grid point (grid).
    num_samples: int
    #: Trials the sweep will run in all.
    num_samples_total: int
    metric: str
    mode: str
    max_concurrent_trials: int

    def tune_config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``ray.tune.TuneConfig``."""
        return {"metric": self.metric, "mode": self.mode, "search_alg": self.search_alg,
                "scheduler": self.scheduler, "num_samples": self.num_samples}


def build_tune_search(sweep: SweepConfig, storage: Any | None = None) -> TuneSearch:
    """``storage``: where an optuna sweep's study is kept (:func:`pldistill.sweep.study.prepare_study`); in memory if None."""
    s = sweep.search
    return TuneSearch(param_space=build_param_space(sweep), search_alg=build_search_alg(sweep, storage),
                      scheduler=build_scheduler(sweep), num_samples=s.repeats,
                      num_samples_total=sweep.trial_count(), metric=s.metric,
                      mode=s.effective_mode, max_concurrent_trials=s.max_concurrent_trials)


def param_specs(sweep: SweepConfig) -> list[Any]:
    """The searched hyperparameters as :class:`~pldistill.results.space.ParamSpec`: the one translation
    of the sweep file's search section. Tune's domains are built from these, and the launch records
    them in ``sweep.json`` for the report. Domains keep their bounds (inclusive), log and step; grid
    axes, and the names that variants set differently, are categorical over their values."""
    from pldistill.results.space import ParamSpec

    s = sweep.search
    specs = [_spec(name, domain) for name, domain in s.space.items()]
    specs += [ParamSpec(name, "categorical", choices=list(values)) for name, values in s.grid.items()]
    # what each variant runs with: fixed, its overrides, and its objective's defaults for the rest
    runs = [Hyperparameters.model_validate({**sweep.fixed_values(), **v.overrides()}).model_dump()
            for v in s.variants]
    overridden = [k for v in s.variants for k in v.overrides()]
    for name in dict.fromkeys(k for k in (*overridden, *(Hyperparameters.model_fields if runs else ()))
                              if k not in s.grid and k not in s.space):
        values = [run[name] for run in runs]
        choices = list({repr(x): x for x in values}.values())
        if len(choices) > 1:
            specs.append(ParamSpec(name, "categorical", choices=choices))
    return specs


def _spec(name: str, domain: Any) -> Any:
    from pldistill.results.space import ParamSpec

    if isinstance(domain, UniformDomain):
        return ParamSpec(name, "float", domain.low, domain.high)
    if isinstance(domain, LogUniformDomain):
        return ParamSpec(name, "float", domain.low, domain.high, log=True)
    if isinstance(domain, IntDomain):
        return ParamSpec(name, "int", domain.low, domain.high, log=domain.log, step=domain.step)
    if isinstance(domain, ChoiceDomain):
        return ParamSpec(name, "categorical", choices=list(domain.values))
    raise TypeError(f"not a search-space domain: {domain!r}")


def build_param_space(sweep: SweepConfig) -> dict[str, Any]:
    """Tune domains built from :func:`param_specs` (optuna, random), or ``grid_search`` axes plus the
    ``variant`` axis (grid)."""
    from ray import tune

    s = sweep.search
    if s.algorithm != "grid":
        return {spec.name: _tune_domain(spec) for spec in param_specs(sweep)}
    space: dict[str, Any] = {name: tune.grid_search(list(values)) for name, values in s.grid.items()}
    if s.variants:
        space[VARIANT_KEY] = tune.grid_search([{"name": v.name, **v.overrides()} for v in s.variants])
    return space


def _tune_domain(spec: Any) -> Any:
    from ray import tune

    if spec.kind == "categorical":
        return tune.choice(list(spec.choices))
    if spec.kind == "int":  # the spec's bounds are inclusive; randint's upper is not
        low, high = int(spec.low), int(spec.high)
        if spec.log:
            return tune.lograndint(low, high + 1)
        if spec.step > 1:  # inclusive upper; low and high are multiples of step (checked on load)
            return tune.qrandint(low, high, spec.step)
        return tune.randint(low, high + 1)
    return tune.loguniform(spec.low, spec.high) if spec.log else tune.uniform(spec.low, spec.high)


def build_search_alg(sweep: SweepConfig, storage: Any | None = None) -> Any:
    """Optuna TPE (seeded) behind a ConcurrencyLimiter, its study named after the sweep and kept in
    ``storage`` (an Optuna storage; in memory if None), or Tune's seeded BasicVariantGenerator."""
    s = sweep.search
    if s.algorithm == "optuna":
        import optuna
        from ray.tune.search import ConcurrencyLimiter

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created ..." at each launch
        from pldistill.sweep.study import StudySearch

        searcher = StudySearch(sampler=optuna.samplers.TPESampler(seed=s.seed), storage=storage,
                               study_name=sweep.name)
        return ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent_trials)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=s.max_concurrent_trials, random_state=s.seed)


def build_scheduler(sweep: SweepConfig) -> Any | None:
    """ASHA over reported epochs (``training_iteration``), ``max_t`` defaulting to the epochs."""
    cfg = sweep.search.scheduler
    if cfg is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=cfg.max_t or sweep.base.train.epochs,
                         grace_period=cfg.grace_period, reduction_factor=cfg.reduction_factor)


def resolve_trial_config(sweep: SweepConfig, sampled: dict[str, Any], *, trial_id: str) -> TrialConfig:
    """``base`` + ``fixed`` + sampled values (+ the variant's overrides) as a validated TrialConfig.

    ``sampled`` is the config Tune gives the trial: hyperparameter names, and for grids the
    ``variant`` dict (or just its name). The trial writes to ``<results>/<name>/runs/<trial_id>``.
    """
    if not trial_id or any(c in trial_id for c in "/\\") or trial_id in (".", ".."):
        raise ValueError(f"trial_id must be a plain directory name, got {trial_id!r}")
    values = dict(sampled)
    overrides = _variant_overrides(sweep, values.pop(VARIANT_KEY, None))
    unknown = sorted(set(values) - set(HPARAM_NAMES))
    if unknown:
        raise ValueError(f"not hyperparameters: {', '.join(unknown)}; valid: {', '.join(HPARAM_NAMES)}")
    # the names fixed explicitly: one left unset takes the trial's objective's default (caad's beta)
    merged = {**sweep.fixed.model_dump(exclude_unset=True), **values, **overrides}
    base = sweep.base
    try:
        # Plain ModelConfig/TrainConfig from the sweep's typed sections (their dumps are copies); the
        # trial's parallelism comes from resources and its seeds from search, their homes in a sweep file.
        return TrialConfig(name=trial_id, data=base.data.model_copy(deep=True),
                           model=ModelConfig(**base.model.model_dump()),
                           train=TrainConfig(**base.train.model_dump(), parallelism=sweep.resources.parallelism,
                                             seeds=list(sweep.search.seeds), replicates=sweep.search.replicates),
                           cache_dir=base.cache_dir, hparams=merged,
                           output_dir=sweep.results_dir / "runs" / trial_id)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise InputError(sweep.source, f"trial {trial_id}: {key}", err["msg"]) from None


def shared_config(sweep: SweepConfig, *, trial_id: str) -> TrialConfig:
    """A trial config for the work every trial shares (corpus, features, teachers, caches): base and
    fixed values, plus the first variant's overrides when the sweep has variants (a variant may set
    the objective, and with it the student family that ``base.model.student`` requires)."""
    sampled = {VARIANT_KEY: sweep.search.variants[0].name} if sweep.search.variants else {}
    return resolve_trial_config(sweep, sampled, trial_id=trial_id)


#: Sampled hyperparameters that change what a trial reads (its student family, its teacher cache).
_ARTIFACT_CHOICES = ("objective", "pseudo_target")


def every_trial_config(sweep: SweepConfig, *, trial_id: str = "prepare") -> list[TrialConfig]:
    """One trial config per variant, and per combination of the sampled choices that change what a
    trial reads (objective, pseudo target): what preparation must cover so that no trial finds an
    artifact missing. Other sampled values keep their fixed or default value (no artifact reads them)."""
    import itertools

    if sweep.search.variants:
        return [resolve_trial_config(sweep, {VARIANT_KEY: v.name}, trial_id=trial_id) for v in sweep.search.variants]
    choices = [(name, list(domain.values)) for name, domain in (sweep.search.space or {}).items()
               if name in _ARTIFACT_CHOICES and getattr(domain, "values", None)]
    names = [n for n, _ in choices]
    return [resolve_trial_config(sweep, dict(zip(names, combo)), trial_id=trial_id)
            for combo in itertools.product(*(values for _, values in choices))]


def _variant_overrides(sweep: SweepConfig, variant: Any) -> dict[str, Any]:
    if variant is None:
        return {}
    if isinstance(variant, dict):
        return {k: v for k, v in variant.items() if k != "name"}
    for v in sweep.search.variants:
        if v.name == variant:
            return v.overrides()
    raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(v.name for v in sweep.search.variants)}")


def variant_name(sampled: dict[str, Any]) -> str | None:
    """The variant a trial's config names (grid sweeps with variants), else None."""
    variant = sampled.get(VARIANT_KEY)
    return variant.get("name") if isinstance(variant, dict) else variant


def hparams_of(trial: TrialConfig) -> dict[str, Any]:
    """The trial's hyperparameters, flat and unprefixed (the results module adds ``hp_``)."""
    return trial.hparams.model_dump(mode="json")
