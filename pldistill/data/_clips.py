"""Which clips a synthetic speaker says, and how one is rendered (private to :mod:`pldistill.data.synth`).

:func:`plan_speaker` decides, for every (emotion, index) of a speaker, the lexical condition and
the sentence; :func:`render_clip` speaks it with eSpeak NG in the emotion's prosody, resamples it
to 16 kHz through the speaker's vocal-tract warp and post-processes it (:mod:`pldistill.data._speech`).
Both depend only on the corpus parameters and the clip's coordinates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import cycle
from typing import Any

import numpy as np

from pldistill.data._speech import (
    SAMPLE_RATE,
    EmotionProfile,
    Speaker,
    draw_post,
    draw_utterance,
    postprocess,
    trim_silence,
)
from pldistill.data.espeak import speak, to_16k
from pldistill.data.sentences import EMOTION_SENTENCES, LEXICAL_CONDITIONS, NEUTRAL_SENTENCES

__all__ = ["ClipPlan", "plan_speaker", "render_clip", "condition_counts"]

_FADE_S = 0.02


@dataclass(frozen=True)
class ClipPlan:
    speaker: int
    emotion: int  # index into the corpus labels: the emotion of the voice (the label)
    index: int  # clip number within (speaker, emotion)
    lexical: str  # one of LEXICAL_CONDITIONS
    text: str  # the sentence spoken (the transcript)


def condition_counts(n: int, fractions: Sequence[float], rotate: int) -> list[int]:
    """``n`` split by ``fractions`` (largest remainder). Ties in the remainder go to the condition
    first in an order rotated by ``rotate``, so small corpora still see every condition."""
    exact = [f * n for f in fractions]
    counts = [int(np.floor(x + 1e-9)) for x in exact]
    k = len(fractions)
    order = sorted(range(k), key=lambda j: (-(exact[j] - counts[j]), (j - rotate) % k))
    for j in order[: n - sum(counts)]:
        counts[j] += 1
    return counts


def _pools(seed: int, s: int, labels: Sequence[str]) -> dict[str, Iterator[str]]:
    """Per word set, the speaker's own seeded order of its sentences, cycled (few repeats)."""
    sets = {"neutral": NEUTRAL_SENTENCES, **{label: EMOTION_SENTENCES[label] for label in labels}}
    out = {}
    for p, (name, group) in enumerate(sorted(sets.items())):
        order = np.random.default_rng([seed, s, 7, p]).permutation(len(group))
        out[name] = cycle([group[j] for j in order])
    return out


def plan_speaker(s: int, params: dict[str, Any]) -> list[ClipPlan]:
    """Speaker ``s``'s clips, emotion by emotion: ``per_class`` each, lexical conditions in the
    configured fractions (shuffled), conflicting words drawn evenly from the other emotions."""
    seed, labels, n = params["seed"], tuple(params["labels"]), params["per_class"]
    fractions = [params[c] for c in LEXICAL_CONDITIONS]
    pools = _pools(seed, s, labels)
    plans = []
    for e, label in enumerate(labels):
        rng = np.random.default_rng([seed, s, e + 1, 1_000_000])
        conditions = [c for c, k in zip(LEXICAL_CONDITIONS, condition_counts(n, fractions, s + e)) for _ in range(k)]
        conditions = [conditions[j] for j in rng.permutation(n)]
        others = [x for x in labels if x != label]
        other = cycle([others[j] for j in rng.permutation(len(others))])
        for i, cond in enumerate(conditions):
            pool = label if cond == "congruent" else "neutral" if cond == "neutral" else next(other)
            plans.append(ClipPlan(s, e, i, cond, next(pools[pool])))
    return plans


def render_clip(sp: Speaker, profile: EmotionProfile, clip: ClipPlan, params: dict[str, Any]) -> np.ndarray:
    """The clip as float32 at 16 kHz, ``clip_seconds[0]`` to ``clip_seconds[1]`` long. A clip that
    comes out too long is spoken again faster (up to twice), and cut with a fade as a last resort."""
    coords = [params["seed"], clip.speaker, clip.emotion + 1, clip.index]
    post_rng = np.random.default_rng([*coords, 2])
    cue = draw_post(post_rng, sp, profile)
    espeak_seed = int(post_rng.integers(1, 2**31 - 1))
    lo, hi = params["clip_seconds"]
    speed = 1.0
    for _ in range(3):
        utterance = draw_utterance(np.random.default_rng([*coords, 1]), sp, profile, clip.text, espeak_seed, speed)
        speech = trim_silence(to_16k(speak([utterance])[0], cue["warp"]))
        seconds = len(speech) / SAMPLE_RATE + cue["lead_s"] + cue["trail_s"]
        if seconds <= hi:
            break
        speed *= 1.03 * seconds / hi
    cue["trail_s"] += max(0.0, lo - seconds)
    audio = postprocess(post_rng, speech, sp, cue)
    top = int(hi * SAMPLE_RATE)
    if len(audio) > top:
        audio = audio[:top].copy()
        fade = int(_FADE_S * SAMPLE_RATE)
        audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return audio
