"""Random log-mel clips of different lengths, as model-ready examples: what the step and teacher-cache
tests train on when they need no corpus."""

from __future__ import annotations

import numpy as np

from pldistill.data import audio_token_count
from pldistill.models.inputs import Example

LABELS = ("Neutral", "Happy", "Angry", "Sad")
WINDOW = 1.0  # 100 mel frames, at most 25 audio tokens


def random_examples(n: int, seed: int, prefix: str) -> list[Example]:
    """``n`` clips keyed ``<prefix><i>``: 40-100 valid frames, the rest Whisper's padding value."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        valid = int(rng.integers(40, 101))
        mel = rng.normal(size=(128, 100)).astype(np.float32)
        mel[:, valid:] = -0.5
        out.append(Example(key=f"{prefix}{i}", features=mel, valid_frames=valid, label=int(rng.integers(4)),
                           num_audio_tokens=audio_token_count(valid)))
    return out
