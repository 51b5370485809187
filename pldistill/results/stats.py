"""Uncertainty of sweep results: mean ± t interval over (seed, fold) runs, paired differences, Holm.

Pure functions over numbers (NumPy and SciPy, nothing read from disk), plus the strings the report,
``best`` and the launch summary print:

* :func:`stratified_mean_ci` (and :func:`runs_estimate`, what the reports use) -- a configuration's
  mean over fixed folds of its seed replicates, with a Student-t interval; :func:`mean_ci` without
  strata, every value an independent draw;
* :func:`paired_difference` -- a row minus the reference row, computed the same way (mean over folds
  of the within-fold difference), paired by key (seed, fold) where every run has its partner; below
  ``min_pairs`` runs it gives no interval and says to use the clip bootstrap
  (:func:`pldistill.results.clips.paired_bootstrap`) instead;
* :func:`holm` -- Holm's step-down adjustment of a table's p-values;
* :func:`importance_support` -- why Optuna's importances are withheld, if they are;
* :func:`format_estimate`, :func:`format_difference`, :func:`difference_verdict`,
  :func:`interval_legend` -- the wording, and the marker that says which interval a cell carries.

Intervals are two-sided at ``confidence`` (default 0.95). A missing interval is NaN, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as st

__all__ = ["Estimate", "Difference", "MIN_ZERO_SPREAD_RUNS", "mean_ci", "stratified_mean_ci", "runs_estimate", "paired_difference",
           "holm", "importance_support", "format_estimate", "format_difference", "format_p", "difference_verdict",
           "interval_legend"]

#: Fewer runs than this whose differences are all equal give no verdict: zero spread in 3 or 4 runs
#: is luck as often as it is certainty, and a zero-width interval would claim certainty.
MIN_ZERO_SPREAD_RUNS = 5


@dataclass(frozen=True)
class Estimate:
    """A mean with its interval. ``low``/``high`` are NaN when there is none (n < 2); ``mean`` is
    NaN when there is no estimate (``method`` says why). ``kind`` is a key of :data:`MARKERS`
    ("" without an interval)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95
    method: str = ""
    kind: str = ""

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

    ``dropped_a``/``dropped_b`` are the keys of each side without a partner on the other side or
    with a missing/non-finite value. ``p_adjusted`` is the Holm-adjusted p-value within a family of
    ``family`` comparisons (0: not adjusted); ``withheld`` says why there is no verdict although
    there are runs (e.g. zero spread in too few runs).
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
    kind: str = ""
    p_adjusted: float = math.nan
    family: int = 0
    withheld: str = ""

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0 and, within a Holm family, the adjusted p-value is below
        1 - confidence (False without an interval)."""
        if not self.has_interval or not (self.low > 0.0 or self.high < 0.0):
            return False
        return not self.family or self.p_adjusted < 1.0 - self.confidence


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
    return Estimate(mean, mean - half, mean + half, n, confidence, f"Student t, {n - 1} df", "plain")


def _groups(values: Sequence[float | None] | np.ndarray, strata: Sequence[Hashable]) -> dict[Hashable, list[float]]:
    """stratum -> its finite values, strata in first-seen order; a stratum without one maps to []."""
    if len(strata) != len(values):
        raise ValueError(f"{len(values)} values but {len(strata)} strata")
    groups: dict[Hashable, list[float]] = {}
    for v, h in zip(values, strata):
        group = groups.setdefault(h, [])
        if v is not None and math.isfinite(v):
            group.append(float(v))
    return groups


#: One independent variance estimate in a sum: (coefficient, s², degrees of freedom).
_Part = tuple[float, float, float]


def _stratified_parts(groups: Mapping[Hashable, list[float]]) -> list[_Part]:
    """The variance of the mean of stratum means, ``Σ_h s_h² / n_h / H²``, as parts over the strata
    with at least two values. A stratum with one value has no s² of its own: it takes the pooled
    within-stratum variance ``s_p² = Σ (n_j-1) s_j² / Σ (n_j-1)`` of the others, which spreads its
    ``s_p² / H²`` over their parts in proportion to ``n_j - 1`` (so Satterthwaite's degrees of
    freedom still see independent estimates). [] when no stratum has two values."""
    h = len(groups)
    multi = [g for g in groups.values() if len(g) >= 2]
    singles = sum(len(g) == 1 for g in groups.values())
    pooled_df = sum(len(g) - 1 for g in multi)
    return [((1.0 / len(g) + singles * (len(g) - 1) / pooled_df) / h**2, float(np.var(g, ddof=1)), len(g) - 1.0)
            for g in multi]


def _t_interval(mean: float, parts: Sequence[_Part], confidence: float) -> tuple[float, float, float, float]:
    """(low, high, df, two-sided p of mean = 0) for ``mean`` with variance ``Σ c·s²`` and
    Welch-Satterthwaite's degrees of freedom ``(Σ c s²)² / Σ (c s²)² / ν``. Zero variance gives a
    zero-width interval, df NaN, and p 1 (mean 0) or 0."""
    terms = np.array([c * s2 for c, s2, _ in parts])
    var = float(np.sum(terms))
    if var == 0.0:
        return mean, mean, math.nan, 1.0 if mean == 0.0 else 0.0
    df = var**2 / float(np.sum(terms**2 / np.array([nu for _, _, nu in parts])))
    se = math.sqrt(var)
    # scipy.special's t functions are what st.t.ppf/st.t.sf call, without the distribution layer's
    # per-call checks (4x faster here: the adaptive replication's stopping rule calls this after every seed).
    half = float(special.stdtrit(df, 0.5 + confidence / 2.0)) * se
    return mean - half, mean + half, df, float(2.0 * special.stdtr(df, -abs(mean) / se))


def _empty_stratum(groups: Mapping[Hashable, list[float]]) -> str | None:
    """Why there is no estimate when some stratum has no finite value (averaging over the others
    would quietly be a mean over fewer folds), else None."""
    empty = [h for h, g in groups.items() if not g]
    return f"no estimate: fold {empty[0]!r} has no finite run" if empty else None


def stratified_mean_ci(values: Sequence[float | None] | np.ndarray, strata: Sequence[Hashable],
                       confidence: float = 0.95) -> Estimate:
    """Mean over fixed strata (the benchmark's folds) of replicate runs (seeds), with its t interval.

    The estimate is always the mean of the strata's means (equal to the plain mean when every
    stratum has as many runs), its variance ``Σ_h s_h² / n_h / H²`` (the stratified-sampling
    variance: only the spread *within* a stratum is uncertainty), and the t quantile's degrees of
    freedom are Welch-Satterthwaite's, between the smallest ``n_h - 1`` and ``Σ (n_h - 1)``.

    Why: a fold is not a random draw but a fixed part of the benchmark that every method is scored
    on, and the folds of the embedded corpus differ by more than 10 points (their speakers differ).
    Treating (seed, fold) runs as one sample (``mean_ci`` without strata) widens every interval by
    that spread, which is a property of the benchmark, not an uncertainty about the method's score
    on it. The seeds inside a fold are what replicates measure.

    A stratum with one finite run keeps its value in the mean; its variance is the pooled
    within-stratum variance of the others (``kind="stratified-pooled"``, see
    :func:`_stratified_parts`). When no stratum has two runs there is no within-stratum variance at
    all: the plain t interval over the strata's values is given (``kind="plain"``, wider; its method
    says so). A stratum whose runs are all missing or non-finite gives no estimate (NaN mean, the
    reason in ``method``): a mean over fewer folds is another quantity.
    """
    _check_confidence(confidence)
    groups = _groups(values, strata)
    n = sum(len(g) for g in groups.values())
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, confidence, "no finite values")
    refused = _empty_stratum(groups)
    if refused:
        return Estimate(math.nan, math.nan, math.nan, n, confidence, refused)
    h = len(groups)
    mean = float(np.mean([np.mean(g) for g in groups.values()]))
    parts = _stratified_parts(groups)
    if not parts:
        plain = mean_ci([g[0] for g in groups.values()], confidence)
        if h == 1:
            return plain
        return Estimate(mean, plain.low, plain.high, n, confidence,
                        f"{plain.method} over {h} folds of one run each (not stratified: the spread between "
                        "folds counts as noise)", "plain")
    low, high, df, _ = _t_interval(mean, parts, confidence)
    singles = sum(len(g) == 1 for g in groups.values())
    kind = "stratified-pooled" if singles else "stratified"
    how = f"stratified by fold ({h} fold{'s' if h != 1 else ''}), " + (
        f"Student t, {df:.1f} df" if math.isfinite(df) else "no spread within them")
    if singles:
        how += f"; {singles} fold{'s' if singles != 1 else ''} with one run given the pooled within-fold variance"
    return Estimate(mean, low, high, n, confidence, how, kind)


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


def _df_text(df: float) -> str:
    return f"{df:.0f} df" if abs(df - round(df)) < 1e-9 else f"{df:.1f} df"


def _fold_problem(da: Mapping[Hashable, float], db: Mapping[Hashable, float], fold: Any) -> str | None:
    """Why the two sides cannot be compared fold by fold (a fold on one side only, or a fold
    without a finite run: either side's table estimate is then refused too), else None."""
    folds_a, folds_b = ({fold(k) for k in d} for d in (da, db))
    only = [f for f in dict.fromkeys([*map(fold, da), *map(fold, db)]) if (f in folds_a) != (f in folds_b)]
    if only:
        return f"no comparison: fold {only[0]!r} has runs on one side only"
    for side, d in (("a", da), ("b", db)):
        refused = _empty_stratum(_groups(list(d.values()), [fold(k) for k in d]))
        if refused:
            return f"{refused} in {side}"
    return None


def _difference_parts(da: Mapping[Hashable, float], db: Mapping[Hashable, float], keys_a: Sequence[Hashable],
                      keys_b: Sequence[Hashable], fold: Any, paired: bool) -> tuple[float, list[_Part], str]:
    """(mean over folds of the within-fold difference, its variance parts, kind). Paired: the
    stratified variance of the per-run differences; unpaired: both sides' stratified variances
    summed. Without within-fold variance: the plain t over the folds' differences ([] for one fold)."""
    if paired:
        ga = _groups([da[k] - db[k] for k in keys_a], [fold(k) for k in keys_a])
        per_fold = [float(np.mean(g)) for g in ga.values()]
        parts, sizes = _stratified_parts(ga), [len(g) for g in ga.values()]
    else:
        ga = _groups([da[k] for k in keys_a], [fold(k) for k in keys_a])
        gb = _groups([db[k] for k in keys_b], [fold(k) for k in keys_b])
        per_fold = [float(np.mean(ga[h]) - np.mean(gb[h])) for h in ga]
        pa, pb = _stratified_parts(ga), _stratified_parts(gb)
        parts = pa + pb if pa and pb else []
        sizes = [len(g) for g in (*ga.values(), *gb.values())]
    mean, h = float(np.mean(per_fold)), len(per_fold)
    if parts:
        return mean, parts, "stratified-pooled" if 1 in sizes else "stratified"
    if h < 2:
        return mean, [], ""
    return mean, [(1.0 / h, float(np.var(per_fold, ddof=1)), h - 1.0)], "plain"


def paired_difference(a: Sequence[float | None], b: Sequence[float | None], keys_a: Sequence[Hashable],
                      keys_b: Sequence[Hashable], confidence: float = 0.95, *, min_pairs: int = 3,
                      fold_of: Any = None) -> Difference:
    """``a - b`` computed as the table computes each side: the mean over folds of the within-fold
    difference, so its sign always agrees with the two sides' :func:`stratified_mean_ci` means.

    Runs are keyed (e.g. ``(seed, fold)``); ``fold_of(key)`` gives a run's fold (None: one stratum).
    Where every finite run of each side has its partner on the other, the difference is paired by
    key: the stratified interval of the per-run differences (with one stratum, ``scipy.stats.
    ttest_rel``'s interval and p-value). Otherwise it is unpaired within fold, over every finite run
    of both sides (with one stratum, Welch's ``ttest_ind(equal_var=False)``): matching only the
    runs both have could put the difference's sign against the table's means. A fold on one side
    only, or a fold without a finite run, gives no difference (the reason in ``method``).

    Below ``min_pairs`` matched runs (unpaired: runs on the smaller side) there is no interval or
    p-value and ``fallback`` is set: a t interval on 2 runs (t = 12.7) says nothing, so the caller
    should use the clip bootstrap. All-equal differences over fewer than
    :data:`MIN_ZERO_SPREAD_RUNS` runs get no interval and no verdict (``withheld``). A key given
    twice on one side raises ValueError.
    """
    _check_confidence(confidence)
    da, db = _by_key(a, keys_a, "a"), _by_key(b, keys_b, "b")
    fin_a = [k for k, v in da.items() if math.isfinite(v)]
    fin_b = [k for k, v in db.items() if math.isfinite(v)]
    matched = tuple(k for k in fin_a if k in set(fin_b))
    base: dict[str, Any] = dict(matched=matched, dropped_a=tuple(k for k in da if k not in set(matched)),
                                dropped_b=tuple(k for k in db if k not in set(matched)))
    fold = fold_of or (lambda k: None)
    paired = set(fin_a) == set(fin_b)
    size = len(matched) if paired else min(len(fin_a), len(fin_b))
    problem = _fold_problem(da, db, fold) if size else None
    if problem:
        return Difference(math.nan, math.nan, math.nan, size, confidence, problem, **base)
    if size < max(min_pairs, 2):
        mean = _difference_parts(da, db, fin_a, fin_b, fold, paired)[0] if size else math.nan
        what = f"{size} matched run{'s' if size != 1 else ''}" if paired else f"{size} runs on the smaller side"
        why = f"{what}, fewer than {max(min_pairs, 2)}: no {'paired ' if paired else ''}t interval"
        return Difference(mean, math.nan, math.nan, size, confidence, why, fallback=True, **base)
    mean, parts, kind = _difference_parts(da, db, matched if paired else fin_a, fin_b, fold, paired)
    how = (f"paired t over {size} matched runs" if paired else
           f"unpaired t within fold ({len(fin_a)} and {len(fin_b)} runs, not matched one to one)")
    if fold_of is None:
        kind = "plain" if kind else ""
    else:
        how += {"plain": ", plain over the folds' differences (one run per fold)"}.get(kind, ", stratified by fold")
    if not parts:
        return Difference(mean, math.nan, math.nan, size, confidence, f"{how}: one fold, no spread", **base)
    low, high, df, p = _t_interval(mean, parts, confidence)
    if not math.isfinite(df) and size < MIN_ZERO_SPREAD_RUNS:
        why = f"all {size} differences equal (zero spread), fewer than {MIN_ZERO_SPREAD_RUNS} runs"
        return Difference(mean, math.nan, math.nan, size, confidence, f"{how}: {why}", kind=kind, withheld=why, **base)
    how += f", {_df_text(df)}" if math.isfinite(df) else ", no spread"
    return Difference(mean, low, high, size, confidence, how, p_value=p, kind=kind, **base)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: sorted ascending,
    ``p̃_(i) = max_{j ≤ i} min(1, (m - j + 1) · p_(j))``. NaN (a comparison without a p-value) stays
    NaN and is not counted in ``m``. Holm (1979) controls the chance of any false "above/below"
    in the family at the level, whatever the dependence between the comparisons."""
    order = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    m = len(order)
    out = [math.nan] * len(p_values)
    running = 0.0
    for j, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - j) * p))
        out[i] = running
    return out


# The wording lives in its own module (it only reads these dataclasses); its names are part of this
# module's surface, as before.
from pldistill.results.wording import (  # noqa: E402
    difference_verdict,
    format_difference,
    format_estimate,
    format_p,
    importance_support,
    interval_legend,
)
