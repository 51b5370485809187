"""Uncertainty of sweep results: mean ± t interval, paired differences, a clip-level paired bootstrap.

Pure functions over numbers and label arrays (NumPy and SciPy, nothing read from disk), plus the
strings the report, ``best`` and the launch summary print:

* :func:`mean_ci` -- the mean of a configuration's (seed, fold) runs with a Student-t interval;
  :func:`stratified_mean_ci` (and :func:`runs_estimate`, what the reports use) when the folds are
  fixed strata and the seeds the replicates inside them;
* :func:`paired_difference` -- a row minus the reference row over runs matched by key (seed, fold),
  with a t interval and ``scipy.stats.ttest_rel``'s p-value; below ``min_pairs`` matched runs it
  gives no interval and says to use the bootstrap instead;
* :func:`paired_bootstrap` -- the difference in UA, WA or macro-F1 between two systems scored on the
  same clips, by ``scipy.stats.bootstrap`` over clips (stratified by run when several runs are pooled);
* :func:`importance_support` -- why Optuna's importances are withheld, if they are;
* :func:`format_estimate`, :func:`format_difference`, :func:`difference_verdict` -- the wording.

Intervals are two-sided at ``confidence`` (default 0.95). A missing interval is NaN, never 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as st

__all__ = ["Estimate", "Difference", "CLIP_METRICS", "mean_ci", "stratified_mean_ci", "runs_estimate",
           "paired_difference", "paired_bootstrap", "importance_support", "format_estimate", "format_difference", "difference_verdict"]

#: A clip-level metric: ``metric(y_true, y_pred)`` over the last axis, leading axes kept (vectorized).
ClipMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: Elements per bootstrap batch (~32 MB of int64 indices): bounds memory for many runs x clips.
_BATCH_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A mean with its interval. ``low``/``high`` are NaN when there is none (n < 2)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95
    method: str = ""

    @property
    def half_width(self) -> float:
        """Half the interval's width (the ``±`` part); NaN without an interval."""
        return (self.high - self.low) / 2.0

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


@dataclass(frozen=True)
class Difference:
    """``a - b`` with its interval; ``n`` counts matched runs (``unit="runs"``) or clips (``"clips"``).

    ``dropped_a``/``dropped_b`` are the keys of each side that were left out: no partner on the
    other side, or a missing/non-finite value on either side.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95
    method: str = ""
    p_value: float = math.nan
    unit: str = "runs"
    matched: tuple[Hashable, ...] = ()
    dropped_a: tuple[Hashable, ...] = ()
    dropped_b: tuple[Hashable, ...] = ()
    #: True when there were too few matched runs for a t interval (the caller should bootstrap clips).
    fallback: bool = False

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0 (False without an interval)."""
        return self.has_interval and (self.low > 0.0 or self.high < 0.0)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _finite_floats(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """``values`` as float64 with None, NaN and ±inf left out."""
    x = np.array([np.nan if v is None else v for v in np.asarray(values, dtype=object).ravel()], dtype=np.float64)
    return x[np.isfinite(x)]


def mean_ci(values: Sequence[float | None] | np.ndarray, confidence: float = 0.95, *,
            strata: Sequence[Hashable] | None = None) -> Estimate:
    """The mean of the finite ``values`` and its Student-t interval, ``mean ± t(1-(1-c)/2, n-1)·s/√n``.

    None, NaN and ±inf are dropped and ``n`` counts what is left. n = 1 gives the value with no
    interval (NaN bounds); n = 0 a NaN mean. Identical values give a zero-width interval.

    ``strata`` (one per value, e.g. each run's fold): the runs are replicates (seeds) inside fixed
    strata, and the estimate is :func:`stratified_mean_ci`'s. Without it every value is taken as
    an independent draw, which counts the strata's differences as noise.
    """
    _check_confidence(confidence)
    if strata is not None:
        return stratified_mean_ci(values, strata, confidence)
    x = _finite_floats(values)
    n = int(x.size)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, confidence, "no finite values")
    mean = float(np.mean(x))
    if n == 1:
        return Estimate(mean, math.nan, math.nan, 1, confidence, "one run: no interval")
    # st.t.interval(scale=sem) returns NaN for sem == 0; identical runs deserve a zero-width interval.
    half = float(st.t.ppf(0.5 + confidence / 2.0, n - 1) * st.sem(x))
    return Estimate(mean, mean - half, mean + half, n, confidence, f"Student t, {n - 1} df")


def stratified_mean_ci(values: Sequence[float | None] | np.ndarray, strata: Sequence[Hashable],
                       confidence: float = 0.95) -> Estimate:
    """Mean over fixed strata (the benchmark's folds) of replicate runs (seeds), with its t interval.

    The estimate is the mean of the strata's means (equal to the plain mean when every stratum has
    as many runs), its variance ``Σ_h s_h² / n_h / H²`` (the stratified-sampling variance: only
    the spread *within* a stratum is uncertainty), and the t quantile's degrees of freedom are
    Welch-Satterthwaite's, between the smallest ``n_h - 1`` and ``Σ (n_h - 1)``.

    Why: a fold is not a random draw but a fixed part of the benchmark that every method is scored
    on, and the folds of the embedded corpus differ by more than 10 points (their speakers differ).
    Treating (seed, fold) runs as one sample (``mean_ci`` without strata) widens every interval by
    that spread, which is a property of the benchmark, not an uncertainty about the method's score
    on it. The seeds inside a fold are what replicates measure. When a stratum has fewer than two
    finite runs its variance cannot be estimated: then the plain interval over all runs is
    returned, which is wider, and its method says why.
    """
    _check_confidence(confidence)
    if len(strata) != len(values):
        raise ValueError(f"{len(values)} values but {len(strata)} strata")
    groups: dict[Hashable, list[float]] = {}
    for v, h in zip(values, strata):
        x = _finite_floats([v])
        if x.size:
            groups.setdefault(h, []).append(float(x[0]))
    n = sum(len(g) for g in groups.values())
    if len(groups) < 2 or any(len(g) < 2 for g in groups.values()):
        plain = mean_ci([v for g in groups.values() for v in g], confidence)
        why = "one stratum" if len(groups) < 2 else "a stratum with one run"
        return Estimate(plain.mean, plain.low, plain.high, plain.n, confidence,
                        f"{plain.method} ({why}: not stratified)" if n else plain.method)
    h = len(groups)
    means = np.array([np.mean(g) for g in groups.values()])
    parts = np.array([np.var(g, ddof=1) / len(g) for g in groups.values()]) / h**2
    dfs = np.array([len(g) - 1 for g in groups.values()], dtype=np.float64)
    mean, var = float(np.mean(means)), float(np.sum(parts))
    if var == 0.0:
        return Estimate(mean, mean, mean, n, confidence, f"stratified over {h} folds, no spread within them")
    df = var**2 / float(np.sum(parts**2 / dfs))
    half = float(st.t.ppf(0.5 + confidence / 2.0, df) * math.sqrt(var))
    return Estimate(mean, mean - half, mean + half, n, confidence,
                    f"stratified by fold ({h} folds), Student t, {df:.1f} df")


def runs_estimate(runs: Sequence[Mapping[str, Any]], name: str, confidence: float = 0.95) -> Estimate:
    """:func:`mean_ci` of ``name`` over a trial's (seed, fold) runs (``fold_metrics`` rows), stratified
    by fold when every run names its fold."""
    values = [r.get(name) for r in runs]
    folds = [r.get("fold") for r in runs]
    return mean_ci(values, confidence, strata=None if None in folds else folds)


def _by_key(values: Sequence[float | None], keys: Sequence[Hashable], side: str) -> dict[Hashable, float]:
    if len(values) != len(keys):
        raise ValueError(f"{side}: {len(values)} values but {len(keys)} keys")
    out: dict[Hashable, float] = {}
    for k, v in zip(keys, values):
        if k in out:
            raise ValueError(f"{side}: key {k!r} appears twice; each (seed, fold) run must be one value")
        out[k] = math.nan if v is None else float(v)
    return out


def paired_difference(a: Sequence[float | None], b: Sequence[float | None], keys_a: Sequence[Hashable],
                      keys_b: Sequence[Hashable], confidence: float = 0.95, *, min_pairs: int = 3) -> Difference:
    """Mean of ``a - b`` over the runs present, with finite values, on both sides (matched by key,
    e.g. ``(seed, fold)``), its t interval and the two-sided p-value of ``scipy.stats.ttest_rel``.

    The interval is :func:`mean_ci` of the differences (the same as ``ttest_rel(...).confidence_interval``).
    With fewer than ``min_pairs`` matched runs there is no interval or p-value and ``fallback`` is set:
    a t interval on 2 runs (t = 12.7) says nothing, so the caller should use :func:`paired_bootstrap`.
    A key given twice on one side raises ValueError.
    """
    _check_confidence(confidence)
    da, db = _by_key(a, keys_a, "a"), _by_key(b, keys_b, "b")
    matched = tuple(k for k in da if k in db and math.isfinite(da[k]) and math.isfinite(db[k]))
    kept = set(matched)
    dropped_a = tuple(k for k in da if k not in kept)
    dropped_b = tuple(k for k in db if k not in kept)
    xa = np.array([da[k] for k in matched], dtype=np.float64)
    xb = np.array([db[k] for k in matched], dtype=np.float64)
    n = len(matched)
    if n < max(min_pairs, 2):
        mean = float(np.mean(xa - xb)) if n else math.nan
        why = f"{n} matched run{'s' if n != 1 else ''}, fewer than {max(min_pairs, 2)}: no paired t interval"
        return Difference(mean, math.nan, math.nan, n, confidence, why, matched=matched, dropped_a=dropped_a,
                          dropped_b=dropped_b, fallback=True)
    est = mean_ci(xa - xb, confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: handled below
        p = float(st.ttest_rel(xa, xb).pvalue)
    if not math.isfinite(p):  # every difference equal: ttest_rel divides 0 by 0 when they are all 0
        p = 1.0 if est.mean == 0.0 else 0.0
    return Difference(est.mean, est.low, est.high, n, confidence, f"paired t over {n} matched runs, {n - 1} df",
                      p_value=p, matched=matched, dropped_a=dropped_a, dropped_b=dropped_b)


# ---------------------------------------------------------------- clip-level bootstrap


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
                        confidence: float, n_resamples: int, seed: int, method: str) -> tuple[float, float, str]:
    """(low, high, how) from ``scipy.stats.bootstrap`` over ``index`` (one index array per run)."""
    batch = max(1, _BATCH_ELEMENTS // sum(i.size for i in index))
    kw = dict(vectorized=True, paired=False, confidence_level=confidence, batch=batch)
    with warnings.catch_warnings():
        # BCa is undefined when every resample gives the same value; that case is handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", st.DegenerateDataWarning)
        res = st.bootstrap(index, statistic, n_resamples=n_resamples, method=method,
                           rng=np.random.default_rng(seed), **kw)
        dist = res.bootstrap_distribution
        if np.ptp(dist) == 0.0:  # e.g. one system always right, the other always wrong
            return observed, observed, "every resample gave the same value"
        low, high = res.confidence_interval
        if not (math.isfinite(low) and math.isfinite(high)) and method.lower() == "bca":
            res = st.bootstrap(index, statistic, n_resamples=0, bootstrap_result=res, method="percentile", **kw)
            low, high = res.confidence_interval
            return float(low), float(high), "BCa undefined here: percentile interval"
    return float(low), float(high), f"{method} interval"


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
        low, high, how = math.nan, math.nan, f"no interval: run {small[0]!r} has fewer than 2 clips"
    else:
        low, high, how = _bootstrap_interval(index, statistic, observed, confidence, n_resamples, seed, method)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    pooled = f"{len(index)} runs, each resampled within itself" if len(index) > 1 else "1 run"
    desc = (f"clip-level paired bootstrap of {name}, {n_resamples} resamples (seed {seed}), {pooled}, "
            f"{t.size} clips: {how}")
    return Difference(observed, low, high, int(t.size), confidence, desc, unit="clips",
                      matched=tuple(names) if runs is not None else ())


# ---------------------------------------------------------------- wording


def importance_support(n_trials: int, minimum: int = 10) -> str | None:
    """Why hyperparameter importances are withheld (fewer than ``minimum`` trials), or None to show them."""
    if minimum < 1 or n_trials < 0:
        raise ValueError(f"expected n_trials >= 0 and minimum >= 1, got {n_trials} and {minimum}")
    if n_trials >= minimum:
        return None
    return (f"withheld: they would rest on {n_trials} completed trial{'s' if n_trials != 1 else ''}, "
            f"fewer than {minimum}")


def _num(value: float, digits: int, sign: bool = False) -> str:
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _n_text(n: int, unit: str) -> str:
    return f"n={n}" + (" clips" if unit == "clips" else "")


def format_estimate(est: Estimate, digits: int = 3, scale: float = 1.0) -> str:
    """``"0.812 ± 0.021 (n=9)"``; ``"0.812 (n=1, no CI)"`` without an interval; ``"– (n=0)"`` without
    a value. ``scale=100, digits=2`` prints percentages (``"81.20 ± 2.10 (n=9)"``)."""
    if not math.isfinite(est.mean):
        return f"– (n={est.n})"
    if not est.has_interval:
        return f"{_num(est.mean * scale, digits)} (n={est.n}, no CI)"
    return f"{_num(est.mean * scale, digits)} ± {_num(est.half_width * scale, digits)} (n={est.n})"


def format_difference(diff: Difference, digits: int = 3, scale: float = 1.0) -> str:
    """``"+0.034 [0.010, 0.058] (n=9)"`` (interval bounds at the difference's confidence);
    ``"+0.034 (n=2, no CI)"`` without an interval; ``"(n=1000 clips)"`` for a bootstrap."""
    n = _n_text(diff.n, diff.unit)
    if not math.isfinite(diff.mean):
        return f"– ({n})"
    if not diff.has_interval:
        return f"{_num(diff.mean * scale, digits, sign=True)} ({n}, no CI)"
    return (f"{_num(diff.mean * scale, digits, sign=True)} [{_num(diff.low * scale, digits)}, "
            f"{_num(diff.high * scale, digits)}] ({n})")


def difference_verdict(diff: Difference, reference: str = "sft") -> str:
    """One phrase for a row compared with ``reference``: above/below it (the interval excludes 0),
    not distinguishable from it, or not comparable (no interval)."""
    if not diff.has_interval:
        return f"cannot be compared with {reference}: {diff.method or 'no interval'}"
    if not diff.distinguishable:
        return f"not distinguishable from {reference}"
    pct = f"{100 * diff.confidence:g}%"
    return f"{'above' if diff.mean > 0 else 'below'} {reference} ({pct} CI excludes 0)"
