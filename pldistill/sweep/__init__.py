"""Sweep files: typed loading and validation (:mod:`.config`) and their Ray Tune form (:mod:`.space`).

Importing this package imports pydantic and the config models only; Ray and Optuna are imported
inside the functions of :mod:`.space` that build Tune objects.
"""

from pldistill.sweep.config import (
    HPARAM_NAMES,
    METRIC_NAMES,
    SearchConfig,
    SweepConfig,
    SweepFileError,
    check_resources,
    load_sweep,
)
from pldistill.sweep.space import (
    TuneSearch,
    build_tune_search,
    hparams_of,
    resolve_trial_config,
    variant_name,
)

__all__ = [
    "HPARAM_NAMES",
    "METRIC_NAMES",
    "SearchConfig",
    "SweepConfig",
    "SweepFileError",
    "TuneSearch",
    "build_tune_search",
    "check_resources",
    "hparams_of",
    "load_sweep",
    "resolve_trial_config",
    "variant_name",
]
