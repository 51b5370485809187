"""A validation set carved from a fold's training clips (EmoBox ships none), and the labelled part
of what is left when the student may read only some of its labels, reproducibly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pldistill.data.emobox import Clip

__all__ = ["split_validation", "split_labelled"]

#: Speaker orders tried; the one whose held-out set covers the most labels and lands closest to
#: the requested fraction wins (ties: the earliest, so the result depends on the seed only).
_SPEAKER_ORDERS_TRIED = 32


def split_validation(clips: Sequence[Clip], fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """Split ``clips`` into ``(train, val)``, both in the input order.

    With at least two known speakers the split is speaker-disjoint: whole speakers are held out,
    in a seeded random order, until they hold ``>= fraction`` of the clips (never all speakers).
    Otherwise (unknown speakers, a single speaker) it is a stratified random split. Either way
    every label appears in val when the data allow it.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    clips = list(clips)
    rng = np.random.default_rng(seed)
    speakers = {c.speaker for c in clips}
    if None in speakers or len(speakers) < 2:
        held = _stratified(clips, fraction, rng)
    else:
        held = _by_speaker(clips, fraction, rng)
    train = [c for i, c in enumerate(clips) if i not in held]
    val = [c for i, c in enumerate(clips) if i in held]
    return train, val


def _by_speaker(clips: list[Clip], fraction: float, rng: np.random.Generator) -> set[int]:
    per_speaker: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        per_speaker.setdefault(str(c.speaker), []).append(i)
    names = sorted(per_speaker)
    labels_per_speaker = {s: {clips[i].label for i in per_speaker[s]} for s in names}
    all_labels = {c.label for c in clips}
    target = fraction * len(clips)
    best: tuple[tuple[int, int, float], list[str]] | None = None
    for _ in range(_SPEAKER_ORDERS_TRIED):
        order = [names[j] for j in rng.permutation(len(names))]
        chosen: list[str] = []
        count = 0
        for s in order[:-1]:  # keep at least one speaker for training
            chosen.append(s)
            count += len(per_speaker[s])
            if count >= target:
                break
        val_labels = set().union(*(labels_per_speaker[s] for s in chosen))
        train_labels = set().union(*(labels_per_speaker[s] for s in names if s not in chosen))
        score = (len(val_labels & all_labels), len(train_labels), -abs(count - target))
        if best is None or score > best[0]:
            best = (score, chosen)
    assert best is not None
    return {i for s in best[1] for i in per_speaker[s]}


def _stratified(clips: list[Clip], fraction: float, rng: np.random.Generator, *, lone: bool = False) -> set[int]:
    """Indices drawn per label, ``round(fraction x n)`` of a label's ``n`` clips (at least one, at
    most ``n - 1``). A label with a single clip: drawn when ``lone`` (the labelled split: every
    emotion keeps a labelled clip), else not (validation: the clip stays in train). A lone clip
    draws nothing from ``rng``, so the other labels' draws are the same either way."""
    by_label: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by_label.setdefault(c.label, []).append(i)
    counts = Counter(c.label for c in clips)
    held: set[int] = set()
    for label in sorted(by_label):
        n = counts[label]
        if n < 2:
            held.update(by_label[label] if lone else ())
            continue
        k = min(n - 1, max(1, round(fraction * n)))
        held.update(int(i) for i in rng.permutation(by_label[label])[:k])
    return held


def split_labelled(clips: Sequence[Clip], fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """Split training ``clips`` into ``(labelled, unlabelled)``, both in the input order.

    Semi-supervised distillation (``data.labelled_fraction``): the student reads the gold labels of
    ``fraction`` of its training clips and the teacher's signal on all of them. The labelled part is
    a seeded random draw *within each emotion* (``round(fraction x n)`` clips of an emotion with
    ``n``, at least one, at most ``n - 1``; the one clip of an emotion that has one), so every class keeps labelled examples however small the fraction, and
    the class balance of the labelled part is the fold's. ``fraction == 1``: everything is labelled.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"labelled fraction must be in (0, 1], got {fraction}")
    clips = list(clips)
    if fraction == 1.0:
        return clips, []
    labelled = _stratified(clips, fraction, np.random.default_rng(seed), lone=True)
    return ([c for i, c in enumerate(clips) if i in labelled],
            [c for i, c in enumerate(clips) if i not in labelled])
