"""Pseudo targets for the random clips of ``_clips.py`` (no audio there to derive them from): the gold
word, then three descriptor words that vary from clip to clip, as ``pseudo_target: metadata`` writes them."""

from __future__ import annotations

from collections.abc import Sequence

from pldistill.data.pseudo_target import PROSODY_DESCRIPTORS
from pldistill.models.inputs import Example


def pseudo_targets(examples: Sequence[Example], labels: Sequence[str]) -> dict[str, str]:
    """``key -> "<Label>, <pitch>, <loudness>, <rate>"``, the bins cycling with the clip's position."""
    return {ex.key: ", ".join([labels[ex.label], *(d.words[(i + j) % 3] for j, d in enumerate(PROSODY_DESCRIPTORS))])
            for i, ex in enumerate(examples)}
