"""pldistill.results.stats against hand-computed cases (the arithmetic is in the comments)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import stats as st

from pldistill.results.stats import (
    CLIP_METRICS,
    Difference,
    Estimate,
    difference_verdict,
    format_difference,
    format_estimate,
    importance_support,
    mean_ci,
    paired_bootstrap,
    paired_difference,
    runs_estimate,
    stratified_mean_ci,
)
from pldistill.train.metrics import classification_metrics

# ---------------------------------------------------------------- mean_ci


def test_mean_ci_of_one_to_four_by_hand() -> None:
    # mean = 10/4 = 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; s^2 = 5/3, s = 1.290994;
    # sem = s/sqrt(4) = 0.645497; t(0.975, 3 df) = 3.182446 (tables); half width = 3.182446 * 0.645497 = 2.054260.
    est = mean_ci([1, 2, 3, 4])
    assert est.mean == 2.5 and est.n == 4
    assert est.half_width == pytest.approx(2.054260, abs=1e-6)
    assert (est.low, est.high) == pytest.approx((0.445740, 4.554260), abs=1e-6)
    assert est.has_interval and "3 df" in est.method


def test_mean_ci_other_confidence_by_hand() -> None:
    # 90%: t(0.95, 3 df) = 2.353363; half width = 2.353363 * 0.645497 = 1.519090.
    assert mean_ci([1, 2, 3, 4], confidence=0.90).half_width == pytest.approx(1.519090, abs=1e-6)


def test_mean_ci_n2_uses_one_degree_of_freedom() -> None:
    # [1, 3]: mean 2, s = sqrt(2), sem = sqrt(2)/sqrt(2) = 1; t(0.975, 1 df) = 12.706205.
    est = mean_ci([1.0, 3.0])
    assert est.mean == 2.0 and est.n == 2
    assert est.half_width == pytest.approx(12.706205, abs=1e-6)


def test_mean_ci_n1_has_no_interval() -> None:
    est = mean_ci([0.812])
    assert est.mean == 0.812 and est.n == 1
    assert math.isnan(est.low) and math.isnan(est.high) and math.isnan(est.half_width)
    assert not est.has_interval


def test_mean_ci_drops_nan_none_and_inf_and_counts_the_rest() -> None:
    est = mean_ci([1.0, float("nan"), 3.0, None, float("inf"), -float("inf")])
    assert est.n == 2 and est.mean == 2.0
    assert est.half_width == pytest.approx(12.706205, abs=1e-6)  # as for [1, 3]


def test_mean_ci_without_finite_values() -> None:
    est = mean_ci([None, float("nan")])
    assert est.n == 0 and math.isnan(est.mean) and not est.has_interval
    assert mean_ci([]).n == 0


def test_mean_ci_of_identical_runs_is_a_zero_width_interval() -> None:
    est = mean_ci([0.5, 0.5, 0.5])
    assert (est.mean, est.low, est.high, est.half_width) == (0.5, 0.5, 0.5, 0.0)


def test_mean_ci_matches_scipy_ttest_interval() -> None:
    x = np.random.default_rng(3).normal(0.7, 0.05, size=7)
    ci = st.ttest_1samp(x, 0.0).confidence_interval(0.95)
    est = mean_ci(x)
    assert (est.low, est.high) == pytest.approx((ci.low, ci.high), rel=1e-12)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_mean_ci_refuses_a_confidence_outside_0_1(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2], confidence=confidence)


# ---------------------------------------------------------------- stratified_mean_ci


def test_stratified_ci_by_hand_balanced() -> None:
    # Two folds, two seeds each: fold A (1, 3), fold B (10, 14). Means 2 and 12 -> mean 7.
    # s_A^2 = 2, s_B^2 = 8; var = (2/2 + 8/2) / 2^2 = 5/4; parts 0.25, 1.0;
    # df = 1.25^2 / (0.25^2/1 + 1^2/1) = 1.5625 / 1.0625 = 1.470588...
    est = stratified_mean_ci([1, 3, 10, 14], ["A", "A", "B", "B"])
    half = st.t.ppf(0.975, 1.5625 / 1.0625) * math.sqrt(1.25)
    assert est.mean == pytest.approx(7.0)
    assert est.half_width == pytest.approx(half)
    assert est.n == 4
    assert "stratified" in est.method and "1.5 df" in est.method


def test_stratified_ci_ignores_differences_between_folds() -> None:
    # The same seed spread inside every fold; the folds far apart. Shifting one fold moves the mean
    # but not the interval's width; the plain interval over all runs widens with the shift.
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, size=(3, 3))
    folds = [f for f in range(3) for _ in range(3)]
    near = (noise + np.array([[70.0], [70.0], [70.0]])).ravel()
    far = (noise + np.array([[80.0], [70.0], [65.0]])).ravel()
    a, b = stratified_mean_ci(near, folds), stratified_mean_ci(far, folds)
    assert a.half_width == pytest.approx(b.half_width)
    assert b.mean == pytest.approx(np.mean(far))
    assert mean_ci(far).half_width > 3 * b.half_width


def test_stratified_ci_with_equal_spreads_is_the_pooled_t_interval() -> None:
    # Equal within-fold variances and sizes: Satterthwaite's df is sum(n_h - 1) = 6 and the
    # variance is the pooled s^2 / N: the classic one-way ANOVA interval for the grand mean.
    values = [1.0, 2.0, 3.0, 11.0, 12.0, 13.0, 21.0, 22.0, 23.0]
    folds = [1, 1, 1, 2, 2, 2, 3, 3, 3]
    est = stratified_mean_ci(values, folds)
    assert est.half_width == pytest.approx(st.t.ppf(0.975, 6) * math.sqrt(1.0 / 9))
    assert est.mean == pytest.approx(12.0)


def test_stratified_ci_falls_back_where_a_fold_has_one_run() -> None:
    est = stratified_mean_ci([1.0, 2.0, None, 5.0, 7.0], [1, 1, 2, 2, 3])  # fold 2 keeps one finite run
    plain = mean_ci([1.0, 2.0, 5.0, 7.0])
    assert (est.mean, est.low, est.high, est.n) == pytest.approx((plain.mean, plain.low, plain.high, plain.n))
    assert "not stratified" in est.method


def test_stratified_ci_without_spread_inside_folds() -> None:
    est = stratified_mean_ci([1.0, 1.0, 5.0, 5.0], [1, 1, 2, 2])
    assert (est.low, est.mean, est.high) == (3.0, 3.0, 3.0)


def test_stratified_ci_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="strata"):
        stratified_mean_ci([1.0, 2.0], [1])


def test_runs_estimate_stratifies_by_fold_when_every_run_names_one() -> None:
    runs = [{"seed": s, "fold": f, "test_ua": 0.5 + 0.2 * f + 0.01 * s} for f in (1, 2) for s in (0, 1, 2)]
    est = runs_estimate(runs, "test_ua")
    assert "stratified" in est.method
    assert est.half_width == pytest.approx(stratified_mean_ci([r["test_ua"] for r in runs],
                                                              [r["fold"] for r in runs]).half_width)
    old = [{k: v for k, v in r.items() if k != "fold"} for r in runs]  # rows from before folds were recorded
    assert runs_estimate(old, "test_ua").method.startswith("Student t")


# ---------------------------------------------------------------- paired_difference

# a and b share runs (0, 1), (0, 2), (1, 1); a alone has (1, 2), b alone has (2, 1).
KEYS_A = [(0, 1), (0, 2), (1, 1), (1, 2)]
KEYS_B = [(0, 1), (0, 2), (1, 1), (2, 1)]
A = [0.80, 0.70, 0.90, 0.60]
B = [0.75, 0.60, 0.80, 0.50]


def test_paired_difference_by_hand() -> None:
    # matched differences 0.05, 0.10, 0.10: mean 0.25/3 = 0.083333; deviations -1/30, 1/60, 1/60 ->
    # sum of squares 1/900 + 2/3600 = 1/600, s^2 = 1/1200, s = 0.0288675, sem = s/sqrt(3) = 1/60 = 0.0166667;
    # t(0.975, 2 df) = 4.302653 -> half width 0.0717109 -> [0.011622, 0.155044].
    # t statistic = 0.083333 / 0.0166667 = 5; with 2 df the t CDF is 1/2 + t / (2 sqrt(2 + t^2)),
    # so p = 2 (1/2 - 5 / (2 sqrt 27)) = 1 - 5/sqrt(27) = 0.037750.
    d = paired_difference(A, B, KEYS_A, KEYS_B)
    assert d.n == 3 and d.unit == "runs" and not d.fallback
    assert d.mean == pytest.approx(0.083333, abs=1e-6)
    assert (d.low, d.high) == pytest.approx((0.011622, 0.155044), abs=1e-6)
    assert d.p_value == pytest.approx(1 - 5 / math.sqrt(27), abs=1e-9)
    assert d.distinguishable
    assert d.matched == ((0, 1), (0, 2), (1, 1))
    assert d.dropped_a == ((1, 2),) and d.dropped_b == ((2, 1),)


def test_paired_difference_is_scipys_ttest_rel_on_the_matched_runs() -> None:
    d = paired_difference(A, B, KEYS_A, KEYS_B)
    ref = st.ttest_rel(A[:3], B[:3])
    ci = ref.confidence_interval(0.95)
    assert (d.low, d.high, d.p_value) == pytest.approx((ci.low, ci.high, ref.pvalue), rel=1e-12)


def test_paired_difference_matches_keys_not_positions() -> None:
    shuffled = [3, 0, 2, 1]
    d = paired_difference([A[i] for i in shuffled], B, [KEYS_A[i] for i in shuffled], KEYS_B)
    assert d.mean == pytest.approx(0.083333, abs=1e-6) and d.n == 3


def test_paired_difference_drops_pairs_with_a_missing_value() -> None:
    d = paired_difference([0.8, float("nan"), 0.9, 0.7], [0.7, 0.6, None, 0.6], ["s0", "s1", "s2", "s3"],
                          ["s0", "s1", "s2", "s3"], min_pairs=2)
    # kept s0 (0.1) and s3 (0.1); s1 has NaN in a, s2 None in b.
    assert d.matched == ("s0", "s3") and d.dropped_a == ("s1", "s2") and d.dropped_b == ("s1", "s2")
    assert d.mean == pytest.approx(0.1)


def test_paired_difference_with_two_pairs_falls_back() -> None:
    d = paired_difference([0.8, 0.7], [0.7, 0.5], ["x", "y"], ["x", "y"])
    assert d.fallback and d.n == 2 and d.mean == pytest.approx(0.15)
    assert not d.has_interval and math.isnan(d.p_value) and not d.distinguishable
    assert "fewer than 3" in d.method


def test_paired_difference_with_no_common_run() -> None:
    d = paired_difference([0.8], [0.7], ["x"], ["y"])
    assert d.n == 0 and math.isnan(d.mean) and d.fallback and d.dropped_a == ("x",) and d.dropped_b == ("y",)


def test_paired_difference_of_constant_differences() -> None:
    same = paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], [1, 2, 3], [1, 2, 3])
    assert (same.mean, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0) and not same.distinguishable
    up = paired_difference([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], [1, 2, 3], [1, 2, 3])
    assert (up.mean, up.low, up.high, up.p_value) == (1.0, 1.0, 1.0, 0.0) and up.distinguishable


def test_paired_difference_refuses_a_run_given_twice() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        paired_difference([0.1, 0.2], [0.1], [(0, 1), (0, 1)], [(0, 1)])
    with pytest.raises(ValueError, match="2 values but 1 keys"):
        paired_difference([0.1, 0.2], [0.1], [(0, 1)], [(0, 1)])


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
    assert (d.mean, d.low, d.high) == (0.0, 0.0, 0.0) and not d.distinguishable
    assert difference_verdict(d) == "not distinguishable from sft"


def test_bootstrap_of_always_right_against_always_wrong_is_exactly_one() -> None:
    y, _, _ = _systems(200, 0.7, 0.6)
    for metric in ("ua", "wa", "f1"):
        d = paired_bootstrap(y, y, (y + 1) % 4, metric=metric, n_resamples=500)
        assert (d.mean, d.low, d.high) == (1.0, 1.0, 1.0), metric
        assert d.distinguishable and "same value" in d.method


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


# ---------------------------------------------------------------- wording


def test_importance_support() -> None:
    assert importance_support(10) is None and importance_support(250) is None
    assert importance_support(9) == "withheld: they would rest on 9 completed trials, fewer than 10"
    assert importance_support(1) == "withheld: they would rest on 1 completed trial, fewer than 10"
    assert importance_support(4, minimum=5) is not None and importance_support(5, minimum=5) is None
    with pytest.raises(ValueError):
        importance_support(-1)


def test_format_estimate() -> None:
    assert format_estimate(Estimate(0.8123, 0.7913, 0.8333, 9)) == "0.812 ± 0.021 (n=9)"
    assert format_estimate(Estimate(0.8123, 0.7913, 0.8333, 9), digits=2, scale=100) == "81.23 ± 2.10 (n=9)"
    assert format_estimate(mean_ci([0.812])) == "0.812 (n=1, no CI)"
    assert format_estimate(mean_ci([])) == "– (n=0)"
    assert format_estimate(mean_ci([1, 2, 3, 4]), digits=2) == "2.50 ± 2.05 (n=4)"


def test_format_difference_and_verdict() -> None:
    d = Difference(0.034, 0.010, 0.058, 9)
    assert format_difference(d) == "+0.034 [0.010, 0.058] (n=9)"
    assert difference_verdict(d) == "above sft (95% CI excludes 0)"
    down = Difference(-0.05, -0.09, -0.01, 5)
    assert format_difference(down, digits=1, scale=100) == "-5.0 [-9.0, -1.0] (n=5)"
    assert difference_verdict(down, "SFT") == "below SFT (95% CI excludes 0)"
    both = Difference(0.01, -0.02, 0.04, 9)
    assert difference_verdict(both, "SFT") == "not distinguishable from SFT"
    few = paired_difference([0.8, 0.7], [0.7, 0.5], ["x", "y"], ["x", "y"])
    assert format_difference(few) == "+0.150 (n=2, no CI)"
    assert difference_verdict(few).startswith("cannot be compared with sft: 2 matched runs, fewer than 3")
    clips = Difference(0.02, 0.01, 0.03, 1000, unit="clips")
    assert format_difference(clips) == "+0.020 [0.010, 0.030] (n=1000 clips)"


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
