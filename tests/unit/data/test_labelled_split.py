"""split_labelled: the labelled part of a fold's training clips (data.labelled_fraction) is drawn per
emotion, reproducibly, and load_fold hands the rest back as the unlabelled part."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pldistill.data import load_fold, split_labelled
from pldistill.data.emobox import Clip

EMOTIONS = ("Neutral", "Happy", "Angry", "Sad")


def _clips(per_label: dict[str, int]) -> list[Clip]:
    out = []
    for label, n in per_label.items():
        for i in range(n):
            out.append(Clip(key=f"{label}-{i}", dataset="toy", wav=Path(f"/{label}-{i}.wav"), label=label,
                            speaker=f"S{i % 3}", sample_rate=16000, length=1.0, start_time=None, end_time=None,
                            manifest=Path("/m.jsonl"), line=len(out) + 1))
    return out


def test_fraction_is_drawn_within_each_emotion_in_input_order() -> None:
    clips = _clips({"Neutral": 40, "Happy": 20, "Angry": 10, "Sad": 3})
    labelled, unlabelled = split_labelled(clips, 0.2, seed=0)
    assert Counter(c.label for c in labelled) == {"Neutral": 8, "Happy": 4, "Angry": 2, "Sad": 1}
    assert sorted(c.key for c in labelled + unlabelled) == sorted(c.key for c in clips)
    assert not {c.key for c in labelled} & {c.key for c in unlabelled}
    position = {c.key: i for i, c in enumerate(clips)}
    for part in (labelled, unlabelled):
        assert [position[c.key] for c in part] == sorted(position[c.key] for c in part)


def test_every_emotion_keeps_a_labelled_clip_however_small_the_fraction() -> None:
    labelled, _ = split_labelled(_clips({"Neutral": 50, "Happy": 2, "Angry": 7, "Sad": 5}), 0.01, seed=4)
    assert set(c.label for c in labelled) == {"Neutral", "Happy", "Angry", "Sad"}


def test_same_seed_same_split_other_seed_other_split() -> None:
    clips = _clips({"Neutral": 30, "Happy": 30})
    first = [c.key for c in split_labelled(clips, 0.3, seed=1)[0]]
    assert first == [c.key for c in split_labelled(clips, 0.3, seed=1)[0]]
    assert first != [c.key for c in split_labelled(clips, 0.3, seed=2)[0]]


def test_fraction_one_labels_everything() -> None:
    clips = _clips({"Neutral": 3, "Happy": 2})
    labelled, unlabelled = split_labelled(clips, 1.0, seed=0)
    assert labelled == clips and unlabelled == []


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_bad_fraction_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="labelled fraction"):
        split_labelled(_clips({"Neutral": 3}), fraction, seed=0)


def test_load_fold_splits_train_after_validation(small_corpus: Path) -> None:
    whole = load_fold(small_corpus, "synthetic", 1, val_fraction=0.25, val_seed=0)
    part = load_fold(small_corpus, "synthetic", 1, val_fraction=0.25, val_seed=0, labelled_fraction=0.5,
                     labelled_seed=3)
    assert whole.unlabelled == []
    assert [c.key for c in part.val] == [c.key for c in whole.val]  # validation stays labelled, unchanged
    assert [c.key for c in part.test] == [c.key for c in whole.test]
    assert sorted(c.key for c in part.train + part.unlabelled) == sorted(c.key for c in whole.train)
    assert 0 < len(part.train) < len(whole.train)
    assert set(c.label for c in part.train) == set(c.label for c in whole.train)


def test_an_emotion_with_a_single_clip_is_labelled_and_the_others_draw_the_same() -> None:
    clips = _clips({"Neutral": 10, "Happy": 1, "Angry": 6})
    labelled, unlabelled = split_labelled(clips, 0.3, seed=2)
    assert "Happy-0" in {c.key for c in labelled}
    assert "Happy" not in {c.label for c in unlabelled}
    # the lone clip draws nothing: the other emotions' labelled clips are those drawn without it
    without = split_labelled([c for c in clips if c.label != "Happy"], 0.3, seed=2)[0]
    assert [c.key for c in labelled if c.label != "Happy"] == [c.key for c in without]


@pytest.mark.parametrize(("n", "fraction", "expected"), [(12, 0.3, 4), (12, 0.2, 2), (9, 0.5, 4), (7, 0.35, 2)])
def test_count_is_rounded_to_nearest(n: int, fraction: float, expected: int) -> None:
    # 3.6 -> 4 (not 3, rounding down), 2.4 -> 2 (not 3, rounding up), 4.5 -> 4 and 2.45 -> 2 (Python's round)
    labelled, _ = split_labelled(_clips({"Neutral": n}), fraction, seed=0)
    assert len(labelled) == expected


def test_load_fold_draws_the_labelled_part_with_labelled_seed(small_corpus: Path) -> None:
    whole = load_fold(small_corpus, "synthetic", 1, val_fraction=0.25, val_seed=0)
    drawn = {seed: [c.key for c in split_labelled(whole.train, 0.5, seed)[0]] for seed in (0, 5)}
    assert drawn[0] != drawn[5]  # so a fold drawn with val_seed (0) instead would be told apart
    part = load_fold(small_corpus, "synthetic", 1, val_fraction=0.25, val_seed=0, labelled_fraction=0.5,
                     labelled_seed=5)
    assert [c.key for c in part.train] == drawn[5]
