"""UA/WA/macro-F1 match scikit-learn's definitions, including classes missing from predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from pldistill.train.metrics import classification_metrics
from pldistill.train.trial import lr_factor


@pytest.mark.parametrize("seed", range(20))
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 8))
    t = rng.integers(0, n_classes, size=int(rng.integers(5, 60)))
    p = np.where(rng.random(t.size) < 0.5, t, rng.integers(0, n_classes + 1, size=t.size))  # may predict an absent class
    m = classification_metrics(t, p)
    assert m["wa"] == pytest.approx(accuracy_score(t, p))
    assert m["ua"] == pytest.approx(balanced_accuracy_score(t, p))
    assert m["f1"] == pytest.approx(f1_score(t, p, average="macro", zero_division=0))


def test_metrics_reject_empty():
    with pytest.raises(ValueError):
        classification_metrics([], [])


def test_lr_schedule_warms_up_then_decays():
    total, warm = 100, 10
    f = [lr_factor(s, total, warm) for s in range(total)]
    assert f[0] < f[5] < f[9] <= 1.0
    assert max(f) == pytest.approx(1.0)
    assert f[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(f[warm:], f[warm + 1:]))


def test_closed_set_metrics_loss_is_the_mean_gold_answer_ce() -> None:
    import numpy as np

    from pldistill.train.metrics import closed_set_metrics

    scores = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]))
    out = closed_set_metrics([0, 1, 1], scores)
    # predictions 0, 2, 0 against 0, 1, 1: WA 1/3; recalls class 0: 1, class 1: 0 -> UA 0.5
    assert out["wa"] == pytest.approx(1 / 3) and out["ua"] == pytest.approx(0.5)
    assert out["loss"] == pytest.approx(-(np.log(0.5) + np.log(0.2) + np.log(0.3)) / 3)


def test_free_answers_are_matched_to_the_label_they_name_first() -> None:
    from pldistill.train.teacher import match_answer

    labels = ("angry", "happy", "neutral", "sad")
    assert match_answer("Happy", labels) == 1
    assert match_answer("The speaker sounds sad, not happy.", labels) == 3
    assert match_answer("unhappy", labels) is None  # whole words only
    assert match_answer("I cannot tell.", labels) is None


def test_conflict_ua_is_the_ua_of_the_conflict_clips_alone() -> None:
    import numpy as np

    from pldistill.train.metrics import closed_set_metrics

    scores = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.6, 0.4]]))
    lexical = ["congruent", "conflict", "conflict", "neutral", "conflict"]
    out = closed_set_metrics([0, 1, 1, 1, 0], scores, lexical)
    # conflict clips: labels 1, 1, 0 predicted 1, 0, 0 -> recalls: class 1 1/2, class 0 1/1 -> UA 0.75
    assert out["conflict_ua"] == pytest.approx(0.75)
    assert "conflict_ua" not in closed_set_metrics([0, 1, 1, 1, 0], scores, [None] * 5)
    assert "conflict_ua" not in closed_set_metrics([0, 1, 1, 1, 0], scores)
