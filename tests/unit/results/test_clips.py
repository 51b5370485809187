"""pldistill.results.clips: the clip metrics and the clip-level paired bootstrap, by hand."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import stats as st

from pldistill.results.clips import CLIP_METRICS, paired_bootstrap
from pldistill.results.stats import difference_verdict
from pldistill.train.metrics import classification_metrics

# ---------------------------------------------------------------- clip metrics and the bootstrap

# y = [0, 0, 0, 1]. a predicts [0, 0, 0, 0]: WA 3/4; UA (3/3 + 0/1)/2 = 0.5; F1: class 0 2*3/(4+3) = 6/7,
# class 1 2*0/(0+1) = 0 -> 3/7. b predicts [0, 0, 1, 1]: WA 3/4; UA (2/3 + 1/1)/2 = 5/6;
# F1: class 0 2*2/(2+3) = 4/5, class 1 2*1/(2+1) = 2/3 -> 11/15.
Y4, A4, B4 = [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 1]


@pytest.mark.parametrize(("metric", "a", "b"), [("ua", 0.5, 5 / 6), ("wa", 0.75, 0.75), ("f1", 3 / 7, 11 / 15)])
def test_clip_metrics_by_hand(metric: str, a: float, b: float) -> None:
    classes = np.array([0, 1])
    assert CLIP_METRICS[metric](np.array(Y4), np.array(A4), classes) == pytest.approx(a, abs=1e-12)
    assert CLIP_METRICS[metric](np.array(Y4), np.array(B4), classes) == pytest.approx(b, abs=1e-12)
    d = paired_bootstrap(Y4, A4, B4, metric=f"test_{metric}", n_resamples=200)
    assert d.mean == pytest.approx(a - b, abs=1e-12) and d.unit == "clips" and d.n == 4


def test_vectorized_clip_metrics_match_the_training_metrics_row_by_row() -> None:
    # Each row is one resample; a class can be absent from some rows, which UA and F1 must follow per row.
    rng = np.random.default_rng(7)
    t = rng.integers(0, 5, size=(40, 12))
    p = np.where(rng.random((40, 12)) < 0.5, t, rng.integers(0, 5, size=(40, 12)))
    for name, fn in CLIP_METRICS.items():
        got = fn(t, p, np.arange(5))
        want = [classification_metrics(t[i], p[i])[name] for i in range(len(t))]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=name)


def _systems(n: int, acc_a: float, acc_b: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    wrong = (y + 1 + rng.integers(0, 3, n)) % 4  # never the true label
    return y, np.where(rng.random(n) < acc_a, y, wrong), np.where(rng.random(n) < acc_b, y, wrong)


def test_bootstrap_of_identical_systems_is_zero() -> None:
    y, a, _ = _systems(300, 0.7, 0.6)
    d = paired_bootstrap(y, a, a.copy(), n_resamples=500)
    assert (d.mean, d.low, d.high, d.p_value) == (0.0, 0.0, 0.0, 1.0) and not d.distinguishable
    assert d.kind == "bootstrap"
    assert difference_verdict(d) == ("not distinguishable from sft on these test clips only (clip bootstrap; seeds "
                                     "not replicated)")


def test_bootstrap_of_always_right_against_always_wrong_is_exactly_one() -> None:
    y, _, _ = _systems(200, 0.7, 0.6)
    for metric in ("ua", "wa", "f1"):
        d = paired_bootstrap(y, y, (y + 1) % 4, metric=metric, n_resamples=500)
        assert (d.mean, d.low, d.high) == (1.0, 1.0, 1.0), metric
        assert d.distinguishable and "same value" in d.method
        # no resample on 0's side: (0 + 1) / (500 + 1), twice; never exactly 0
        assert d.p_value == pytest.approx(2 / 501), metric


def test_bootstrap_wa_interval_agrees_with_the_paired_normal_approximation() -> None:
    # For WA the difference is a mean of per-clip d_i in {-1, 0, 1}; its standard error is
    # sqrt((p10 + p01 - (p10 - p01)^2) / n) with p10 = share a right & b wrong, p01 the reverse.
    y, a, b = _systems(2000, 0.8, 0.7, seed=1)
    ra, rb = a == y, b == y
    p10, p01 = np.mean(ra & ~rb), np.mean(~ra & rb)
    se = math.sqrt((p10 + p01 - (p10 - p01) ** 2) / len(y))
    d = paired_bootstrap(y, a, b, metric="wa", n_resamples=4000, seed=3)
    assert d.mean == pytest.approx(p10 - p01, abs=1e-12)
    assert (d.high - d.low) / 2 == pytest.approx(1.959964 * se, rel=0.05)  # seeds 0-3 give 0.98-1.00
    assert d.low < d.mean < d.high


def test_bootstrap_p_value_agrees_with_the_paired_normal_approximation() -> None:
    # Close systems, so p is moderate: the WA difference's z = (p10 - p01) / se, p = 2 (1 - Phi(|z|)).
    y, a, b = _systems(2000, 0.72, 0.70, seed=4)
    ra, rb = a == y, b == y
    p10, p01 = np.mean(ra & ~rb), np.mean(~ra & rb)
    se = math.sqrt((p10 + p01 - (p10 - p01) ** 2) / len(y))
    want = 2 * st.norm.sf(abs(p10 - p01) / se)
    assert 0.01 < want < 0.9
    d = paired_bootstrap(y, a, b, metric="wa", n_resamples=4000, seed=3)
    assert d.p_value == pytest.approx(want, abs=0.03)


def test_bootstrap_is_deterministic_under_a_seed() -> None:
    y, a, b = _systems(300, 0.7, 0.6)
    one = paired_bootstrap(y, a, b, n_resamples=1000, seed=5)
    again = paired_bootstrap(y, a, b, n_resamples=1000, seed=5)
    other = paired_bootstrap(y, a, b, n_resamples=1000, seed=6)
    assert (one.low, one.high) == (again.low, again.high)
    assert (one.low, one.high) != (other.low, other.high)
    assert one.mean == other.mean  # the observed difference does not depend on the resamples


def test_bootstrap_pools_runs_as_the_mean_of_per_run_differences() -> None:
    # Run "r1": 4 clips, a right on all, b right on 2 -> WA difference 0.5. Run "r2": 2 clips, both right
    # on 1 -> 0. Mean over runs 0.25 (pooled clips would give 2/6 = 0.333).
    y = [0, 1, 0, 1, 0, 1]
    a = [0, 1, 0, 1, 0, 0]
    b = [0, 1, 1, 0, 0, 0]
    d = paired_bootstrap(y, a, b, metric="wa", runs=["r1"] * 4 + ["r2"] * 2, n_resamples=300)
    assert d.mean == pytest.approx(0.25) and d.matched == ("r1", "r2") and "2 runs" in d.method


def test_bootstrap_resamples_within_each_run() -> None:
    # Run (0, 1): a always right, b always wrong (difference 1 in every resample of its clips);
    # run (1, 1): a and b identical (difference 0). Resampling within runs keeps both runs whole,
    # so every resample gives (1 + 0)/2 = 0.5; resampling the pooled clips would not.
    y, _, _ = _systems(100, 0.7, 0.6)
    a = np.concatenate([y[:50], y[50:]])
    b = np.concatenate([(y[:50] + 1) % 4, y[50:]])
    runs = [(0, 1)] * 50 + [(1, 1)] * 50
    d = paired_bootstrap(y, a, b, metric="wa", runs=runs, n_resamples=500)
    assert (d.mean, d.low, d.high) == (0.5, 0.5, 0.5)


def test_bootstrap_percentile_method_and_a_callable_metric() -> None:
    y, a, b = _systems(300, 0.7, 0.6)

    def wa(t: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.mean(t == p, axis=-1)

    d = paired_bootstrap(y, a, b, metric=wa, method="percentile", n_resamples=1000)
    named = paired_bootstrap(y, a, b, metric="wa", method="percentile", n_resamples=1000)
    assert (d.mean, d.low, d.high) == (named.mean, named.low, named.high)
    assert "percentile" in d.method and "of wa" in d.method


def test_bootstrap_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([0, 1], [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="unknown clip metric"):
        paired_bootstrap([0, 1], [0, 1], [0, 1], metric="auc")
    with pytest.raises(ValueError, match="runs must label every clip"):
        paired_bootstrap([0, 1], [0, 1], [0, 1], runs=["r1"])


def test_bootstrap_gives_no_interval_for_a_run_of_one_clip() -> None:
    d = paired_bootstrap([0, 1, 0], [0, 1, 0], [1, 0, 1], runs=["r1", "r1", "r2"], n_resamples=100)
    assert d.mean == 1.0 and not d.has_interval and not d.distinguishable
    assert "run 'r2' has fewer than 2 clips" in d.method


def test_bootstrap_of_500_clips_takes_well_under_seconds() -> None:
    y, a, b = _systems(500, 0.7, 0.6)
    start = time.perf_counter()
    d = paired_bootstrap(y, a, b, metric="f1")  # 10,000 resamples, BCa
    assert time.perf_counter() - start < 10.0  # ~0.15-0.3 s alone on one core; generous for a shared machine
    assert "10000 resamples" in d.method and "BCa" in d.method and d.has_interval


def test_bootstrap_falls_back_to_the_percentile_interval_where_bca_is_undefined(monkeypatch) -> None:
    # SciPy answers NaN (with a warning) where BCa's jackknife acceleration is 0/0; make its first
    # answer NaN and check that the percentile interval of the same resamples is given instead.
    real = st.bootstrap

    def bca_undefined(*args, **kw):
        res = real(*args, **kw)
        if kw.get("method") == "BCa":
            res.confidence_interval = type(res.confidence_interval)(math.nan, math.nan)
        return res

    monkeypatch.setattr(st, "bootstrap", bca_undefined)
    y, a, b = _systems(300, 0.7, 0.6)
    d = paired_bootstrap(y, a, b, n_resamples=1000, seed=2)
    monkeypatch.setattr(st, "bootstrap", real)
    want = paired_bootstrap(y, a, b, n_resamples=1000, seed=2, method="percentile")
    assert (d.low, d.high) == (want.low, want.high) and d.has_interval
    assert "BCa undefined here: percentile interval" in d.method
