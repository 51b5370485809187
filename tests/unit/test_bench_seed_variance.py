"""``bench/seed_variance.py``: the seeds a target half-width needs, and one run's test-clip spread."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _bench import load_bench
from scipy.stats import t


def test_seeds_for_is_the_fewest_seeds_whose_stratified_interval_meets_the_target() -> None:
    bench = load_bench("seed_variance")
    var, folds = 36.0, 3  # a seed sd of 6 points in every fold

    def half(n: int) -> float:  # the stratified 95% half-width with n seeds in each of the folds
        return t.ppf(0.975, folds * (n - 1)) * math.sqrt(var / (folds * n))

    n = bench.seeds_for(var, folds, 3.0)
    assert half(n) <= 3.0 < half(n - 1)
    assert bench.seeds_for(var, folds, 1.0) > n  # a narrower target needs more seeds
    assert bench.seeds_for(1e6, folds, 0.01, most=10) is None


def test_clip_spread_is_zero_for_a_perfect_run_and_grows_with_fewer_clips(tmp_path) -> None:
    bench = load_bench("seed_variance")
    rng = np.random.default_rng(0)

    def run(n: int, right: float, name: str) -> float:
        y = np.tile(np.arange(4), n // 4)
        p = np.where(rng.random(len(y)) < right, y, (y + 1) % 4)
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"label": y, "pred": p}), path)
        return bench._clip_var(path, np.random.default_rng(1))

    assert run(64, 1.0, "perfect") == 0.0
    small, large = run(64, 0.6, "small"), run(1024, 0.6, "large")
    # the variance of a proportion shrinks as 1/n: 16x the clips, about a 16th of the variance
    assert 6 < small / large < 40, (small, large)
    assert bench._clip_var(tmp_path / "missing.parquet", rng) is None
