"""Clip-level paired bootstrap: two systems scored on the same test clips, and the metrics it resamples.

What a comparison falls back to when too few (seed, fold) runs match for a t interval
(:func:`pldistill.results.stats.paired_difference`). It measures the test set's sampling
uncertainty for *these* trained students only: the seeds' spread is not in it, so its verdicts say
"on these test clips", never "above the reference" outright.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
from scipy import stats as st

from pldistill.results.stats import Difference, _check_confidence

__all__ = ["CLIP_METRICS", "ClipMetric", "paired_bootstrap"]

#: A clip-level metric: ``metric(y_true, y_pred)`` over the last axis, leading axes kept (vectorized).
ClipMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: Elements per bootstrap batch (~32 MB of int64 indices): bounds memory for many runs x clips.
_BATCH_ELEMENTS = 4_000_000

def _wa(t: np.ndarray, p: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.mean(t == p, axis=-1)


def _ua(t: np.ndarray, p: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Balanced accuracy: mean recall over the classes present in ``t`` (per resample)."""
    total = np.zeros(t.shape[:-1])
    present = np.zeros(t.shape[:-1])
    for c in classes:
        is_c = t == c
        count = is_c.sum(axis=-1)
        total += np.where(count > 0, (is_c & (p == c)).sum(axis=-1) / np.maximum(count, 1), 0.0)
        present += count > 0
    return total / present


def _f1(t: np.ndarray, p: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Macro-F1 over the classes in ``t`` or ``p`` (per resample); F1 = 2·tp / (#pred + #true)."""
    total = np.zeros(t.shape[:-1])
    seen = np.zeros(t.shape[:-1])
    for c in classes:
        tc, pc = t == c, p == c
        denom = tc.sum(axis=-1) + pc.sum(axis=-1)
        total += np.where(denom > 0, 2.0 * (tc & pc).sum(axis=-1) / np.maximum(denom, 1), 0.0)
        seen += denom > 0
    return total / seen


#: The metrics :func:`paired_bootstrap` knows by name, defined as ``pldistill.train.metrics`` defines them.
CLIP_METRICS = {"ua": _ua, "wa": _wa, "f1": _f1}


def _clip_metric(metric: str | ClipMetric, classes: np.ndarray) -> ClipMetric:
    if callable(metric):
        return metric
    name = metric.lower().rsplit("_", 1)[-1]  # "test_ua" -> "ua"
    if name not in CLIP_METRICS:
        raise ValueError(f"unknown clip metric {metric!r}; known: {', '.join(CLIP_METRICS)} or a callable")
    fn = CLIP_METRICS[name]
    return lambda t, p: fn(t, p, classes)


def _bootstrap_interval(index: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], observed: float,
                        confidence: float, n_resamples: int, seed: int,
                        method: str) -> tuple[float, float, float, str]:
    """(low, high, p, how) from ``scipy.stats.bootstrap`` over ``index`` (one index array per run);
    ``p`` is :func:`_bootstrap_p` of the resamples."""
    batch = max(1, _BATCH_ELEMENTS // sum(i.size for i in index))
    kw = dict(vectorized=True, paired=False, confidence_level=confidence, batch=batch)
    with warnings.catch_warnings():
        # BCa is undefined when every resample gives the same value; that case is handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", st.DegenerateDataWarning)
        res = st.bootstrap(index, statistic, n_resamples=n_resamples, method=method,
                           rng=np.random.default_rng(seed), **kw)
        dist = res.bootstrap_distribution
        p = _bootstrap_p(dist)
        if np.ptp(dist) == 0.0:  # e.g. one system always right, the other always wrong
            return observed, observed, p, "every resample gave the same value"
        low, high = res.confidence_interval
        if not (math.isfinite(low) and math.isfinite(high)) and method.lower() == "bca":
            res = st.bootstrap(index, statistic, n_resamples=0, bootstrap_result=res, method="percentile", **kw)
            low, high = res.confidence_interval
            return float(low), float(high), p, "BCa undefined here: percentile interval"
    return float(low), float(high), p, f"{method} interval"


def _bootstrap_p(dist: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from the resamples: twice the smaller share on either
    side of 0, ties counted on both sides, with the Monte Carlo +1 (Davison & Hinkley 1997, eq. 4.11),
    so it is never 0. The Holm adjustment needs a p-value for every comparison, a bootstrap's too."""
    b = dist.size
    side = min(int(np.sum(dist <= 0.0)), int(np.sum(dist >= 0.0)))
    return min(1.0, 2.0 * (side + 1) / (b + 1))


def paired_bootstrap(y_true: Sequence[Any] | np.ndarray, pred_a: Sequence[Any] | np.ndarray,
                     pred_b: Sequence[Any] | np.ndarray, *, metric: str | ClipMetric = "ua",
                     runs: Sequence[Hashable] | np.ndarray | None = None, confidence: float = 0.95,
                     n_resamples: int = 10_000, seed: int = 0, method: str = "BCa") -> Difference:
    """``metric(a) - metric(b)`` for two systems scored on the same clips, with a paired bootstrap interval.

    ``y_true``, ``pred_a``, ``pred_b`` are per-clip labels in the same clip order; ``metric`` is
    ``"ua"`` (balanced accuracy), ``"wa"``, ``"f1"`` (macro), a column name ending in one of them
    (``"test_ua"``), or a vectorized callable ``(y_true, y_pred) -> value`` over the last axis.

    Pooling runs: ``runs`` labels each clip with its (seed, fold) run. The statistic is then the mean
    over runs of each run's difference -- the same weighting as the report's mean over runs -- and
    each run's clips are resampled within that run (a stratified bootstrap: every resample keeps
    every run and its size). Without ``runs`` all clips are one run.

    How: ``scipy.stats.bootstrap`` with ``paired=True`` resamples one array of clip indices and
    would mix runs; here its same device is applied per run (one index array per run, which
    SciPy resamples independently), so with a single run this *is* ``paired=True``. The interval
    is BCa (SciPy's default) because UA near its ceiling gives a skewed, biased bootstrap
    distribution that the percentile interval does not correct; where BCa is undefined the
    percentile interval of the same resamples is given, and when every resample gives the same
    value the interval is that value. ``seed`` fixes the resamples (deterministic).
    """
    _check_confidence(confidence)
    t, a, b = (np.asarray(x) for x in (y_true, pred_a, pred_b))
    if t.ndim != 1 or t.shape != a.shape or t.shape != b.shape or t.size == 0:
        raise ValueError(f"y_true, pred_a, pred_b must be 1-D, non-empty and of one length; got shapes "
                         f"{t.shape}, {a.shape}, {b.shape}")
    labels = [0] * t.size if runs is None else list(runs)  # a list: (seed, fold) tuples stay labels
    if len(labels) != t.size:
        raise ValueError(f"runs must label every clip: {len(labels)} labels for {t.size} clips")
    names = list(dict.fromkeys(labels))
    code = {r: i for i, r in enumerate(names)}
    codes = np.array([code[r] for r in labels], dtype=np.int64)
    index = tuple(np.flatnonzero(codes == i) for i in range(len(names)))
    score = _clip_metric(metric, np.unique(np.concatenate([t, a, b])))

    def statistic(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([score(t[i], a[i]) - score(t[i], b[i]) for i in idx], axis=0)

    observed = float(statistic(*index))
    small = [r for r, i in zip(names, index) if i.size < 2]
    if small:  # one clip resampled is always itself: a zero-width interval there would claim certainty
        low, high, p, how = math.nan, math.nan, math.nan, f"no interval: run {small[0]!r} has fewer than 2 clips"
    else:
        low, high, p, how = _bootstrap_interval(index, statistic, observed, confidence, n_resamples, seed, method)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    pooled = f"{len(index)} runs, each resampled within itself" if len(index) > 1 else "1 run"
    desc = (f"clip-level paired bootstrap of {name}, {n_resamples} resamples (seed {seed}), {pooled}, "
            f"{t.size} clips: {how}")
    return Difference(observed, low, high, int(t.size), confidence, desc, p_value=p, unit="clips",
                      matched=tuple(names) if runs is not None else (), kind="bootstrap")
