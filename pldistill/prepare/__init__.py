"""A sweep's preparation: every artifact its trials read, declared once and built once, before any trial.

The graph (an arrow: "is read by"; ``*`` per fold; :mod:`pldistill.prepare.artifacts` holds the records)::

    corpus ─┬─> features* ─┬─> teacher* ─────────────> teacher_cache*   (one per pseudo target)
            │              ╰─> linguistic_teacher*          ^
            ╰─> egemaps* ──┬─> prosodic_teacher*            |
                           ╰────────────────────────────────╯   (pseudo_target: metadata)
    student_prior                                                (text only: the teacher's tokenizer)

Each record names the config fields and upstream artifacts its key covers, where its entry lives
under ``cache_dir``, how a complete entry is told and its build function. Keys, locks, temporary
folders, atomic renames and completeness are :func:`pldistill._fs.build_once`'s (the data layer's
content-keyed files use the same lock and atomic write). :func:`prepare_configs` builds what a set of
trial configs needs, in dependency order, folds side by side as Ray tasks
(:mod:`pldistill.prepare.run`); trials then read entries by path and never build one
(:func:`pldistill._fs.artifacts_read_only`).

Layering: above ``train`` (whose functions compute keys and build), below ``sweep`` (which turns a
sweep file into the trial configs to prepare: ``pldistill.sweep.launch.prepare_sweep``).
"""

from pldistill.prepare.artifacts import ARTIFACTS, Artifact, needed
from pldistill.prepare.run import Entry, PrepareOptions, PrepareReport, plan, prepare_configs, prepare_trial

__all__ = ["ARTIFACTS", "Artifact", "needed", "Entry", "PrepareOptions", "PrepareReport", "plan", "prepare_configs",
           "prepare_trial"]
