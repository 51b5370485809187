"""The tiny teacher the model tests share: built from its config, a 2 s encoder window."""

from __future__ import annotations

import pytest

from pldistill.models.loading import build_tiny_teacher, set_encoder_window


@pytest.fixture(scope="module")
def teacher():
    t = build_tiny_teacher(seed=0)
    set_encoder_window(t.audio_tower, 2.0)
    return t
