"""Groups of (seed, fold) runs compared: each group's mean ± CI and its paired difference to a reference.

What the report's Table 1/2 cells and ``report --reference NAME`` rest on. The input is one row per
run: a group (``method``, an ablation row, ...), the run's key columns (``seed``, ``fold``) and the
metric. Each group gets :func:`~pldistill.results.stats.mean_ci` of its runs (stratified by fold); every
other group gets :func:`~pldistill.results.stats.paired_difference` to the reference, computed the same
way. Where fewer than ``min_pairs`` runs match and the caller passes the runs' clip predictions, the
difference is :func:`~pldistill.results.clips.paired_bootstrap` over those clips instead (runs kept as
strata). :func:`adjust_holm` adjusts a table's comparisons for their number.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pldistill.errors import InputError
from pldistill.results.clips import paired_bootstrap
from pldistill.results.stats import (
    Difference,
    Estimate,
    difference_verdict,
    format_difference,
    format_estimate,
    holm,
    mean_ci,
    paired_difference,
)

__all__ = ["GroupSummary", "Comparison", "ClipPredictions", "compare_groups", "comparison_lines", "adjust_holm"]

#: ``(y_true, y_pred)`` of one run, per clip, in one clip order shared by every group of that run.
ClipPredictions = tuple[Sequence[Any] | np.ndarray, Sequence[Any] | np.ndarray]


@dataclass(frozen=True)
class GroupSummary:
    """One group: its estimate over runs, and its difference to the reference (None for the
    reference itself, or when no reference was asked for)."""

    group: str
    estimate: Estimate
    difference: Difference | None = None


@dataclass(frozen=True)
class Comparison:
    """The groups in display order; ``reference`` as asked (None: no differences)."""

    metric: str
    reference: str | None
    groups: tuple[GroupSummary, ...]

    def __getitem__(self, group: str) -> GroupSummary:
        for g in self.groups:
            if g.group == group:
                return g
        raise KeyError(group)


def _as_rows(rows: Any) -> list[Mapping[str, Any]]:
    """A list of mappings from a list of dicts or anything with ``to_pylist`` (a pyarrow Table)."""
    return list(rows.to_pylist()) if hasattr(rows, "to_pylist") else list(rows)


def _runs(rows: Sequence[Mapping[str, Any]], group: str, keys: Sequence[str],
          metric: str) -> dict[str, dict[Hashable, Any]]:
    """group -> {run key -> metric value}, groups in first-seen order; a run given twice raises."""
    out: dict[str, dict[Hashable, Any]] = {}
    for row in rows:
        if metric not in row or group not in row:
            raise ValueError(f"every row needs the columns {group!r} and {metric!r}; got {sorted(row)}")
        if row[group] is None:
            continue
        name = str(row[group])
        # A missing key column (a sweep from before seeds were recorded) counts as one value, None.
        key = tuple(row.get(k) for k in keys)
        runs = out.setdefault(name, {})
        if key in runs:
            raise ValueError(f"{group} {name!r} has two rows for ({', '.join(keys)}) = {key}; "
                             "pass one configuration per group")
        runs[key] = row[metric]
    return out


def _ordered(names: Sequence[str], order: Sequence[str] | None) -> list[str]:
    first = list(order or [])
    return sorted(names, key=lambda s: (first.index(s) if s in first else len(first), names.index(s)))


def _bootstrap(group: str, reference: str, diff: Difference, clips: Mapping[tuple[str, Hashable], ClipPredictions],
               clip_metric: str, **kw: Any) -> Difference:
    """The clip-level paired bootstrap over ``diff``'s matched runs, or ``diff`` with the reason when
    a run's clip predictions are missing or the two were not scored on the same clips (that
    comparison is skipped; the rest of the report stands)."""
    missing = [k for k in diff.matched for g in (group, reference) if (g, k) not in clips]
    mismatch = next((k for k in diff.matched if not missing and not np.array_equal(
        np.asarray(clips[(group, k)][0]), np.asarray(clips[(reference, k)][0]))), None)
    if not diff.matched or missing or mismatch is not None:
        why = ("no matched runs" if not diff.matched else f"no clip predictions for run {missing[0]}" if missing
               else f"run {mismatch}: {group!r} and {reference!r} were not scored on the same clips in the same "
                    "order (their labels differ), so this comparison is skipped")
        return dataclasses.replace(diff, method=f"{diff.method}; no bootstrap: {why}")
    y_true, pred_a, pred_b, runs = [], [], [], []
    for k in diff.matched:
        (ya, pa), (_, pb) = clips[(group, k)], clips[(reference, k)]
        y_true.append(np.asarray(ya))
        pred_a.append(np.asarray(pa))
        pred_b.append(np.asarray(pb))
        runs += [k] * len(ya)
    boot = paired_bootstrap(np.concatenate(y_true), np.concatenate(pred_a), np.concatenate(pred_b),
                            metric=clip_metric, runs=runs, **kw)
    return dataclasses.replace(boot, dropped_a=diff.dropped_a, dropped_b=diff.dropped_b, fallback=True)


def compare_groups(rows: Any, metric: str, *, group: str = "method", keys: Sequence[str] = ("seed", "fold"),
                   reference: str | None = None, order: Sequence[str] | None = None,
                   clips: Mapping[tuple[str, Hashable], ClipPredictions] | None = None,
                   clip_metric: str | None = None, confidence: float = 0.95, min_pairs: int = 3,
                   n_resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Each group's :class:`Estimate` of ``metric`` over its runs and, with ``reference``, its
    :class:`Difference` (group - reference) over the runs both groups have.

    ``rows``: one row per run (list of dicts or a pyarrow Table) with columns ``group``, ``keys`` and
    ``metric``; rows whose group is None are skipped; a group with two rows for one key raises
    ValueError (choose one configuration per group first). ``reference`` must be one of the groups
    (InputError otherwise, listing them). ``order`` puts those groups first, the rest follow in the
    order they appear. ``clips`` maps ``(group, run key)`` to that run's :data:`ClipPredictions`,
    where a run key is the tuple of the ``keys`` values; it is used only where fewer than
    ``min_pairs`` runs match, for a :func:`paired_bootstrap` of ``clip_metric`` (default: from
    ``metric``, e.g. ``test_ua`` -> UA) with ``n_resamples`` and ``seed``.
    """
    by_group = _runs(_as_rows(rows), group, keys, metric)
    names = _ordered(list(by_group), order)
    if reference is not None and reference not in by_group:
        raise InputError(None, "reference", f"no {group} named {reference!r} among the runs; "
                                            f"present: {', '.join(names) or 'none'}")
    ref = by_group.get(reference) if reference is not None else None
    # Runs keyed by fold are replicates inside fixed folds: stratify (see stratified_mean_ci).
    by_fold = "fold" in keys and all(k[keys.index("fold")] is not None for g in by_group.values() for k in g)
    fold_of = (lambda k: k[keys.index("fold")]) if by_fold else None
    out = []
    for name in names:
        runs = by_group[name]
        diff = None
        if ref is not None and name != reference:
            diff = paired_difference(list(runs.values()), list(ref.values()), list(runs), list(ref), confidence,
                                     min_pairs=min_pairs, fold_of=fold_of)
            if diff.fallback and clips is not None:
                diff = _bootstrap(name, str(reference), diff, clips, clip_metric or metric, confidence=confidence,
                                  n_resamples=n_resamples, seed=seed)
        strata = [fold_of(k) for k in runs] if fold_of is not None else None
        out.append(GroupSummary(name, mean_ci(list(runs.values()), confidence, strata=strata), diff))
    return Comparison(metric, reference, tuple(out))


def comparison_lines(comparison: Comparison, digits: int = 3,
                     scale: float = 1.0) -> list[tuple[str, str, str, str]]:
    """``(group, "mean ± CI (n)", "difference [CI] (n)", verdict)`` per group, for a table; the
    last two are empty for the reference and when there is no reference."""
    out = []
    for g in comparison.groups:
        est = format_estimate(g.estimate, digits, scale)
        if g.difference is None:
            out.append((g.group, est, "", "reference" if g.group == comparison.reference else ""))
        else:
            out.append((g.group, est, format_difference(g.difference, digits, scale),
                        difference_verdict(g.difference, str(comparison.reference))))
    return out


def adjust_holm(comparisons: Mapping[str, Comparison]) -> dict[str, Comparison]:
    """``comparisons`` (e.g. a table's, one per dataset) with every difference's Holm-adjusted
    p-value over all of them (:func:`~pldistill.results.stats.holm`): one family per table, so
    the chance of any false "above/below" in it stays at the level. Differences without a p-value
    are left out of the family and keep ``family == 0``."""
    diffs = [(d, i) for d, c in comparisons.items() for i, g in enumerate(c.groups) if g.difference is not None
             and math.isfinite(g.difference.p_value)]
    adjusted = holm([comparisons[d].groups[i].difference.p_value for d, i in diffs])  # type: ignore[union-attr]
    out = {d: list(c.groups) for d, c in comparisons.items()}
    for (d, i), p in zip(diffs, adjusted):
        g = out[d][i]
        out[d][i] = dataclasses.replace(g, difference=dataclasses.replace(g.difference, p_adjusted=p,
                                                                          family=len(diffs)))
    return {d: dataclasses.replace(c, groups=tuple(out[d])) for d, c in comparisons.items()}
