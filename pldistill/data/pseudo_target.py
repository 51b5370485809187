"""CAAD's pseudo target from audio-derived metadata (``pseudo_target: metadata``): a short answer per clip.

CAAD's Stage 1 forces both teacher paths on one *pseudo ground truth* per clip, composed from
metadata derived from the audio. A corpus here carries none ready-made, so the metadata are
computed: the clip's eGeMAPSv02 functionals (:mod:`pldistill.data.egemaps`, the same cached
values EmoDistill's prosodic teacher reads), three of them binned into low / medium / high by
their terciles over the fold's *training* clips, and written after the gold emotion word::

    Angry, high pitch, loud, fast

The answer starts with the label's own answer text, exactly as the ``label`` target does, so the
emotion word is the first thing the teacher is forced on either way; the descriptors follow in a
fixed order. Terciles of the training clips only: val and test clips are described with the
training clips' edges and never shape them. Deterministic for a corpus and fold (``np.quantile``
with its default linear interpolation; ties go to the lower bin).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pldistill.data.egemaps import Egemaps
from pldistill.errors import InputError

__all__ = ["PSEUDO_TARGET_VERSION", "ProsodyDescriptor", "PROSODY_DESCRIPTORS", "ProsodyBins", "fit_prosody_bins",
           "compose_pseudo_targets"]

#: Bump when the composed texts would change (it is part of the teacher cache's key).
PSEUDO_TARGET_VERSION = 1


@dataclass(frozen=True)
class ProsodyDescriptor:
    """One descriptor: the eGeMAPS functional it bins and its words for the low, medium, high terciles."""

    name: str
    feature: str
    words: tuple[str, str, str]


#: Pitch, loudness and rate: the three cues arousal moves most (high arousal is higher, louder and
#: faster), each a single eGeMAPS functional a listener can name.
PROSODY_DESCRIPTORS: tuple[ProsodyDescriptor, ...] = (
    # Mean F0 in semitones over voiced frames only ("nz"): a perceptual (log) scale, and pauses and
    # unvoiced stretches do not pull it down.
    ProsodyDescriptor("pitch", "F0semitoneFrom27.5Hz_sma3nz_amean", ("low pitch", "medium pitch", "high pitch")),
    # Mean perceived loudness (auditory-spectrum based), eGeMAPS' main intensity cue; dB levels would
    # follow the recording gain more than the voice.
    ProsodyDescriptor("loudness", "loudness_sma3_amean", ("soft", "medium loudness", "loud")),
    # eGeMAPS has no syllable rate; voiced segments per second (roughly syllable nuclei) is its rhythm
    # proxy for speaking rate (Eyben et al. 2016, the temporal features).
    ProsodyDescriptor("rate", "VoicedSegmentsPerSec", ("slow", "medium pace", "fast")),
)


@dataclass(frozen=True)
class ProsodyBins:
    """Each descriptor's tercile edges ``(q1/3, q2/3)`` over the fold's training clips."""

    descriptors: tuple[ProsodyDescriptor, ...]
    edges: tuple[tuple[float, float], ...]  # one pair per descriptor, in order

    def levels(self, values: np.ndarray) -> np.ndarray:
        """``(N, len(descriptors))`` values -> bins 0 (low), 1 (medium), 2 (high): ``v <= q1/3`` is
        low, ``q1/3 < v <= q2/3`` medium, above high."""
        return np.stack([np.digitize(values[:, j], np.asarray(e), right=True) for j, e in enumerate(self.edges)],
                        axis=1)

    def words(self, values: np.ndarray) -> list[list[str]]:
        """Each clip's descriptor words, in the descriptors' order."""
        return [[d.words[int(b)] for d, b in zip(self.descriptors, row)] for row in self.levels(values)]


def _columns(feats: Egemaps, keys: Sequence[str], descriptors: Sequence[ProsodyDescriptor]) -> np.ndarray:
    """``(len(keys), len(descriptors))`` float64; non-finite values are the feature cache's fault."""
    missing = [d.feature for d in descriptors if d.feature not in feats.names]
    if missing:
        raise InputError(None, "egemaps", f"no column {missing} among the {len(feats.names)} eGeMAPS features")
    rows = feats.rows(keys).astype(np.float64)
    x = rows[:, [feats.names.index(d.feature) for d in descriptors]]
    bad = int((~np.isfinite(x)).any(axis=1).sum())
    if bad:
        raise InputError(None, "egemaps", f"{bad} clips have non-finite prosody features (rebuild the feature cache)")
    return x


def fit_prosody_bins(feats: Egemaps, train_keys: Sequence[str],
                     descriptors: Sequence[ProsodyDescriptor] = PROSODY_DESCRIPTORS) -> ProsodyBins:
    """Tercile edges of each descriptor's feature over the clips ``train_keys`` (the fold's training clips)."""
    if not train_keys:
        raise ValueError("terciles need at least one training clip")
    x = _columns(feats, train_keys, descriptors)
    q = np.quantile(x, [1 / 3, 2 / 3], axis=0)  # (2, D)
    return ProsodyBins(tuple(descriptors), tuple((float(q[0, j]), float(q[1, j])) for j in range(x.shape[1])))


def compose_pseudo_targets(answers: Mapping[str, str], feats: Egemaps, bins: ProsodyBins) -> dict[str, str]:
    """``key -> pseudo target`` for every clip of ``answers`` (key -> its gold label's answer text,
    e.g. ``"Angry"``): the answer, then each descriptor's word, comma-separated."""
    keys = list(answers)
    words = bins.words(_columns(feats, keys, bins.descriptors)) if keys else []
    return {k: ", ".join([answers[k], *w]) for k, w in zip(keys, words)}
