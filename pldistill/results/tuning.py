"""Tuning curves: the best validation score to expect after k trials of random search, per method.

"Show Your Work" (Dodge et al., 2019) answers "is a method better, or only tuned more?" with each
method's expected best validation score after k random-search trials; "Show Your Work with
Confidence" (Lourie et al., 2023, arXiv 2311.09480; the ``opda`` package) adds simultaneous
confidence bands. Here a method's trials (its Table 1 row, :func:`~pldistill.results.tables.method_label`)
are its random draws; their validation scores give an empirical distribution, ``opda``'s bands on its
CDF, and the bands' tuning curves bound the curve for every k at once.

The curve is the *median* tuning curve (the score that the best of k trials beats with probability
1/2), as Lourie et al. recommend: it exists for any score distribution, and its bands need no bound
on the support beyond the metric's own. Only random search qualifies: TPE's trials depend on the
earlier ones, and a grid's points are not draws from a distribution.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pldistill.results.space import _finite
from pldistill.results.tables import _method_order, method_label

__all__ = ["TUNING_CONFIDENCE", "TUNING_KS", "TuningCurve", "TuningCurves", "tuning_curve", "tuning_curves",
           "tuning_markdown"]

#: The bands' simultaneous coverage, as Lourie et al. draw them: with the 20-30 trials per method a
#: sweep affords, a 95% band's upper edge is the metric's maximum from k = 3 or so and says nothing.
TUNING_CONFIDENCE = 0.80
#: The budgets the table shows (``n``, each method's own trial count, is added).
TUNING_KS = (1, 5)
#: opda's Learned-Miller-DeStefano band with equal-tailed pointwise intervals: as tight as the
#: highest-density one within a hair and much faster, so the report stays quick.
_BAND_METHOD = "ld_equal_tailed"
#: Metrics that are fractions: their scores live in [0, 1], which bounds the bands.
_FRACTION_SUFFIXES = ("_ua", "_wa", "_f1")


@dataclass(frozen=True)
class TuningCurve:
    """One method's curve for k = 1..n: the point estimate and its simultaneous band."""

    method: str
    scores: tuple[float, ...]
    point: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.scores)

    def at(self, k: int) -> tuple[float, float, float]:
        """(point, lower, upper) after ``k`` trials (1 <= k <= n)."""
        return self.point[k - 1], self.lower[k - 1], self.upper[k - 1]


@dataclass
class TuningCurves:
    """A sweep's curves, or ``why`` there are none."""

    metric: str
    mode: str
    confidence: float = TUNING_CONFIDENCE
    curves: list[TuningCurve] = field(default_factory=list)
    why: str | None = None
    #: Trials of the sweep that are not draws of a finished configuration (pruned, failed, NaN score).
    left_out: int = 0
    ties: bool = False


def metric_support(metric: str) -> tuple[float, float]:
    """The range a score of ``metric`` can take: [0, 1] for UA, WA and F1, unbounded otherwise."""
    return (0.0, 1.0) if metric.endswith(_FRACTION_SUFFIXES) else (-math.inf, math.inf)


def tuning_curve(method: str, scores: Sequence[float], *, mode: str = "max",
                 support: tuple[float, float] = (0.0, 1.0), confidence: float = TUNING_CONFIDENCE,
                 kind: str = "median") -> TuningCurve:
    """The ``kind`` (median or mean) tuning curve of ``scores`` (one per trial) for k = 1..n, with
    ``opda``'s simultaneous ``confidence`` band: the upper CDF band gives the lower curve and vice versa
    (a mean band needs a bounded ``support``; unbounded, its edges are infinite)."""
    import numpy as np
    from opda.nonparametric import EmpiricalDistribution

    ys = np.asarray(scores, dtype=float)
    ks = np.arange(1, len(ys) + 1)
    minimize = mode == "min"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # tied scores: said once in the report instead
        lo_cdf, cdf, hi_cdf = EmpiricalDistribution.confidence_bands(
            ys, confidence, a=support[0], b=support[1], method=_BAND_METHOD,
            generator=np.random.default_rng(0), n_jobs=1)
    if kind not in ("median", "mean"):
        raise ValueError(f"kind must be median or mean, got {kind!r}")
    curves = (c.quantile_tuning_curve(ks, q=0.5, minimize=minimize) if kind == "median"
              else c.average_tuning_curve(ks, minimize=minimize) for c in (cdf, hi_cdf, lo_cdf))
    point, lower, upper = (tuple(float(v) for v in c) for c in curves)
    return TuningCurve(method, tuple(float(y) for y in ys), point, lower, upper)


def _why_not(meta: Mapping[str, Any] | None) -> str | None:
    search = ((meta or {}).get("config") or {}).get("search") or {}
    algorithm = search.get("algorithm")
    if algorithm == "random":
        return None
    if algorithm == "optuna":
        return ("this sweep searched with Optuna's TPE, whose trials depend on the earlier ones: they are not "
                "independent draws, which a tuning curve needs (use `algorithm: random`)")
    if algorithm == "grid":
        return ("this sweep is a grid: its trials are chosen points, not random draws from a search space, "
                "which a tuning curve needs (use `algorithm: random`)")
    return "the sweep's search algorithm is not recorded, and a tuning curve needs random search"


def tuning_curves(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None, metric: str,
                  mode: str) -> TuningCurves:
    """Each method's curve over its completed trials with a finite ``metric``, for a random-search
    sweep; pruned trials stopped early (their score is not a finished configuration's) and are left out."""
    out = TuningCurves(metric, mode, why=_why_not(meta))
    if out.why is not None:
        return out
    groups: dict[str, list[float]] = {}
    for r in rows:
        label = method_label(r)
        if r.get("status") == "completed" and _finite(r.get(metric)) and label is not None:
            groups.setdefault(label, []).append(float(r[metric]))
        else:
            out.left_out += 1
    if not groups:
        out.why = f"no completed trial with a finite `{metric}` yet"
        return out
    support = metric_support(metric)
    order = _method_order()
    labels = sorted(groups, key=lambda s: (order.index(s) if s in order else len(order), s))  # Table 1's order
    out.curves = [tuning_curve(label, groups[label], mode=mode, support=support) for label in labels]
    out.ties = any(len(set(c.scores)) < c.n for c in out.curves)
    return out


def _support_text(metric: str) -> str:
    low, high = metric_support(metric)
    return f"scores in [{low:g}, {high:g}]" if math.isfinite(low) else "unbounded scores"


def _cell(curve: TuningCurve, k: int, percent: bool) -> str:
    if k > curve.n:
        return "–"
    point, lower, upper = ((f"{100 * v:.1f}" if percent else f"{v:.4g}") if math.isfinite(v) else "–"
                           for v in curve.at(k))
    return f"{point} [{lower}, {upper}]"


def tuning_markdown(t: TuningCurves, plot: str | None) -> list[str]:
    """The report's "Tuning curves" section: the plot and a table at k = 1, 5 and n."""
    out = ["## Tuning curves (random search)", ""]
    if t.why is not None:
        return out + [f"No tuning curve: {t.why}.", ""]
    pct = int(round(100 * t.confidence))
    percent = math.isfinite(metric_support(t.metric)[0])
    best = "best" if t.mode == "max" else "lowest"
    out += [f"Each method's median tuning curve: the {best} `{t.metric}` that the best of k of its random-search "
            f"trials reaches with probability 1/2, from the empirical distribution of its trials' scores, with a "
            f"{pct}% simultaneous confidence band (opda, Learned-Miller-DeStefano equal-tailed band on the CDF, "
            f"{_support_text(t.metric)}; Lourie et al. 2023). Each curve spends its own method's trials, so at "
            "equal k a method with more hyperparameters has had no more tuning than the others. Values as "
            "median [band]"
            + (" in points (%)." if percent else ".")
            + (f" {t.left_out} trials left out (pruned, failed, running, or no finite score)." if t.left_out else "")
            + (" Some scores tie: the bands assume continuous scores, so their coverage is approximate."
               if t.ties else ""), ""]
    if plot:
        out += [f"![tuning curves]({plot})", ""]
    head = ["Method", "n", *(f"k = {k}" for k in TUNING_KS), "k = n"]
    body = [[c.method, str(c.n), *(_cell(c, k, percent) for k in TUNING_KS), _cell(c, c.n, percent)]
            for c in t.curves]
    out += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in body] + [""]
