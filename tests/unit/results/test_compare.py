"""pldistill.results.compare: per-group estimates and paired differences, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from pldistill.errors import InputError
from pldistill.results.compare import compare_groups, comparison_lines

# sft has runs (seed, fold) (0,1) (0,2) (1,1); pl_distill also has (1,2); ldist one run.
RUNS = [
    ("sft", 0, 1, 0.60), ("sft", 0, 2, 0.62), ("sft", 1, 1, 0.58),
    ("pl_distill", 0, 1, 0.65), ("pl_distill", 0, 2, 0.72), ("pl_distill", 1, 1, 0.68), ("pl_distill", 1, 2, 0.70),
    ("ldist", 0, 1, 0.61),
]
ROWS = [{"method": m, "seed": s, "fold": f, "test_ua": v} for m, s, f, v in RUNS]


def test_estimates_and_differences_by_hand() -> None:
    # sft: mean 0.60, deviations 0, .02, -.02 -> s^2 = 0.0008/2, s = 0.02, sem = 0.02/sqrt 3 = 0.011547,
    #   half width 4.302653 * 0.011547 = 0.049683.
    #   (sft's fold 2 has one run, so its interval is the plain one over all runs.)
    # pl_distill, stratified by fold (two seeds in each): fold 1 (.65, .68) mean .665, s^2 .00045;
    #   fold 2 (.72, .70) mean .71, s^2 .0002 -> mean .6875; var = (.00045/2 + .0002/2) / 2^2 = .00008125,
    #   parts .00005625 and .000025 -> Satterthwaite df = .00008125^2 / (.00005625^2 + .000025^2) = 1.742268,
    #   half width t(.975, 1.742268) * sqrt(.00008125) = 0.044835 (the plain interval would be 0.047516).
    # pl_distill - sft over (0,1) (0,2) (1,1): 0.05, 0.10, 0.10 -> 0.083333 [0.011622, 0.155044] (as in test_stats).
    c = compare_groups(ROWS, "test_ua", reference="sft")
    assert [g.group for g in c.groups] == ["sft", "pl_distill", "ldist"]
    sft, pl, ld = c["sft"], c["pl_distill"], c["ldist"]
    assert sft.difference is None and sft.estimate.n == 3
    assert sft.estimate.mean == pytest.approx(0.60) and sft.estimate.half_width == pytest.approx(0.049683, abs=1e-6)
    assert pl.estimate.n == 4 and pl.estimate.mean == pytest.approx(0.6875)
    assert pl.estimate.half_width == pytest.approx(0.044835, abs=1e-6)
    d = pl.difference
    assert d is not None and d.n == 3 and d.mean == pytest.approx(0.083333, abs=1e-6)
    assert (d.low, d.high) == pytest.approx((0.011622, 0.155044), abs=1e-6) and d.distinguishable
    assert d.dropped_a == ((1, 2),) and d.dropped_b == ()
    # ldist shares one run with sft: no interval, and no clips to bootstrap.
    assert ld.difference is not None and ld.difference.fallback and not ld.difference.has_interval
    assert ld.estimate.n == 1 and ld.difference.mean == pytest.approx(0.01)


def test_a_pyarrow_table_gives_the_same_answer() -> None:
    assert compare_groups(pa.Table.from_pylist(ROWS), "test_ua", reference="sft") == \
        compare_groups(ROWS, "test_ua", reference="sft")


def test_without_a_reference_there_are_no_differences_and_order_is_respected() -> None:
    c = compare_groups(ROWS, "test_ua", order=["ldist", "sft"])
    assert [g.group for g in c.groups] == ["ldist", "sft", "pl_distill"]
    assert all(g.difference is None for g in c.groups)


def test_unknown_reference_is_an_input_error_listing_the_groups() -> None:
    with pytest.raises(InputError, match=r"reference: no method named 'kd'.*present: sft, pl_distill, ldist"):
        compare_groups(ROWS, "test_ua", reference="kd")


def test_a_run_given_twice_in_a_group_raises() -> None:
    with pytest.raises(ValueError, match=r"method 'sft' has two rows for \(seed, fold\) = \(0, 1\)"):
        compare_groups([*ROWS, {"method": "sft", "seed": 0, "fold": 1, "test_ua": 0.5}], "test_ua")


def test_missing_metric_column_raises_and_rows_without_group_are_skipped() -> None:
    with pytest.raises(ValueError, match="columns 'method' and 'test_wa'"):
        compare_groups(ROWS, "test_wa")
    c = compare_groups([*ROWS, {"method": None, "seed": 0, "fold": 1, "test_ua": 0.9}], "test_ua")
    assert len(c.groups) == 3


def test_rows_without_a_seed_column_are_one_seed() -> None:
    rows = [{"method": m, "fold": f, "test_ua": v} for m, s, f, v in RUNS if s == 0]
    d = compare_groups(rows, "test_ua", reference="sft", min_pairs=2)["pl_distill"].difference
    assert d is not None and d.matched == ((None, 1), (None, 2))
    assert d.mean == pytest.approx(0.075)  # (0.05 + 0.10) / 2


def _clips(rng: np.random.Generator, n: int = 40) -> np.ndarray:
    return rng.integers(0, 4, n)


def test_fewer_than_three_runs_falls_back_to_the_clip_bootstrap() -> None:
    # Two runs; in each, "a" is right on every clip and "sft" wrong on every clip: UA difference 1 in
    # every resample, so the bootstrap interval is exactly [1, 1].
    rng = np.random.default_rng(0)
    rows, clips = [], {}
    for seed in (0, 1):
        y = _clips(rng)
        clips[("a", (seed, 1))] = (y, y)
        clips[("sft", (seed, 1))] = (y, (y + 1) % 4)
        rows += [{"method": "a", "seed": seed, "fold": 1, "test_ua": 1.0},
                 {"method": "sft", "seed": seed, "fold": 1, "test_ua": 0.0}]
    d = compare_groups(rows, "test_ua", reference="sft", clips=clips, n_resamples=300)["a"].difference
    assert d is not None and d.unit == "clips" and d.n == 80 and d.fallback
    assert (d.mean, d.low, d.high) == (1.0, 1.0, 1.0) and d.matched == ((0, 1), (1, 1))
    assert "bootstrap of test_ua" in d.method and "2 runs" in d.method
    line = comparison_lines(compare_groups(rows, "test_ua", reference="sft", clips=clips, n_resamples=300))[0]
    assert line == ("a", "1.000 ± 0.000 (n=2)", "+1.000 [1.000, 1.000] (n=80 clips)",
                    "above sft (95% CI excludes 0)")


def test_bootstrap_fallback_needs_every_matched_runs_clips() -> None:
    rng = np.random.default_rng(1)
    y = _clips(rng)
    rows = [{"method": g, "seed": s, "fold": 1, "test_ua": v} for g, v in (("a", 0.7), ("sft", 0.6)) for s in (0, 1)]
    clips = {("a", (0, 1)): (y, y), ("sft", (0, 1)): (y, y), ("a", (1, 1)): (y, y)}
    d = compare_groups(rows, "test_ua", reference="sft", clips=clips)["a"].difference
    assert d is not None and not d.has_interval and d.unit == "runs"
    assert d.method.endswith("no bootstrap: no clip predictions for run (1, 1)")


def test_bootstrap_fallback_refuses_runs_scored_on_different_clips() -> None:
    rng = np.random.default_rng(2)
    y = _clips(rng)
    rows = [{"method": g, "seed": 0, "fold": 1, "test_ua": 0.5} for g in ("a", "sft")]
    clips = {("a", (0, 1)): (y, y), ("sft", (0, 1)): ((y + 1) % 4, y)}
    with pytest.raises(ValueError, match=r"run \(0, 1\): 'a' and 'sft' were not scored on the same clips"):
        compare_groups(rows, "test_ua", reference="sft", clips=clips)


def test_comparison_lines() -> None:
    lines = comparison_lines(compare_groups(ROWS, "test_ua", reference="sft"), digits=2, scale=100)
    assert lines[0] == ("sft", "60.00 ± 4.97 (n=3)", "", "reference")
    assert lines[1] == ("pl_distill", "68.75 ± 4.48 (n=4)", "+8.33 [1.16, 15.50] (n=3)", "above sft (95% CI excludes 0)")
    assert lines[2][1:3] == ("61.00 (n=1, no CI)", "+1.00 (n=1, no CI)")
    assert lines[2][3].startswith("cannot be compared with sft: 1 matched run, fewer than 3")
    assert comparison_lines(compare_groups(ROWS, "test_ua"))[0][2:] == ("", "")
    assert not math.isnan(compare_groups(ROWS, "test_ua")["ldist"].estimate.mean)
