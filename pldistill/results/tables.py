"""The paper's tables and the other figures of a sweep, as data: pure functions over trial rows.

Rows are the dicts of :func:`~pldistill.results.read_trials`. Which trial a cell shows: the
completed trials of the cell (method x dataset, or ablation row x dataset) are ranked by the
sweep's own metric and mode (``sweep.json``; ``val_ua``/max when it names none or names a column
the trials lack), ties broken by ``trial_id`` as ``best`` does; the cell shows that trial's *test*
scores, which are already means over the trial's folds. :mod:`pldistill.results.report` renders them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pldistill.results.compare import ClipPredictions, Comparison, adjust_holm, compare_groups
from pldistill.results.query import default_mode, rank_key
from pldistill.results.space import ParamSpec, _finite
from pldistill.results.stats import Estimate, importance_support, mean_ci, runs_estimate

__all__ = ["method_label", "method_labels", "differences", "Cell", "ScoreTable", "ablation_label", "ablation_table", "best_cell", "HistoryPoint", "history",
           "method_table", "param_importances", "selection"]

_DEFAULT_METRIC = "val_ua"


def method_labels() -> dict[str, str]:
    """Objective -> its row in Table 1, in registration order (the paper's). The names and labels
    are registered with the losses (``pldistill.losses.OBJECTIVES``), so a new objective needs no
    entry here."""
    from pldistill.losses import OBJECTIVES

    return {name: o.label for name, o in OBJECTIVES.items()}


def method_label(row: Mapping[str, Any]) -> str | None:
    """A trial's row in Table 1: its objective's label, plus the objective's registered ablations whose
    weight the trial set to 0 (``EmoDistill w/o prosodic teacher``: the single-teacher variants are
    rows of their own); None for an unknown objective."""
    from pldistill.losses import OBJECTIVES

    spec = OBJECTIVES.get(str(row.get("objective") or row.get("hp_objective")))
    if spec is None:
        return None
    label = spec.method_label({h: _hp(row, h) for h in spec.ablations})
    target = _hp(row, "pseudo_target")
    # Whether CAAD's Stage 1 ran (its teacher forced on a pseudo ground truth from the clip's audio) is
    # part of the method, so it is in the name; another objective names a metadata target only if set.
    if spec.name == "caad" or target != "label":
        label += f" ({_TARGET_WORDS.get(str(target), f'{target} target')})"
    return label


#: ``pseudo_target`` -> the words a Table 1 row carries: CAAD's Stage 1 (a pseudo ground truth composed
#: from the clip's audio) runs under ``metadata``; ``label`` forces the teacher on the gold answer.
_TARGET_WORDS = {"label": "gold target", "metadata": "metadata target"}


def _method_order() -> list[str]:
    """Table 1's row order: registration order, each objective followed by its ablation rows, each of
    those by its pseudo-target rows."""
    from pldistill.losses import OBJECTIVES

    return [label + target for o in OBJECTIVES.values()
            for label in (o.label, *(f"{o.label} {words}" for words in o.ablations.values()))
            for target in ("", *(f" ({words})" for words in _TARGET_WORDS.values()))]


def _weighted_terms(objective: str) -> list[tuple[str, str]]:
    """(hyperparameter, term label) of each term ``objective`` weights by a hyperparameter: a zero
    weight switches that term off (Table 2's "w/o" rows)."""
    from pldistill.losses import OBJECTIVES, TERMS

    return [(h, TERMS[t].label) for t, h in OBJECTIVES[objective].weights.items() if h is not None]


@dataclass
class Cell:
    """The trial a table cell shows, its scores (fractions, means over its runs), how many trials
    shared the cell, and its (seed, fold) runs (``fold_metrics`` rows) for the uncertainty."""

    trial_id: str
    scores: dict[str, float | None]
    n_trials: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: How many seeds the trial ran and why no more (``seeds_used``/``seeds_stop``: ``precision``,
    #: ``cap`` or ``fixed``), e.g. ``"5 (precision)"``; empty for rows from before those columns.
    seeds: str = ""

    def estimate(self, score: str) -> Estimate:
        """Mean of ``score`` over the runs with its 95% t interval (stratified by fold: see
        :func:`~pldistill.results.stats.stratified_mean_ci`); a trial whose runs do not record
        ``score`` (older rows) gives its mean alone, n = 1."""
        est = runs_estimate(self.runs, score)
        return est if est.n else mean_ci([self.scores.get(score)])


@dataclass
class ScoreTable:
    """Rows x datasets; ``rows[label][dataset]`` is a :class:`Cell` (absent: no trial there)."""

    datasets: list[str]
    metrics: list[str]
    rows: dict[str, dict[str, Cell]] = field(default_factory=dict)


def selection(meta: Mapping[str, Any] | None, columns: Sequence[str]) -> tuple[str, str]:
    """(metric, mode) that picks a cell's trial: the sweep's own when the trials have that column."""
    metric = (meta or {}).get("metric")
    if not isinstance(metric, str) or metric not in columns:
        metric = _DEFAULT_METRIC
    mode = (meta or {}).get("mode")
    return metric, mode if mode in ("max", "min") else default_mode(metric)


def _ranked(rows: Sequence[Mapping[str, Any]], metric: str, mode: str) -> list[Mapping[str, Any]]:
    """Completed rows with a finite ``metric``, best first, ties broken by :func:`rank_key` (as ``best``)."""
    done = [r for r in rows if r.get("status") == "completed" and _finite(r.get(metric))]
    return sorted(done, key=lambda r: rank_key(r[metric], str(r["trial_id"]), mode, str(r.get("sweep") or "")))


def best_cell(rows: Sequence[Mapping[str, Any]], metric: str, mode: str, scores: Sequence[str]) -> Cell | None:
    """The best of ``rows`` by ``metric``/``mode`` and its ``scores`` columns; None if none qualifies."""
    ranked = _ranked(rows, metric, mode)
    if not ranked:
        return None
    top = ranked[0]
    return Cell(str(top["trial_id"]), {s: top.get(s) for s in scores}, len(ranked), list(top.get("fold_metrics") or []),
                seeds_text(top))


def seeds_text(row: Mapping[str, Any]) -> str:
    """``"<seeds used> (<why no more>)"`` of a trial row: ``precision`` (its validation interval was
    narrow enough), ``cap`` (``max_seeds`` reached first) or ``fixed`` (a fixed list); "" if unrecorded."""
    used = row.get("seeds_used") or len(row.get("seeds") or []) or None
    return "" if used is None else f"{used}" + (f" ({row['seeds_stop']})" if row.get("seeds_stop") else "")


def _hp(row: Mapping[str, Any], name: str) -> Any:
    value = row.get(f"hp_{name}")
    if value is None:
        from pldistill.config import Hyperparameters

        value = Hyperparameters.model_fields[name].default
    return value


def ablation_label(row: Mapping[str, Any]) -> str | None:
    """Table 2's row of a trial: LDist, LDist + PDist (CKA / AwCKA ...), with "w/o <term>" for every
    loss weight set to 0; None for objectives outside the ablation (SFT, KL baselines, LLaVA-KD)."""
    objective = row.get("objective") or row.get("hp_objective")
    from pldistill.losses import WEIGHTINGS

    if objective == "ldist":
        label = "LDist"
    elif objective == "pl_distill":
        weighting = str(_hp(row, "weighting"))
        kind = WEIGHTINGS.get(weighting, weighting)
        if _hp(row, "cka_estimator") == "debiased":
            kind += ", debiased"
        label = f"LDist + PDist ({kind})"
    else:
        return None
    terms = _weighted_terms(objective)
    off = [term for name, term in terms if _finite(_hp(row, name)) and float(_hp(row, name)) == 0.0]
    return label + "".join(f" w/o {t}" for t in off)


def _table(rows: Sequence[Mapping[str, Any]], label_of: Any, order: Sequence[str], metric: str, mode: str,
           scores: Sequence[str]) -> ScoreTable:
    datasets = sorted({str(r["dataset"]) for r in rows if r.get("dataset") is not None})
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        label = label_of(r)
        if label is not None and r.get("dataset") is not None:
            groups.setdefault((label, str(r["dataset"])), []).append(r)
    table = ScoreTable(datasets=datasets, metrics=list(scores))
    labels = sorted({k[0] for k in groups}, key=lambda s: (order.index(s) if s in order else len(order), s))
    for label in labels:
        cells = {d: best_cell(groups.get((label, d), []), metric, mode, scores) for d in datasets}
        kept = {d: c for d, c in cells.items() if c is not None}
        if kept:
            table.rows[label] = kept
    return table


def method_table(rows: Sequence[Mapping[str, Any]], metric: str, mode: str,
                 label_of: Callable[[Mapping[str, Any]], str | None] | None = None,
                 order: Sequence[str] | None = None) -> ScoreTable:
    """Table 1: objective x dataset, test UA/WA/F1, plus the row ``Teacher`` (the teacher's test
    scores as recorded by each dataset's best trial overall). ``label_of``/``order``: a trial's row and
    the rows' order (default :func:`method_label`, the paper's order; :mod:`.variants` names each
    configuration a sweep ran)."""
    # Where the corpus marks conflict clips (words of another emotion than the voice), their UA
    # stands beside the overall scores: how much a model follows the words instead of the voice.
    scores = ("test_ua", "test_wa", "test_f1") + (
        ("test_conflict_ua",) if any(_finite(r.get("test_conflict_ua")) for r in rows) else ())
    table = _table(rows, label_of or method_label, order or _method_order(), metric, mode, scores)
    teacher: dict[str, Cell] = {}
    for d in table.datasets:
        # among trials that recorded the audio teacher (a classifier-family trial has EmoDistill's own)
        best = best_cell([r for r in rows if r.get("dataset") == d and _finite(r.get("teacher_test_ua"))], metric,
                         mode, tuple(f"teacher_{s}" for s in scores))
        if best is not None and any(_finite(v) for v in best.scores.values()):
            # one run per fold: the teacher is the fold's, the same for every seed
            per_fold = {r["fold"]: {k[len("teacher_"):]: r.get(k) for k in best.scores} for r in best.runs}
            runs = [{"fold": f, **v} for f, v in per_fold.items() if any(_finite(x) for x in v.values())]
            teacher[d] = Cell(best.trial_id, {k[len("teacher_"):]: v for k, v in best.scores.items()}, 1, runs)
    if teacher and table.rows:
        table.rows = {"Teacher": teacher, **table.rows}
    return table


def teacher_scoring(rows: Sequence[Mapping[str, Any]]) -> str:
    """How the teacher row's figures were obtained, from the trials' resolved configs: closed-set
    scoring (as every student row) or free generation matched to the labels."""
    import json

    modes = set()
    for r in rows:
        try:
            modes.add(json.loads(r.get("config_json") or "{}").get("model", {}).get("teacher_eval", "closed_set"))
        except ValueError:
            continue
    if modes == {"generate"}:
        return "free generation (greedy), the answer matched to a label"
    if "generate" in modes:
        return "mixed: some trials closed-set, some free generation"
    return "closed-set scoring, as every student row"


def ablation_table(rows: Sequence[Mapping[str, Any]], metric: str, mode: str) -> ScoreTable:
    """Table 2: ablation rows (:func:`ablation_label`) x dataset, test UA/WA."""
    order = ["LDist", "LDist + PDist (CKA)", "LDist + PDist (AwCKA)"]
    return _table(rows, ablation_label, order, metric, mode, ("test_ua", "test_wa"))


class HistoryPoint(NamedTuple):
    """One trial of the optimisation history: its score, the best completed score so far (NaN before
    the first completed trial) and whether the scheduler stopped it early."""

    trial_id: str
    value: float
    best: float
    pruned: bool


def history(rows: Sequence[Mapping[str, Any]], metric: str, mode: str) -> list[HistoryPoint]:
    """Completed and pruned trials with a finite ``metric``, in completion order (``ended_at``, then id).
    A pruned trial (ASHA stopped it) shows its score at its last epoch but never sets the best so far:
    the tables choose among completed trials only."""
    kept = [r for r in rows if r.get("status") in ("completed", "pruned") and _finite(r.get(metric))]
    kept.sort(key=lambda r: (r.get("ended_at") is None, r.get("ended_at") or 0, str(r["trial_id"])))
    out, best = [], math.nan
    for r in kept:
        v, pruned = float(r[metric]), r.get("status") == "pruned"
        if not pruned:
            best = v if math.isnan(best) else (max(best, v) if mode == "max" else min(best, v))
        out.append(HistoryPoint(str(r["trial_id"]), v, best, pruned))
    return out


def param_importances(rows: Sequence[Mapping[str, Any]], specs: Sequence[ParamSpec], metric: str,
                      mode: str) -> tuple[dict[str, float] | None, str]:
    """Optuna's importances of the sampled ``specs`` on a study rebuilt from the completed trials,
    or (None, why not)."""
    sampled = [s for s in specs if s.sampled]
    if not sampled:
        return None, "no searched hyperparameter takes more than one value"
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    dists = {s.name: s.distribution() for s in sampled}
    skipped = 0
    for r in _ranked(rows, metric, mode):
        params = {n: r.get(f"hp_{n}") for n in dists}
        try:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(r[metric])))
        except (ValueError, TypeError):  # a value outside the space (hand-edited sweep.json): leave it out
            skipped += 1
    n = len(study.trials)
    withheld = importance_support(n)
    if withheld is not None:
        return None, withheld
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "importances will be equal" on tiny studies
        found = optuna.importance.get_param_importances(study)
    note = f"{n} completed trials" + (f" ({skipped} outside the search space left out)" if skipped else "")
    return dict(found), note


def differences(table: ScoreTable, reference: str, score: str,
                clips: Callable[[str, Mapping[str, Any]], ClipPredictions | None] | None = None) -> dict[str, Comparison]:
    """Per dataset, each row's paired difference of ``score`` to the row ``reference``, over the
    (seed, fold) runs both cells' trials have (:func:`~pldistill.results.compare.compare_groups`);
    where fewer than 3 runs match, a clip-level paired bootstrap over the runs' test predictions
    (``clips(trial_id, run)`` gives a run's ``(y_true, y_pred)`` in key order, or None). The
    p-values are Holm-adjusted over every comparison of the table (all datasets): one family."""
    out: dict[str, Comparison] = {}
    for d in table.datasets:
        cells = {label: row[d] for label, row in table.rows.items() if d in row and label != "Teacher"}
        if reference not in cells:
            continue
        runs = [{"row": label, "seed": r.get("seed"), "fold": r.get("fold"), score: r.get(score)}
                for label, c in cells.items() for r in (c.runs or [{"fold": None, score: c.scores.get(score)}])]
        preds = None
        if clips is not None:
            preds = {}
            for label, c in cells.items():
                for r in c.runs:
                    got = clips(c.trial_id, r)
                    if got is not None:
                        preds[(label, (r.get("seed"), r.get("fold")))] = got
        out[d] = compare_groups(runs, score, group="row", reference=reference, order=list(table.rows), clips=preds)
    return adjust_holm(out)
