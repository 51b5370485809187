"""pldistill.results.stats against hand-computed cases (the arithmetic is in the comments)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as st

from pldistill.results.stats import (
    Difference,
    Estimate,
    difference_verdict,
    format_difference,
    format_estimate,
    format_p,
    holm,
    importance_support,
    interval_legend,
    mean_ci,
    paired_difference,
    runs_estimate,
    stratified_mean_ci,
)
from pldistill.results.wording import MARKERS

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


def test_stratified_ci_gives_a_fold_with_one_run_the_pooled_variance_of_the_others() -> None:
    # Folds A (1, 3), B (10, 14), C (20, None): C keeps its one finite run. Means 2, 12, 20 -> 34/3.
    # s_A^2 = 2, s_B^2 = 8, pooled s_p^2 = (1*2 + 1*8) / (1 + 1) = 5 for C's single run.
    # var = (2/2 + 8/2 + 5/1) / 3^2 = 10/9. As parts of independent estimates: A (1/2 + 1*1/2)/9 = 1/9
    # times 2, B 1/9 times 8 -> df = (10/9)^2 / ((2/9)^2 + (8/9)^2) = 100/68 = 1.470588.
    est = stratified_mean_ci([1, 3, 10, 14, 20, None], ["A", "A", "B", "B", "C", "C"])
    assert est.mean == pytest.approx(34 / 3) and est.n == 5
    assert est.half_width == pytest.approx(st.t.ppf(0.975, 100 / 68) * math.sqrt(10 / 9))
    assert est.kind == "stratified-pooled" and "1 fold with one run given the pooled within-fold variance" in est.method
    assert format_estimate(est, digits=1, marker=True) == "11.3 ± 6.5 (n=5, S1)"


@pytest.mark.parametrize("noise", ["normal", "skewed"])
def test_the_pooled_rule_covers_the_true_mean_in_simulation(noise: str) -> None:
    # 1,000 studies of 3 + 3 + 1 seeds over folds 10 points apart, seed spread 3 points (the shipped
    # grids' order), normal or skewed (centred gamma, shape 2). The 95% intervals must cover the mean of
    # the true fold means at least 93% of the time (at 95% the count's sd is 0.7 points; seen 96-97%).
    rng = np.random.default_rng(11)
    truth = np.array([0.60, 0.70, 0.80])
    folds = [0, 0, 0, 1, 1, 1, 2]
    hits = 0
    for _ in range(1000):
        e = rng.normal(0, 0.03, 7) if noise == "normal" else (rng.gamma(2.0, 0.03 / math.sqrt(2), 7) - 0.03 * math.sqrt(2))
        est = stratified_mean_ci(truth[folds] + e, folds)
        hits += est.low <= truth.mean() <= est.high
    assert hits >= 930, hits


def test_the_point_estimate_is_the_mean_of_fold_means_whatever_the_run_counts() -> None:
    # The 3 + 3 + 1 runs: the run-weighted mean (0.690 there) is another quantity.
    values = [0.70, 0.72, 0.74, 0.60, 0.62, 0.64, 0.82]
    folds = [1, 1, 1, 2, 2, 2, 3]
    est = stratified_mean_ci(values, folds)
    assert est.mean == pytest.approx((0.72 + 0.62 + 0.82) / 3) and est.mean != pytest.approx(np.mean(values))
    assert est.has_interval
    # one run more in fold 3 moves the estimate by that fold's mean only, not by its weight
    more = stratified_mean_ci([*values, 0.80], [*folds, 3])
    assert more.mean == pytest.approx((0.72 + 0.62 + 0.81) / 3) and more.kind == "stratified"


def test_one_run_per_fold_is_the_plain_interval_over_folds_and_says_so() -> None:
    est = stratified_mean_ci([0.6, 0.7, 0.8], [1, 2, 3])
    plain = mean_ci([0.6, 0.7, 0.8])
    assert (est.mean, est.low, est.high, est.n) == pytest.approx((plain.mean, plain.low, plain.high, 3))
    assert est.kind == "plain" and "3 folds of one run each" in est.method and "counts as noise" in est.method
    assert format_estimate(est, marker=True) == "0.700 ± 0.248 (n=3, P)"


def test_a_fold_without_a_finite_run_refuses_the_estimate() -> None:
    est = stratified_mean_ci([0.6, 0.7, None, float("nan"), 0.5, 0.55], [1, 1, 2, 2, 3, 3])
    assert math.isnan(est.mean) and not est.has_interval and est.n == 4
    assert est.method == "no estimate: fold 2 has no finite run"
    assert format_estimate(est) == "– (no estimate: fold 2 has no finite run)"


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
    d = paired_difference(A[:3], B[:3], KEYS_A[:3], KEYS_B[:3])
    assert d.n == 3 and d.unit == "runs" and not d.fallback and d.kind == "plain"
    assert d.mean == pytest.approx(0.083333, abs=1e-6)
    assert (d.low, d.high) == pytest.approx((0.011622, 0.155044), abs=1e-6)
    assert d.p_value == pytest.approx(1 - 5 / math.sqrt(27), abs=1e-9)
    assert d.distinguishable and d.method == "paired t over 3 matched runs, 2 df"
    assert d.matched == ((0, 1), (0, 2), (1, 1)) and d.dropped_a == () and d.dropped_b == ()


def test_paired_difference_is_scipys_ttest_rel_on_matched_runs() -> None:
    d = paired_difference(A, B, KEYS_A, KEYS_A)
    ref = st.ttest_rel(A, B)
    ci = ref.confidence_interval(0.95)
    assert (d.low, d.high, d.p_value) == pytest.approx((ci.low, ci.high, ref.pvalue), rel=1e-12)


def test_runs_not_matched_one_to_one_are_compared_unpaired_as_scipys_welch_test() -> None:
    # mean(a) - mean(b) = 0.75 - 0.6625 = 0.0875: the tables' means, not the matched runs' 0.083.
    # s_a^2 = 0.05/3, s_b^2 = 0.056875/3; var = 0.0041667 + 0.0047396 = 0.0089062.
    d = paired_difference(A, B, KEYS_A, KEYS_B)
    ref = st.ttest_ind(A, B, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert d.mean == pytest.approx(0.0875) and ((d.high - d.low) / 2 / st.t.ppf(0.975, ref.df)) ** 2 == \
        pytest.approx(0.05 / 12 + 0.056875 / 12)
    assert (d.low, d.high, d.p_value) == pytest.approx((ci.low, ci.high, ref.pvalue), rel=1e-12)
    assert "unpaired" in d.method and d.n == 4
    assert d.matched == ((0, 1), (0, 2), (1, 1)) and d.dropped_a == ((1, 2),) and d.dropped_b == ((2, 1),)


def test_paired_difference_stratified_by_fold_by_hand() -> None:
    # keys (seed, fold). Differences fold 1: 0.02, 0.04, 0.06 (mean 0.04, s^2 0.0004); fold 2: 0.10, 0.14
    # (mean 0.12, s^2 0.0008). Mean over folds 0.08; var = (0.0004/3 + 0.0008/2) / 4 = 0.00013333;
    # parts 1/30000 (2 df) and 3/30000 (1 df), var 4/30000 -> df = 16 / (1/2 + 9) = 32/19 = 1.684211.
    keys = [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]
    b = [0.5, 0.6, 0.7, 0.4, 0.5]
    a = [x + dx for x, dx in zip(b, [0.02, 0.04, 0.06, 0.10, 0.14])]
    d = paired_difference(a, b, keys, keys, fold_of=lambda k: k[1])
    assert d.mean == pytest.approx(0.08) and d.kind == "stratified"
    var = 0.0004 / 3 / 4 + 0.0008 / 2 / 4
    df = var**2 / ((0.0004 / 12) ** 2 / 2 + (0.0008 / 8) ** 2 / 1)
    assert (var, df) == pytest.approx((4 / 30000, 32 / 19))
    assert d.high - d.mean == pytest.approx(st.t.ppf(0.975, 32 / 19) * math.sqrt(var))
    assert d.p_value == pytest.approx(2 * st.t.sf(0.08 / math.sqrt(var), 32 / 19))
    assert "stratified by fold, 1.7 df" in d.method
    # the same as each side's stratified estimate, subtracted
    folds = [k[1] for k in keys]
    assert d.mean == pytest.approx(stratified_mean_ci(a, folds).mean - stratified_mean_ci(b, folds).mean)


def test_the_difference_has_the_sign_of_the_tables_means_with_uneven_runs() -> None:
    # a has 3 seeds in both folds, the reference 3 in fold 1 and 1 in fold 2. Over the 4 matched runs
    # a is ahead by 0.05 everywhere; but a's unmatched fold-2 seeds are low: the tables' means are
    # a = (0.60 + 0.4333) / 2 = 0.51667 and ref = (0.55 + 0.65) / 2 = 0.60, a below by 0.08333.
    # Unpaired within fold: a's fold 2 s^2 = 0.10667/2 = 0.053333, every other s^2 0 (the reference's
    # single fold-2 run pools fold 1's 0) -> var = 0.053333/3/4 = 0.0044444, se 0.066667, df 2 ->
    # half width 4.302653 * 0.066667 = 0.286844.
    keys_a = [(s, f) for f in (1, 2) for s in (0, 1, 2)]
    a = [0.60, 0.60, 0.60, 0.70, 0.30, 0.30]
    keys_r = [(0, 1), (1, 1), (2, 1), (0, 2)]
    r = [0.55, 0.55, 0.55, 0.65]
    d = paired_difference(a, r, keys_a, keys_r, fold_of=lambda k: k[1])
    table_a = stratified_mean_ci(a, [k[1] for k in keys_a]).mean
    table_r = stratified_mean_ci(r, [k[1] for k in keys_r]).mean
    assert d.mean == pytest.approx(table_a - table_r) == pytest.approx(-0.083333, abs=1e-6)
    assert (d.high - d.low) / 2 == pytest.approx(0.286844, abs=1e-6) and d.kind == "stratified-pooled"
    assert d.dropped_a == ((1, 2), (2, 2))


def test_the_unpaired_difference_covers_the_true_difference_in_simulation() -> None:
    # 1,000 comparisons of a row with 3 seeds in each of 3 folds against a reference with 3, 3 and 1
    # (not one to one, so unpaired within fold, the reference's one-run fold pooled); true difference
    # 2 points, seed spread 3 (a) and 2 (reference, skewed). Coverage at least 93% (seen ~97%).
    rng = np.random.default_rng(12)
    truth = {1: 0.5, 2: 0.6, 3: 0.7}
    keys_a = [(s, f) for f in (1, 2, 3) for s in range(3)]
    keys_b = [(s, f) for f in (1, 2, 3) for s in range(3 if f < 3 else 1)]
    hits = 0
    for _ in range(1000):
        a = [truth[f] + 0.02 + rng.normal(0, 0.03) for _, f in keys_a]
        b = [truth[f] + rng.gamma(2.0, 0.02 / math.sqrt(2)) - 0.02 * math.sqrt(2) for _, f in keys_b]
        d = paired_difference(a, b, keys_a, keys_b, fold_of=lambda k: k[1])
        hits += d.low <= 0.02 <= d.high
    assert hits >= 930, hits


def test_a_fold_on_one_side_only_or_without_a_finite_run_is_no_comparison() -> None:
    one_side = paired_difference([0.6, 0.7, 0.8], [0.5, 0.6, 0.7], [(0, 1), (1, 1), (0, 2)],
                                 [(0, 1), (1, 1), (2, 1)], fold_of=lambda k: k[1])
    assert math.isnan(one_side.mean) and one_side.method == "no comparison: fold 2 has runs on one side only"
    empty = paired_difference([0.6, 0.7, None, None], [0.5, 0.6, 0.5, 0.4], [(0, 1), (1, 1), (0, 2), (1, 2)],
                              [(0, 1), (1, 1), (0, 2), (1, 2)], fold_of=lambda k: k[1])
    assert math.isnan(empty.mean) and empty.method == "no estimate: fold 2 has no finite run in a"
    assert not empty.fallback and difference_verdict(empty).startswith("cannot be compared with sft: no estimate")


def test_paired_difference_matches_keys_not_positions() -> None:
    shuffled = [2, 0, 1]
    d = paired_difference([A[i] for i in shuffled], B[:3], [KEYS_A[i] for i in shuffled], KEYS_B[:3])
    assert d.mean == pytest.approx(0.083333, abs=1e-6) and d.n == 3 and "paired" in d.method


def test_paired_difference_leaves_out_missing_values() -> None:
    d = paired_difference([0.8, float("nan"), 0.9, 0.7], [0.7, 0.6, None, 0.6], ["s0", "s1", "s2", "s3"],
                          ["s0", "s1", "s2", "s3"], min_pairs=2)
    # a keeps s0, s2, s3 (mean 0.8), b s0, s1, s3 (mean 0.63333): not one to one, so unpaired.
    assert d.matched == ("s0", "s3") and d.dropped_a == ("s1", "s2") and d.dropped_b == ("s1", "s2")
    assert d.mean == pytest.approx(0.8 - 1.9 / 3) and "unpaired" in d.method


def test_paired_difference_with_two_pairs_falls_back() -> None:
    d = paired_difference([0.8, 0.7], [0.7, 0.5], ["x", "y"], ["x", "y"])
    assert d.fallback and d.n == 2 and d.mean == pytest.approx(0.15)
    assert not d.has_interval and math.isnan(d.p_value) and not d.distinguishable
    assert "fewer than 3" in d.method


def test_paired_difference_with_no_common_run() -> None:
    d = paired_difference([0.8], [0.7], ["x"], ["y"])
    assert d.n == 1 and d.mean == pytest.approx(0.1) and d.fallback and d.matched == ()
    assert d.dropped_a == ("x",) and d.dropped_b == ("y",) and "1 runs on the smaller side" in d.method
    assert math.isnan(paired_difference([None], [0.7], ["x"], ["x"]).mean)


def test_zero_spread_differences_over_fewer_than_five_runs_get_no_verdict() -> None:
    same = paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], [1, 2, 3], [1, 2, 3])
    assert same.mean == 0.0 and not same.has_interval and not same.fallback
    up = paired_difference([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0], [1, 2, 3, 4], [1, 2, 3, 4])
    assert up.mean == 1.0 and not up.has_interval and not up.distinguishable
    assert difference_verdict(up) == ("too few runs to tell (all 4 differences equal (zero spread), fewer than 5 "
                                      "runs)")
    five = paired_difference([1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 1.0, 2.0, 3.0, 4.0], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert (five.mean, five.low, five.high, five.p_value) == (1.0, 1.0, 1.0, 0.0) and five.distinguishable
    zero = paired_difference([0.5] * 5, [0.5] * 5, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert (zero.low, zero.high, zero.p_value) == (0.0, 0.0, 1.0) and not zero.distinguishable


def test_holm_by_hand() -> None:
    # p = 0.01, 0.04, 0.03, 0.005 (and one without a p-value): m = 4. Sorted 0.005, 0.01, 0.03, 0.04
    # times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04; running maximum 0.02, 0.03, 0.06, 0.06.
    got = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(got[4])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 2 * 0.5 = 1; capped at 1, never above
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_paired_difference_refuses_a_run_given_twice() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        paired_difference([0.1, 0.2], [0.1], [(0, 1), (0, 1)], [(0, 1)])
    with pytest.raises(ValueError, match="2 values but 1 keys"):
        paired_difference([0.1, 0.2], [0.1], [(0, 1)], [(0, 1)])


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


def test_verdicts_follow_the_holm_adjusted_p_value() -> None:
    d = Difference(0.03, 0.005, 0.055, 9, p_value=0.02, kind="stratified")
    assert difference_verdict(d, "SFT") == "above SFT (95% CI excludes 0)"
    kept = dataclasses.replace(d, p_adjusted=0.04, family=2)
    assert difference_verdict(kept, "SFT") == "above SFT (95% CI excludes 0, Holm-adjusted p < 0.05)"
    lost = dataclasses.replace(d, p_adjusted=0.06, family=3)
    assert not lost.distinguishable
    assert difference_verdict(lost, "SFT") == "not distinguishable from SFT after Holm's adjustment over 3 comparisons"
    assert format_p(lost) == "p=0.020, Holm p=0.060" and format_p(d) == "p=0.020"
    assert format_p(dataclasses.replace(d, p_value=0.0004)) == "p < 0.001"
    assert format_difference(d, marker=True) == "+0.030 [0.005, 0.055] (n=9, S)"


def test_a_clip_bootstrap_verdict_says_it_holds_on_these_clips_only() -> None:
    clips = Difference(0.02, 0.01, 0.03, 1000, unit="clips", kind="bootstrap", p_value=0.001)
    assert difference_verdict(clips) == ("above sft on these test clips only (95% clip-bootstrap CI excludes 0; "
                                         "seeds not replicated)")
    assert format_difference(clips, marker=True) == "+0.020 [0.010, 0.030] (n=1000 clips, B)"
    flat = dataclasses.replace(clips, low=-0.01)
    assert difference_verdict(flat) == ("not distinguishable from sft on these test clips only (clip bootstrap; "
                                        "seeds not replicated)")


def test_interval_legend_lists_the_markers_used() -> None:
    assert interval_legend({"plain", "stratified", ""}) == [
        f"S: {MARKERS['stratified'][1]}", f"P: {MARKERS['plain'][1]}"]
    assert "seeds not replicated" in interval_legend(["bootstrap"])[0] and interval_legend([]) == []
