"""Where a grid's interval width comes from: seeds or test clips, and how many seeds a target needs.

    .venv/bin/python bench/seed_variance.py baselines_grid [--results results] [--target 3]

For each completed trial of the sweep (one per method in a grid), over its (seed, fold) runs:

* ``seed sd``: the spread of test UA between seeds within a fold (pooled over folds): what the
  stratified interval of the reports (``pldistill.results.stats.stratified_mean_ci``) is built from;
* ``clip sd``: the spread of one run's test UA when its test clips are resampled (``scipy.stats.bootstrap``
  over the run's saved predictions, averaged over runs): the part a finite test set can explain. It is
  an upper bound on the test set's share of ``seed sd`` (two seeds' students err on many of the same
  clips, so their scores differ by less than two independent draws would);
* ``±now``: the reported half-width (95%, stratified by fold); ``seeds for ±T``: the fewest seeds per
  fold whose stratified interval would be no wider than ±T at the pooled ``seed sd`` (equal variance in
  every fold assumed, t with ``folds x (seeds - 1)`` df).

If ``clip sd`` is small against ``seed sd``, a larger test set cannot narrow the interval: the students
of different seeds differ, and only more seeds (or a more stable method) can.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

import numpy as np


def _clip_var(path: Path, rng: np.random.Generator) -> float | None:
    """Variance of one run's test UA over bootstrap resamples of its test clips."""
    import pyarrow.parquet as pq
    from scipy.stats import bootstrap

    from pldistill.results.clips import CLIP_METRICS

    if not path.is_file():
        return None
    t = pq.read_table(path, columns=["label", "pred"]).to_pydict()
    y, p = np.asarray(t["label"]), np.asarray(t["pred"])

    ua, classes = CLIP_METRICS["ua"], np.unique(y)  # UA as the reports' clip bootstrap computes it

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:  # idx: (resamples, clips)
        return ua(y[idx], p[idx], classes)

    res = bootstrap((np.arange(len(y)),), stat, n_resamples=400, vectorized=True, method="percentile", rng=rng)
    return float(np.var(res.bootstrap_distribution, ddof=1))


def seeds_for(seed_var: float, folds: int, target: float, most: int = 100) -> int | None:
    """Fewest seeds per fold whose stratified 95% half-width is <= ``target`` (same units as the var)."""
    from scipy.stats import t

    for n in range(2, most + 1):
        if t.ppf(0.975, folds * (n - 1)) * math.sqrt(seed_var / (folds * n)) <= target:
            return n
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep")
    ap.add_argument("--results", default="results")
    ap.add_argument("--target", type=float, default=3.0, help="half-width in UA points")
    args = ap.parse_args()

    from pldistill.results.stats import runs_estimate
    from pldistill.results.store import read_trials

    rng = np.random.default_rng(0)
    root = Path(args.results)
    rows = [r for r in read_trials(root, args.sweep).to_pylist() if r["status"] == "completed"]
    print(f"{'trial':>12} {'objective':>11} {'runs':>4} {'mean':>6} {'±now':>5} {'seed sd':>7} {'clip sd':>7} "
          f"{'seeds for ±' + format(args.target, 'g'):>13}")
    for r in rows:
        runs = r["fold_metrics"] or []
        by_fold: dict[int, list[float]] = defaultdict(list)
        clip = []
        for run in runs:
            by_fold[run["fold"]].append(100 * run["test_ua"])
            path = (root / args.sweep / "runs" / r["trial_id"] / f"seed_{run['seed']}" / f"fold_{run['fold']}"
                    / "best" / "test_predictions.parquet")
            v = _clip_var(path, rng)
            if v is not None:
                clip.append(1e4 * v)
        within = [np.var(v, ddof=1) for v in by_fold.values() if len(v) > 1]
        if not within:
            continue
        est = runs_estimate(runs, "test_ua")
        seed_var = float(np.mean(within))
        need = seeds_for(seed_var, len(by_fold), args.target)
        print(f"{r['trial_id']:>12} {r['objective']:>11} {len(runs):>4} {100 * est.mean:6.2f} "
              f"{100 * est.half_width:5.2f} {math.sqrt(seed_var):7.2f} "
              f"{math.sqrt(np.mean(clip)) if clip else float('nan'):7.2f} {need if need else '>100':>13}")


if __name__ == "__main__":
    main()
