"""pldistill.results.compare: per-group estimates and paired differences, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from pldistill.errors import InputError
from pldistill.results.compare import adjust_holm, compare_groups, comparison_lines

# sft has runs (seed, fold) (0,1) (0,2) (1,1); pl_distill also has (1,2); ldist one run.
RUNS = [
    ("sft", 0, 1, 0.60), ("sft", 0, 2, 0.62), ("sft", 1, 1, 0.58),
    ("pl_distill", 0, 1, 0.65), ("pl_distill", 0, 2, 0.72), ("pl_distill", 1, 1, 0.68), ("pl_distill", 1, 2, 0.70),
    ("ldist", 0, 1, 0.61),
]
ROWS = [{"method": m, "seed": s, "fold": f, "test_ua": v} for m, s, f, v in RUNS]


def test_estimates_and_differences_by_hand() -> None:
    # sft, stratified by fold: fold 1 (.60, .58) mean .59, s^2 .0002; fold 2 (.62) one run, given the pooled
    #   within-fold variance .0002 (fold 1's, 1 df) -> mean (.59 + .62)/2 = .605; var = (.0002/2 + .0002/1)/2^2
    #   = .000075 (one part, 1 df) -> half width t(.975, 1) * sqrt(.000075) = 12.706205 * .0086603 = 0.110039.
    # pl_distill (two seeds in each fold): fold 1 (.65, .68) mean .665, s^2 .00045;
    #   fold 2 (.72, .70) mean .71, s^2 .0002 -> mean .6875; var = (.00045/2 + .0002/2) / 2^2 = .00008125,
    #   parts .00005625 and .000025 -> Satterthwaite df = .00008125^2 / (.00005625^2 + .000025^2) = 1.742268,
    #   half width t(.975, 1.742268) * sqrt(.00008125) = 0.044835 (the plain interval would be 0.047516).
    # pl_distill - sft: pl_distill's (1, 2) has no partner, so unpaired within fold: .6875 - .605 = .0825 (the
    #   tables' means subtracted); var = .00005625 + .000025 + .000075 = .00015625 (se .0125),
    #   df = .00015625^2 / (.00005625^2 + .000025^2 + .000075^2) = 2.593361 -> half width 0.043553.
    c = compare_groups(ROWS, "test_ua", reference="sft")
    assert [g.group for g in c.groups] == ["sft", "pl_distill", "ldist"]
    sft, pl, ld = c["sft"], c["pl_distill"], c["ldist"]
    assert sft.difference is None and sft.estimate.n == 3 and sft.estimate.kind == "stratified-pooled"
    assert sft.estimate.mean == pytest.approx(0.605) and sft.estimate.half_width == pytest.approx(0.110039, abs=1e-6)
    assert pl.estimate.n == 4 and pl.estimate.mean == pytest.approx(0.6875)
    assert pl.estimate.half_width == pytest.approx(0.044835, abs=1e-6)
    d = pl.difference
    assert d is not None and d.n == 3 and d.mean == pytest.approx(0.0825)
    assert d.mean == pytest.approx(pl.estimate.mean - sft.estimate.mean)
    assert (d.high - d.low) / 2 == pytest.approx(0.043553, abs=1e-6) and d.distinguishable
    assert "unpaired" in d.method and "2.6 df" in d.method
    assert d.dropped_a == ((1, 2),) and d.dropped_b == ()
    # ldist ran fold 1 only: no comparison with sft's two folds (a mean over fewer folds is another quantity).
    assert ld.difference is not None and not ld.difference.fallback and math.isnan(ld.difference.mean)
    assert ld.estimate.n == 1 and ld.difference.method == "no comparison: fold 2 has runs on one side only"


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
                    "above sft on these test clips only (95% clip-bootstrap CI excludes 0; seeds not replicated)")


def test_bootstrap_fallback_needs_every_matched_runs_clips() -> None:
    rng = np.random.default_rng(1)
    y = _clips(rng)
    rows = [{"method": g, "seed": s, "fold": 1, "test_ua": v} for g, v in (("a", 0.7), ("sft", 0.6)) for s in (0, 1)]
    clips = {("a", (0, 1)): (y, y), ("sft", (0, 1)): (y, y), ("a", (1, 1)): (y, y)}
    d = compare_groups(rows, "test_ua", reference="sft", clips=clips)["a"].difference
    assert d is not None and not d.has_interval and d.unit == "runs"
    assert d.method.endswith("no bootstrap: no clip predictions for run (1, 1)")


def test_runs_scored_on_different_clips_skip_that_comparison_with_the_reason() -> None:
    rng = np.random.default_rng(2)
    y = _clips(rng)
    rows = [{"method": g, "seed": 0, "fold": 1, "test_ua": 0.5} for g in ("a", "b", "sft")]
    clips = {("a", (0, 1)): (y, y), ("sft", (0, 1)): ((y + 1) % 4, y), ("b", (0, 1)): ((y + 1) % 4, y)}
    c = compare_groups(rows, "test_ua", reference="sft", clips=clips, n_resamples=200)
    a = c["a"].difference
    assert a is not None and not a.has_interval and a.unit == "runs"
    assert a.method.endswith("no bootstrap: run (0, 1): 'a' and 'sft' were not scored on the same clips in the same "
                             "order (their labels differ), so this comparison is skipped")
    b = c["b"].difference  # the other comparison still runs
    assert b is not None and b.unit == "clips" and b.has_interval


def test_holm_adjusts_across_every_dataset_of_a_table() -> None:
    # Two datasets x two rows against sft, three seeds in one fold each (paired t, 2 df).
    # Raw p: x/a 0.0377 (differences .05, .10, .10: p = 1 - 5/sqrt 27, see test_stats), the others
    # from ttest_rel; Holm over the 4: the smallest times 4, the next times 3, ... running maximum.
    def rows(dataset: str, a: list[float], b: list[float]) -> list[dict[str, object]]:
        ref = [0.60, 0.50, 0.70]
        return [{"method": m, "seed": s, "fold": 1, "test_ua": v} for m, vals in (("sft", ref), ("a", a), ("b", b))
                for s, v in enumerate(vals)]

    data = {"x": rows("x", [0.65, 0.60, 0.80], [0.61, 0.52, 0.69]),
            "y": rows("y", [0.70, 0.61, 0.80], [0.50, 0.45, 0.61])}
    raw = {d: compare_groups(r, "test_ua", reference="sft") for d, r in data.items()}
    adjusted = adjust_holm(raw)
    p = {(d, g): raw[d][g].difference.p_value for d in data for g in ("a", "b")}
    assert p[("x", "a")] == pytest.approx(1 - 5 / math.sqrt(27))
    order = sorted(p, key=p.get)
    want, running = {}, 0.0
    for j, k in enumerate(order):  # Holm's definition, written out
        running = max(running, min(1.0, (4 - j) * p[k]))
        want[k] = running
    for (d, g), w in want.items():
        diff = adjusted[d][g].difference
        assert diff.p_adjusted == pytest.approx(w) and diff.family == 4 and diff.p_value == p[(d, g)]
    # x/a: its CI excludes 0 (p 0.038) but not after the adjustment for 4 comparisons
    xa = adjusted["x"]["a"].difference
    assert raw["x"]["a"].difference.distinguishable and xa.p_adjusted > 0.05 and not xa.distinguishable
    assert adjusted["x"]["sft"].difference is None


def test_comparison_lines() -> None:
    lines = comparison_lines(compare_groups(ROWS, "test_ua", reference="sft"), digits=2, scale=100)
    assert lines[0] == ("sft", "60.50 ± 11.00 (n=3)", "", "reference")
    assert lines[1] == ("pl_distill", "68.75 ± 4.48 (n=4)", "+8.25 [3.89, 12.61] (n=3)", "above sft (95% CI excludes 0)")
    assert lines[2][1:3] == ("61.00 (n=1, no CI)", "– (n=1)")
    assert lines[2][3] == "cannot be compared with sft: no comparison: fold 2 has runs on one side only"
    assert comparison_lines(compare_groups(ROWS, "test_ua"))[0][2:] == ("", "")
    assert not math.isnan(compare_groups(ROWS, "test_ua")["ldist"].estimate.mean)
