"""A fold's clips as model-ready examples (features computed once, cached on disk)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from pldistill.config import TrialConfig
from pldistill.models.inputs import Example

__all__ = ["FoldData", "prepare_fold", "manifests_dir", "labelled_share", "teacher_pool_examples",
           "fold_clips_egemaps"]


@dataclass
class FoldData:
    dataset: str
    fold: int
    labels: tuple[str, ...]
    window_s: float
    features_key: str  # content hash of the fold's features (audio bytes, crops, window)
    train: list[Example]
    val: list[Example]
    test: list[Example]
    #: Clips only a teacher fine-tuned here trains on (``teacher_pool.jsonl``), not yet featurised:
    #: the features are computed by :func:`teacher_pool_examples` only when a teacher is fine-tuned.
    teacher_pool: list[Any] = field(default_factory=list)
    #: The training clips whose labels no student reads (``data.labelled_fraction < 1``; ``train``
    #: then holds the labelled ones). ``labelled`` is False and ``label`` the gold label, which only
    #: the teacher's own metrics read: training reads :func:`pldistill.train.teacher.answered` instead.
    unlabelled: list[Example] = field(default_factory=list)


def manifests_dir(cfg: TrialConfig) -> tuple[Path, Path | None]:
    """The manifests folder (the synthetic corpus is generated on first use) and the audio root."""
    from pldistill.data import ensure_synthetic

    if cfg.data.source == "synthetic":
        root = ensure_synthetic(cfg.data, cfg.cache_dir)
        return root, root
    if cfg.data.manifests is None:
        from pldistill.errors import InputError

        raise InputError(None, "data.manifests", "required when data.source is 'emobox'")
    return cfg.data.manifests, cfg.data.audio_root


def prepare_fold(cfg: TrialConfig, fold: int) -> FoldData:
    """Load a fold's manifests, carve validation from train, and compute log-mel features.

    In a process that runs trial after trial (:mod:`pldistill.train.reuse`), the last fold is kept."""
    from pldistill.train import reuse

    key = (cfg.data.model_dump_json(), str(Path(cfg.cache_dir).resolve()), fold)
    return reuse.memo("fold", key, lambda: _prepare_fold(cfg, fold))


def _prepare_fold(cfg: TrialConfig, fold: int) -> FoldData:
    from pldistill.data import choose_window, compute_features, load_fold
    from pldistill.data.emobox import load_teacher_pool

    manifests, audio_root = manifests_dir(cfg)
    split = load_fold(manifests, cfg.data.dataset, fold, audio_root=audio_root,
                      val_fraction=cfg.data.val_fraction, val_seed=cfg.data.val_seed,
                      labelled_fraction=cfg.data.labelled_fraction, labelled_seed=cfg.data.labelled_seed,
                      transcripts=cfg.data.transcripts)
    clips = split.train + split.unlabelled + split.val + split.test
    window = cfg.data.window_s or choose_window([c.length for c in clips])
    feats = compute_features(clips, window, cache_dir=cfg.cache_dir / "features",
                             on_bad_audio=cfg.data.on_bad_audio)
    pool = load_teacher_pool(manifests, cfg.data.dataset, audio_root=audio_root, exclude=clips)

    def examples(part):
        return _examples(part, feats, split.labels)

    return FoldData(dataset=split.dataset, fold=fold, labels=tuple(split.labels), window_s=window,
                    features_key=feats.content_key, train=examples(split.train), val=examples(split.val),
                    test=examples(split.test), teacher_pool=pool,
                    unlabelled=[replace(ex, labelled=False) for ex in examples(split.unlabelled)])


def labelled_share(data: FoldData) -> float:
    """``rho``: the share of labelled clips among the fold's training clips (labelled and unlabelled), the
    labelled fraction as drawn (per emotion, rounded): what a batch of them holds on average."""
    n = len(data.train) + len(data.unlabelled)
    return len(data.train) / n if n else 1.0


def teacher_pool_examples(cfg: TrialConfig, data: FoldData) -> list[Example]:
    """The fold's teacher-pool clips as examples, featurised in the fold's window (cached like the
    fold's features)."""
    from pldistill.data import compute_features

    if not data.teacher_pool:
        return []
    feats = compute_features(data.teacher_pool, data.window_s, cache_dir=cfg.cache_dir / "features",
                             on_bad_audio=cfg.data.on_bad_audio)
    return _examples(data.teacher_pool, feats, data.labels)


def _examples(part, feats, labels) -> list[Example]:
    from pldistill.data import audio_token_count

    index = {lab: i for i, lab in enumerate(labels)}
    skipped = set(feats.skipped)
    out = []
    for clip in part:
        if clip.key in skipped:  # unreadable audio with on_bad_audio: skip (reported by the data layer)
            continue
        i = feats.index(clip.key)
        valid = int(feats.valid_frames[i])
        out.append(Example(key=clip.key, features=partial(feats.get, i), valid_frames=valid,
                           label=index[clip.label], num_audio_tokens=audio_token_count(valid),
                           transcript=clip.transcript, lexical=clip.lexical))
    return out


def fold_clips_egemaps(cfg: TrialConfig, data: FoldData) -> tuple[dict[str, Any], Any]:
    """The fold's clips by key (train, unlabelled, validation, test) and their eGeMAPSv02 functionals,
    rows in that order (``pldistill.data.compute_egemaps``, cached on disk). EmoDistill's prosodic
    teacher and CAAD's metadata pseudo targets both read them: one clip set, one call, one cache file."""
    from pldistill.data import compute_egemaps, load_fold

    manifests, audio_root = manifests_dir(cfg)
    split = load_fold(manifests, cfg.data.dataset, data.fold, audio_root=audio_root,
                      val_fraction=cfg.data.val_fraction, val_seed=cfg.data.val_seed,
                      labelled_fraction=cfg.data.labelled_fraction, labelled_seed=cfg.data.labelled_seed,
                      transcripts=cfg.data.transcripts)
    clips = {c.key: c for c in split.train + split.unlabelled + split.val + split.test}
    keys = [ex.key for ex in (*data.train, *data.unlabelled, *data.val, *data.test)]
    # "fail": these clips' audio was read for the log-mels already; a skip here would misalign the rows
    return clips, compute_egemaps([clips[k] for k in keys], cfg.cache_dir / "features", on_bad_audio="fail")
