"""Table 1's rows as the sweep ran them: one row per distinct configuration of a method, or, where a
row is a pick among trials by the sweep's (validation) metric, a row that says so and the others
listed under the table.

A method's trials that differ in a hyperparameter the sweep *fixed per trial* (grid points, variants:
CAAD's ``a = 0.5, 1, 2``) are rows of their own, named by the values that differ. Hyperparameters the
search *sampled* (``search.space`` of an Optuna or random sweep) do not split rows: every trial would
be its own row; the row is then the best of its n trials by validation, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pldistill.results.space import _finite
from pldistill.results.tables import ScoreTable, _method_order, _ranked, method_label, method_table

__all__ = ["configuration_labeller", "metric_words", "named_method_table", "reference_row"]

#: Short names in a row's label (CAAD's paper calls its contrast strength ``a``).
_SHORT = {"caad_contrast": "a", "temperature": "t"}
#: Already in the row's name (``method_label``): the objective, and the pseudo target.
_NAMED = frozenset({"objective", "pseudo_target"})


def metric_words(metric: str) -> str:
    """``val_ua`` -> ``val UA``: how a row names the metric it was picked by."""
    split, _, name = metric.partition("_")
    return f"{split} {name.upper() if name in ('ua', 'wa', 'f1', 'conflict_ua') else name}".replace("_", " ")


def _sampled(meta: Mapping[str, Any] | None) -> set[str] | None:
    """The hyperparameters the search sampled (``search.space``); None: the sweep records no search
    section, so nothing says which values were fixed per trial."""
    config = (meta or {}).get("config")
    search = config.get("search") if isinstance(config, Mapping) else None
    if not isinstance(search, Mapping):
        return None
    return set(search.get("space") or {})


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _varied(rows: Sequence[Mapping[str, Any]], sampled: set[str] | None) -> dict[str, list[str]]:
    """Objective -> the hyperparameters its trials were run with more than one value of, that the
    search did not sample and the row's name does not already carry."""
    from pldistill.losses import OBJECTIVES

    if sampled is None:
        return {}
    values: dict[str, dict[str, set[str]]] = {}
    for r in rows:
        objective = str(r.get("objective") or r.get("hp_objective"))
        for col, v in r.items():
            if col.startswith("hp_") and v is not None:
                values.setdefault(objective, {}).setdefault(col[3:], set()).add(repr(v))
    out = {}
    for objective, hps in values.items():
        ablations = OBJECTIVES[objective].ablations if objective in OBJECTIVES else {}
        keep = []
        for h, vs in sorted(hps.items()):
            if h in _NAMED or h in sampled:
                continue
            # an ablation weight's 0 is in the name already ("w/o ..."): only other values distinguish
            distinct = {v for v in vs if not (h in ablations and v in ("0.0", "0"))}
            if len(distinct) > 1:
                keep.append(h)
        out[objective] = keep
    return out


def configuration_labeller(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None
                           ) -> tuple[Callable[[Mapping[str, Any]], str | None], list[str]]:
    """A trial's Table 1 row (its method's label, plus the fixed hyperparameters its method's trials
    differ in: ``CAAD (gold target, a = 0.5)``), and the rows' order (the paper's, then the values)."""
    varied = _varied(rows, _sampled(meta))

    def label_of(row: Mapping[str, Any]) -> str | None:
        base = method_label(row)
        hps = varied.get(str(row.get("objective") or row.get("hp_objective"))) or []
        if base is None or not hps:
            return base
        words = ", ".join(f"{_SHORT.get(h, h)} = {_fmt(row.get(f'hp_{h}'))}" for h in hps)
        return f"{base[:-1]}, {words})" if base.endswith(")") else f"{base} ({words})"

    def sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
        hps = varied.get(str(row.get("objective") or row.get("hp_objective"))) or []
        vals = [row.get(f"hp_{h}") for h in hps]
        return tuple((0, float(v), "") if _finite(v) else (1, 0.0, str(v)) for v in vals)

    paper = _method_order()
    labelled = [(label_of(r), method_label(r), r) for r in rows]
    ranked = sorted((x for x in labelled if x[0] is not None),
                    key=lambda x: (paper.index(x[1]) if x[1] in paper else len(paper), str(x[1]), sort_key(x[2])))
    return label_of, list(dict.fromkeys(str(x[0]) for x in ranked))


def named_method_table(rows: Sequence[Mapping[str, Any]], metric: str, mode: str,
                       meta: Mapping[str, Any] | None) -> tuple[ScoreTable, list[str]]:
    """Table 1 with a row per configuration; a row that picks among several trials by ``metric`` says
    so in its name (``PL-Distill (best of 5 by val UA)``). Also the lines listing, under the table, the
    trials each pick passed over (with the hyperparameters they differ in)."""
    label_of, order = configuration_labeller(rows, meta)
    table = method_table(rows, metric, mode, label_of=label_of, order=order)
    renamed, notes = {}, []
    for label, cells in table.rows.items():
        ns = {d: c.n_trials for d, c in cells.items()}
        if label == "Teacher" or max(ns.values()) < 2:
            renamed[label] = cells
            continue
        n = (f"{next(iter(ns.values()))}" if len(set(ns.values())) == 1
             else ", ".join(f"{k} on {d}" for d, k in ns.items()))
        name = f"{label[:-1]}; " if label.endswith(")") else f"{label} ("
        name += f"best of {n} by {metric_words(metric)})"
        renamed[name] = cells
        for d, cell in cells.items():
            group = [r for r in rows if label_of(r) == label and str(r.get("dataset")) == d]
            notes += _pick_note(name, d, cell.trial_id, _ranked(group, metric, mode), metric)
    table.rows = renamed
    return table, notes


def _unread(objective: Any) -> frozenset[str]:
    """Loss hyperparameters ``objective`` does not read: a search samples alpha for every trial, but an
    SFT pick that "differs in alpha" differs in nothing it trained with."""
    from pldistill.losses import OBJECTIVES

    if objective not in OBJECTIVES:
        return frozenset()
    every = frozenset().union(*(o.reads() for o in OBJECTIVES.values()))
    return every - OBJECTIVES[objective].reads()


#: Runners-up a pick note names, best first (the rest as a count and the lowest score).
PICKED_OVER_SHOWN = 3


def _pick_note(name: str, dataset: str, picked: str, ranked: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    """One line: the trial a row shows and the ones it was picked over, with the hyperparameters they
    differ in."""
    if len(ranked) < 2:
        return []
    hps = sorted(c for c in ranked[0] if c.startswith("hp_") and c[3:] not in _unread(ranked[0].get("objective"))
                 and len({repr(r.get(c)) for r in ranked}) > 1)

    def one(r: Mapping[str, Any]) -> str:
        what = ", ".join(f"{h[3:]} {_fmt(r.get(h))}" for h in hps)
        return f"`{r['trial_id']}` ({metric} {float(r[metric]):.4f}" + (f"; {what})" if what else ")")

    top = next(r for r in ranked if str(r["trial_id"]) == picked)
    rest = [r for r in ranked if str(r["trial_id"]) != picked]
    others = [one(r) for r in rest[:PICKED_OVER_SHOWN]]
    if len(rest) > PICKED_OVER_SHOWN:  # a search's 40 runners-up in one line hid the pick; the tail in one figure
        others.append(f"and {len(rest) - PICKED_OVER_SHOWN} more ({metric} down to {float(rest[-1][metric]):.4f})")
    return [f"- {name}, {dataset}: {one(top)} picked over {', '.join(others)}"]


def reference_row(table: ScoreTable, label: str) -> str:
    """The row of ``table`` that stands for method ``label`` (its exact row, else the first of its
    configurations or picks); ``label`` itself when there is none."""
    if label in table.rows:
        return label
    return next((k for k in table.rows if k.startswith(f"{label} (")), label)
