"""Sweep results: the Parquet schema, the store that writes it, and SQL over it.

``schema`` owns the columns and the version; ``store`` writes one Parquet file per trial
(atomically) and reads them back with Arrow; ``query`` serves them to DuckDB SQL, locked down;
``report`` turns one sweep into Markdown tables and PNG plots (matplotlib and optuna imported lazily).
DuckDB is imported only by the query functions.
"""

from __future__ import annotations

from pldistill.results.query import (
    best_trials,
    default_mode,
    open_results,
    resolve_column,
    run_query,
    sweep_status,
)
from pldistill.results.report import SweepReport, build_report, write_report
from pldistill.results.schema import (
    LOSS_TERMS,
    SCHEMA_VERSION,
    SWEEP_META_KEYS,
    SWEEP_STATUSES,
    TRIAL_STATUSES,
    EpochRecord,
    FoldMetrics,
    SchemaError,
    TrialRecord,
    epochs_schema,
    epochs_table,
    hp_column,
    schema_version_of,
    sweeps_schema,
    trials_schema,
    trials_table,
    validate_sweep_meta,
)
from pldistill.results.store import (
    ResultsStore,
    git_commit,
    list_sweeps,
    read_epochs,
    read_sweep_metas,
    read_trials,
    readable_files,
    result_files,
    unreadable_files,
)

__all__ = [
    "SCHEMA_VERSION",
    "LOSS_TERMS",
    "TRIAL_STATUSES",
    "SWEEP_STATUSES",
    "SWEEP_META_KEYS",
    "SchemaError",
    "FoldMetrics",
    "TrialRecord",
    "EpochRecord",
    "trials_schema",
    "epochs_schema",
    "sweeps_schema",
    "hp_column",
    "trials_table",
    "epochs_table",
    "validate_sweep_meta",
    "schema_version_of",
    "ResultsStore",
    "read_trials",
    "read_epochs",
    "read_sweep_metas",
    "list_sweeps",
    "result_files",
    "readable_files",
    "unreadable_files",
    "git_commit",
    "open_results",
    "run_query",
    "best_trials",
    "sweep_status",
    "resolve_column",
    "default_mode",
    "SweepReport",
    "build_report",
    "write_report",
]
