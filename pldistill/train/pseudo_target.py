"""A fold's CAAD pseudo targets (``hparams.pseudo_target``): what the teacher, and the student's KL
terms, are forced on.

``label``: None, the gold answer (today's single forward). ``metadata``: every clip's answer composed
from its audio (:mod:`pldistill.data.pseudo_target`: the gold emotion word, then pitch, loudness and
rate as low / medium / high by the training clips' terciles of eGeMAPS functionals). The eGeMAPS
values are those EmoDistill's prosodic teacher reads (same call, same on-disk cache under
``<cache_dir>/features``), computed from the clips' audio, so the synthetic corpus and real EmoBox
corpora take the same path wherever their audio is.
"""

from __future__ import annotations

from pathlib import Path

from pldistill.config import TrialConfig
from pldistill.train.dataset import FoldData, fold_clips_egemaps

__all__ = ["fold_pseudo_targets"]


def fold_pseudo_targets(cfg: TrialConfig, data: FoldData) -> dict[str, str] | None:
    """``key -> pseudo target`` for every clip of the fold under ``pseudo_target: metadata``; None under
    ``label``. In a process that runs trial after trial (:mod:`pldistill.train.reuse`), the last fold's
    are kept."""
    from pldistill.train import reuse

    if cfg.hparams.pseudo_target == "label":
        return None
    from pldistill.train.teacher import teacher_key

    # unlabelled clips' targets start with the teacher's answer: the teacher is part of what they depend on
    key = (cfg.data.model_dump_json(), str(Path(cfg.cache_dir).resolve()), data.fold, data.features_key,
           teacher_key(cfg, data) if data.unlabelled else None)
    return reuse.memo("pseudo_targets", key, lambda: _metadata_targets(cfg, data))


def _metadata_targets(cfg: TrialConfig, data: FoldData) -> dict[str, str]:
    from pldistill.data.pseudo_target import compose_pseudo_targets, fit_prosody_bins
    from pldistill.train.teacher import answered

    # An unlabelled clip's target starts with the teacher's answer, as its response does (data.labelled_fraction).
    examples = data.train + answered(cfg, data) + data.val + data.test
    _, feats = fold_clips_egemaps(cfg, data)  # what EmoDistill's prosodic teacher reads: one cache file
    # the terciles of every training clip's audio (no label is read: unlabelled clips count too)
    bins = fit_prosody_bins(feats, [ex.key for ex in examples[:len(data.train) + len(data.unlabelled)]])
    return compose_pseudo_targets({ex.key: data.labels[ex.label] for ex in examples}, feats, bins)
