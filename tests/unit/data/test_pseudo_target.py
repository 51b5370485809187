"""CAAD's metadata pseudo target: tercile bins over the training clips only, the answer's text, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from pldistill.data.egemaps import Egemaps
from pldistill.data.pseudo_target import PROSODY_DESCRIPTORS, compose_pseudo_targets, fit_prosody_bins
from pldistill.errors import InputError

PITCH, LOUD, RATE = (d.feature for d in PROSODY_DESCRIPTORS)


def _feats(rows: dict[str, tuple[float, float, float]]) -> Egemaps:
    """Functionals with the three prosody columns between two unrelated ones (the names pick the columns)."""
    names = ("jitterLocal_sma3nz_amean", PITCH, "HNRdBACF_sma3nz_amean", LOUD, RATE)
    values = np.array([[9.0, p, -9.0, loud, r] for p, loud, r in rows.values()], dtype=np.float32)
    return Egemaps(tuple(rows), names, values)


# pitch 1..6, loudness 6..1 (reversed), rate all 2.0 except one clip; 6 training clips
TRAIN = {f"tr{i}": (float(i), float(7 - i), 2.0 if i != 6 else 5.0) for i in range(1, 7)}


def test_terciles_are_the_training_clips_and_bins_are_low_medium_high() -> None:
    feats = _feats({**TRAIN, "va0": (100.0, 100.0, 100.0), "te0": (-100.0, 0.5, 0.0)})
    bins = fit_prosody_bins(feats, list(TRAIN))
    # np.quantile of 1..6 at 1/3 and 2/3 (linear): 2.666..., 4.333...; the val/test outliers do not move them
    np.testing.assert_allclose(bins.edges[0], (8 / 3, 13 / 3))
    np.testing.assert_allclose(bins.edges[1], (8 / 3, 13 / 3))
    assert bins.edges[2] == (2.0, 2.0)
    answers = {k: "Angry" for k in feats.keys}
    got = compose_pseudo_targets(answers, feats, bins)
    assert got["tr1"] == "Angry, low pitch, loud, slow"  # rate 2.0 equals both edges: low (ties go down)
    assert got["tr3"] == "Angry, medium pitch, medium loudness, slow"
    assert got["tr5"] == "Angry, high pitch, soft, slow"
    assert got["tr6"] == "Angry, high pitch, soft, fast"
    assert got["va0"] == "Angry, high pitch, loud, fast" and got["te0"] == "Angry, low pitch, soft, slow"


def test_the_answer_starts_with_the_gold_word_and_keeps_each_clips_own() -> None:
    feats = _feats(TRAIN)
    bins = fit_prosody_bins(feats, list(TRAIN))
    answers = {"tr2": "Sad", "tr4": "Happy"}
    got = compose_pseudo_targets(answers, feats, bins)
    assert list(got) == ["tr2", "tr4"]
    assert got["tr2"].split(", ")[0] == "Sad" and got["tr4"].split(", ")[0] == "Happy"
    assert [len(t.split(", ")) for t in got.values()] == [4, 4]  # the word, then pitch, loudness, rate


def test_deterministic_whatever_the_order_of_clips() -> None:
    feats = _feats(TRAIN)
    flipped = _feats(dict(reversed(list(TRAIN.items()))))
    a = compose_pseudo_targets({k: "Neutral" for k in TRAIN}, feats, fit_prosody_bins(feats, list(TRAIN)))
    b = compose_pseudo_targets({k: "Neutral" for k in TRAIN}, flipped,
                               fit_prosody_bins(flipped, list(reversed(list(TRAIN)))))
    assert a == b


def test_non_finite_features_and_missing_columns_are_input_errors() -> None:
    bad = _feats({**TRAIN, "tr9": (float("nan"), 1.0, 1.0)})
    with pytest.raises(InputError, match="1 clips have non-finite prosody features"):
        fit_prosody_bins(bad, list(bad.keys))
    short = Egemaps(("a",), (PITCH,), np.zeros((1, 1), np.float32))
    with pytest.raises(InputError, match="no column"):
        fit_prosody_bins(short, ["a"])
