"""Sweep files and their run on Ray Tune.

:mod:`.config` holds the typed models of a sweep file, :mod:`.load` reads and cross-checks one
(:func:`load_sweep`), :mod:`.resources` checks it against a cluster, :mod:`.space` turns it into
Tune's search space and each trial's :class:`~pldistill.config.TrialConfig`.

Importing this package imports pydantic and the config models only; Ray and Optuna are imported
inside the functions of :mod:`.space` that build Tune objects.
"""

from pldistill.sweep.config import (
    HPARAM_NAMES,
    METRIC_NAMES,
    SearchConfig,
    SweepConfig,
)
from pldistill.sweep.load import SweepFileError, load_sweep
from pldistill.sweep.resources import check_resources
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
