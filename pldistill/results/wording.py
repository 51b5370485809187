"""How the report, ``best`` and the launch summary word an estimate, a difference and its verdict.

Only reads :class:`~pldistill.results.stats.Estimate` and :class:`~pldistill.results.stats.Difference`
(re-exported by :mod:`pldistill.results.stats`, where callers import these from). Every figure can
carry a marker naming its interval (:data:`MARKERS`), explained by :func:`interval_legend` under
the table: rliable's habit of naming the interval method beside each aggregate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pldistill.results.stats import Difference, Estimate

__all__ = ["MARKERS", "importance_support", "format_estimate", "format_difference", "format_p",
           "difference_verdict", "interval_legend"]

#: Which interval a figure carries (``Estimate.kind``/``Difference.kind``): its marker in a table
#: cell and the legend line under the table.
MARKERS: dict[str, tuple[str, str]] = {
    "stratified": ("S", "stratified t: the folds are fixed strata, the seeds the replicates inside them"),
    "stratified-pooled": ("S1", "stratified t; a fold with one run takes the pooled within-fold variance of the "
                                "other folds"),
    "plain": ("P", "plain t over the runs as independent draws (no fold has two runs, or the folds are not "
                   "recorded): the spread between folds counts as noise, so it is wider"),
    "bootstrap": ("B", "clip bootstrap: test clips only; seeds not replicated"),
}


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


def _n_text(n: int, unit: str, kind: str, marker: bool) -> str:
    mark = f", {MARKERS[kind][0]}" if marker and kind in MARKERS else ""
    return f"n={n}" + (" clips" if unit == "clips" else "") + mark


def format_estimate(est: Estimate, digits: int = 3, scale: float = 1.0, *, marker: bool = False) -> str:
    """``"0.812 ± 0.021 (n=9)"``; ``"0.812 (n=1, no CI)"`` without an interval; ``"– (n=0)"`` without
    a value, or ``"– (no estimate: fold 2 has no finite run)"`` where one was refused.
    ``scale=100, digits=2`` prints percentages (``"81.20 ± 2.10 (n=9)"``); ``marker`` adds the
    interval's marker (``"(n=9, S)"``)."""
    if not math.isfinite(est.mean):
        return f"– ({est.method})" if est.n and est.method.startswith("no estimate") else f"– (n={est.n})"
    if not est.has_interval:
        return f"{_num(est.mean * scale, digits)} (n={est.n}, no CI)"
    return (f"{_num(est.mean * scale, digits)} ± {_num(est.half_width * scale, digits)} "
            f"({_n_text(est.n, 'runs', est.kind, marker)})")


def format_difference(diff: Difference, digits: int = 3, scale: float = 1.0, *, marker: bool = False) -> str:
    """``"+0.034 [0.010, 0.058] (n=9)"`` (interval bounds at the difference's confidence);
    ``"+0.034 (n=2, no CI)"`` without an interval; ``"(n=1000 clips)"`` for a bootstrap; ``marker``
    adds the interval's marker."""
    n = _n_text(diff.n, diff.unit, diff.kind, marker and diff.has_interval)
    if not math.isfinite(diff.mean):
        return f"– ({n})"
    if not diff.has_interval:
        return f"{_num(diff.mean * scale, digits, sign=True)} ({n}, no CI)"
    return (f"{_num(diff.mean * scale, digits, sign=True)} [{_num(diff.low * scale, digits)}, "
            f"{_num(diff.high * scale, digits)}] ({n})")


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def format_p(diff: Difference) -> str:
    """``"p=0.004, Holm p=0.020"`` (the adjusted one only within a family); "" without a p-value."""
    if not math.isfinite(diff.p_value):
        return ""
    text = f"p={_p(diff.p_value)}".replace("=<", " <")
    if diff.family and math.isfinite(diff.p_adjusted):
        text += f", Holm p={_p(diff.p_adjusted)}".replace("=<", " <")
    return text


def difference_verdict(diff: Difference, reference: str = "sft") -> str:
    """One phrase for a row compared with ``reference``: above/below it (the interval excludes 0
    and, within a Holm family, the adjusted p-value is below the level), not distinguishable from
    it, too few runs to tell, or not comparable (no interval). A clip bootstrap's verdict says it
    holds on these test clips only: the seeds were not replicated."""
    if diff.withheld:
        return f"too few runs to tell ({diff.withheld})"
    if not diff.has_interval:
        return f"cannot be compared with {reference}: {diff.method or 'no interval'}"
    clips = diff.unit == "clips"
    only = " on these test clips only" if clips else ""
    seeds = "; seeds not replicated" if clips else ""
    if not diff.distinguishable:
        if diff.family and (diff.low > 0.0 or diff.high < 0.0):
            return (f"not distinguishable from {reference}{only} after Holm's adjustment over {diff.family} "
                    f"comparisons{seeds}")
        return f"not distinguishable from {reference}{only}" + (" (clip bootstrap; seeds not replicated)" if clips else "")
    pct = f"{100 * diff.confidence:g}%"
    holm = f", Holm-adjusted p < {1 - diff.confidence:.2g}" if diff.family else ""
    ci = "clip-bootstrap CI" if clips else "CI"
    return f"{'above' if diff.mean > 0 else 'below'} {reference}{only} ({pct} {ci} excludes 0{holm}{seeds})"


def interval_legend(kinds: Iterable[str]) -> list[str]:
    """``"S: stratified t: ..."``, one line per interval kind among ``kinds`` (markers' order)."""
    present = set(kinds)
    return [f"{mark}: {text}" for kind, (mark, text) in MARKERS.items() if kind in present]
