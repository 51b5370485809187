"""Replicate until decided: when a trial has run enough seeds.

A trial with ``train.replicates`` runs ``min_seeds`` seeds over all its folds, then one more seed at
a time (over all folds) until the stratified 95% interval of its validation selection metric is at
most ``half_width`` either side of the mean, or ``max_seeds`` seeds have run. :func:`decide` is the
rule, a pure function of the runs' figures; :func:`run_decision` applies it to a trial's finished
runs after each seed's last fold.

Precision only: the rule reads each run's best-epoch *validation* figure (``train.select_metric``,
which picked that epoch) and never a test figure, nor which configuration is ahead, so stopping
cannot favour a method. The interval is :func:`pldistill.results.stats.stratified_mean_ci`'s, the
one the reports print: folds are fixed strata, seeds the replicates inside them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

from pldistill.config import ReplicatesConfig, TrainConfig
from pldistill.results.stats import Estimate, stratified_mean_ci
from pldistill.train.loop import FoldResult

__all__ = ["StopReason", "Decision", "decide", "run_decision"]

#: Why a trial ran the seeds it ran: its interval was narrow enough (``precision``), it reached
#: ``max_seeds`` first (``cap``), or it had a fixed list of seeds and no rule (``fixed``). The results
#: schema spells them out as ``SEEDS_STOPS`` (a unit test checks they agree).
StopReason = Literal["precision", "cap", "fixed"]


@dataclass(frozen=True)
class Decision:
    """After a seed's last fold: whether the trial is done, why, and the interval it judged."""

    stop: bool
    reason: StopReason | None  # None while it goes on
    seeds: int  # seeds finished (over all folds)
    estimate: Estimate  # the selection metric's stratified interval over the finished runs

    @property
    def half_width(self) -> float:
        return self.estimate.half_width


def decide(values: Sequence[float | None], folds: Sequence[Hashable], seeds: int,
           rule: ReplicatesConfig | None, confidence: float = 0.95) -> Decision:
    """The rule, after ``seeds`` seeds have each run on every fold: ``values`` are the runs' validation
    figures, ``folds`` each run's fold (the strata).

    Without a rule the listed seeds are all there is (``fixed``). Below ``min_seeds`` it goes on; then
    it stops on ``precision`` once the interval's half-width is at most ``half_width`` (an interval
    that cannot be computed, from non-finite figures, is never precise), else on the ``cap`` at
    ``max_seeds``.
    """
    est = stratified_mean_ci(values, folds, confidence)
    if rule is None:
        return Decision(True, "fixed", seeds, est)
    if seeds >= rule.min_seeds and math.isfinite(est.half_width) and est.half_width <= rule.half_width:
        return Decision(True, "precision", seeds, est)
    if seeds >= rule.max_seeds:
        return Decision(True, "cap", seeds, est)
    return Decision(False, None, seeds, est)


def run_decision(train: TrainConfig, folds_per_seed: int, done: Sequence[FoldResult]) -> Decision | None:
    """:func:`decide` over a trial's finished runs (seeds outer, folds inner), or None when the last
    of them is not a seed's last fold (a trial only stops between seeds)."""
    if not done or len(done) % folds_per_seed:
        return None
    metric = train.select_metric
    values = [f.best.get(metric, math.nan) for f in done]
    seeds = len(done) // folds_per_seed
    last = seeds >= len(train.seed_sequence())  # every listed (or allowed) seed has run
    decision = decide(values, [f.fold for f in done], seeds, train.replicates)
    if train.replicates is None and not last:
        return Decision(False, None, seeds, decision.estimate)
    return decision
