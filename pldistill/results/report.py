"""A sweep's report: the paper's tables, the best trials, Optuna's importances, as Markdown + PNGs.

Everything here is a pure function over the rows of :func:`~pldistill.results.read_trials` (dicts),
except :func:`write_report`, which reads a sweep through the results API and writes
``report.md`` and the plots of :mod:`pldistill.results._plots` into a folder that appears whole.

Which trial a cell shows: the completed trials of the cell (method x dataset, or ablation row x
dataset) are ranked by the sweep's own metric and mode (``sweep.json``; ``val_ua``/max when it
names none or names a column the trials lack), ties broken by ``trial_id`` as ``best`` does; the
cell shows that trial's *test* scores, which are already means over the trial's folds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pldistill._fs import atomic_dir
from pldistill.errors import InputError
from pldistill.results.query import best_trials, default_mode, sweep_status
from pldistill.results.store import list_sweeps, read_sweep_metas, read_trials

__all__ = ["METHOD_LABELS", "Cell", "ScoreTable", "ParamSpec", "SweepReport", "ablation_label", "best_cell",
           "check_sweep", "history", "method_table", "ablation_table", "param_importances", "searched_params",
           "selection", "build_report", "render_markdown", "write_report"]

#: Table 1's names of the objectives (``pldistill.config.OBJECTIVE_NAMES``), in the paper's order.
METHOD_LABELS = {"sft": "SFT", "forward_kl": "Forward KL", "reverse_kl": "Reverse KL", "llava_kd": "LLaVA-KD",
                 "ldist": "LDist", "pl_distill": "PL-Distill"}
_WEIGHTING_LABELS = {"uniform": "CKA", "attention_last": "AwCKA", "attention_layers": "AwCKA, all layers",
                     "attention_sharpened": "AwCKA, sharpened"}
#: Loss weights whose zero switches a term off (eq. 8), and the term's name in Table 2.
_TERMS = (("alpha", "PDist"), ("beta", "KL(audio)"), ("gamma", "KL(response)"))
_DEFAULT_METRIC = "val_ua"


@dataclass
class Cell:
    """The trial a table cell shows, its scores (fractions) and how many trials shared the cell."""

    trial_id: str
    scores: dict[str, float | None]
    n_trials: int


@dataclass
class ScoreTable:
    """Rows x datasets; ``rows[label][dataset]`` is a :class:`Cell` (absent: no trial there)."""

    datasets: list[str]
    metrics: list[str]
    rows: dict[str, dict[str, Cell]] = field(default_factory=dict)


@dataclass
class ParamSpec:
    """One searched hyperparameter: ``kind`` float/int/categorical, as Optuna's distributions."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int = 1
    choices: list[Any] = field(default_factory=list)

    @property
    def sampled(self) -> bool:
        """More than one value is possible."""
        return len(self.choices) > 1 if self.kind == "categorical" else bool(self.high > self.low)  # type: ignore[operator]

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=self.step)  # type: ignore[arg-type]
        return FloatDistribution(float(self.low), float(self.high), log=self.log)  # type: ignore[arg-type]


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_sweep(root: str | Path, name: str) -> None:
    """InputError unless ``root`` holds sweep ``name``; the message lists the sweeps that exist."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, None, "no results folder here (run a sweep, or pass --results DIR)")
    known = list_sweeps(root)
    if name not in known:
        raise InputError(root, "sweep", f"unknown sweep {name!r}; sweeps here: {', '.join(known) or 'none'}")


def selection(meta: Mapping[str, Any] | None, columns: Sequence[str]) -> tuple[str, str]:
    """(metric, mode) that picks a cell's trial: the sweep's own when the trials have that column."""
    metric = (meta or {}).get("metric")
    if not isinstance(metric, str) or metric not in columns:
        metric = _DEFAULT_METRIC
    mode = (meta or {}).get("mode")
    return metric, mode if mode in ("max", "min") else default_mode(metric)


def _ranked(rows: Sequence[Mapping[str, Any]], metric: str, mode: str) -> list[Mapping[str, Any]]:
    """Completed rows with a finite ``metric``, best first, ties by trial_id (as ``best`` orders)."""
    done = [r for r in rows if r.get("status") == "completed" and _finite(r.get(metric))]
    sign = -1.0 if mode == "max" else 1.0
    return sorted(done, key=lambda r: (sign * float(r[metric]), str(r["trial_id"])))


def best_cell(rows: Sequence[Mapping[str, Any]], metric: str, mode: str, scores: Sequence[str]) -> Cell | None:
    """The best of ``rows`` by ``metric``/``mode`` and its ``scores`` columns; None if none qualifies."""
    ranked = _ranked(rows, metric, mode)
    if not ranked:
        return None
    top = ranked[0]
    return Cell(str(top["trial_id"]), {s: top.get(s) for s in scores}, len(ranked))


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
    if objective == "ldist":
        label, terms = "LDist", _TERMS[1:]
    elif objective == "pl_distill":
        weighting = str(_hp(row, "weighting"))
        kind = _WEIGHTING_LABELS.get(weighting, weighting)
        if _hp(row, "cka_estimator") == "debiased":
            kind += ", debiased"
        label, terms = f"LDist + PDist ({kind})", _TERMS
    else:
        return None
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


def method_table(rows: Sequence[Mapping[str, Any]], metric: str, mode: str) -> ScoreTable:
    """Table 1: objective x dataset, test UA/WA/F1, plus the row ``Teacher`` (the teacher's test
    scores as recorded by each dataset's best trial overall)."""
    label_of = lambda r: METHOD_LABELS.get(str(r.get("objective") or r.get("hp_objective")))  # noqa: E731
    table = _table(rows, label_of, list(METHOD_LABELS.values()), metric, mode, ("test_ua", "test_wa", "test_f1"))
    teacher: dict[str, Cell] = {}
    for d in table.datasets:
        best = best_cell([r for r in rows if r.get("dataset") == d], metric, mode,
                         ("teacher_test_ua", "teacher_test_wa", "teacher_test_f1"))
        if best is not None and any(_finite(v) for v in best.scores.values()):
            teacher[d] = Cell(best.trial_id, {k[len("teacher_"):]: v for k, v in best.scores.items()}, 1)
    if teacher and table.rows:
        table.rows = {"Teacher": teacher, **table.rows}
    return table


def ablation_table(rows: Sequence[Mapping[str, Any]], metric: str, mode: str) -> ScoreTable:
    """Table 2: ablation rows (:func:`ablation_label`) x dataset, test UA/WA."""
    order = ["LDist", "LDist + PDist (CKA)", "LDist + PDist (AwCKA)"]
    return _table(rows, ablation_label, order, metric, mode, ("test_ua", "test_wa"))


def _space_spec(name: str, domain: Mapping[str, Any]) -> ParamSpec:
    kind = domain.get("type")
    if kind == "choice":
        return ParamSpec(name, "categorical", choices=list(domain["values"]))
    if kind == "int":
        return ParamSpec(name, "int", domain["low"], domain["high"], bool(domain.get("log")), int(domain.get("step", 1)))
    return ParamSpec(name, "float", domain["low"], domain["high"], log=kind == "loguniform")


def _observed_spec(name: str, values: list[Any]) -> ParamSpec:
    if values and all(_finite(v) for v in values):
        kind = "int" if all(isinstance(v, int) for v in values) else "float"
        return ParamSpec(name, kind, min(values), max(values))
    return ParamSpec(name, "categorical", choices=sorted(set(values), key=repr))


def searched_params(config: Mapping[str, Any] | None, rows: Sequence[Mapping[str, Any]]) -> tuple[list[ParamSpec], str]:
    """The searched hyperparameters and where they came from: ``search.space`` domains and ``grid``
    axes of the sweep config, the hyperparameters its ``variants`` set differently (categorical over
    the values the trials hold), or, without a search section, the ``hp_*`` columns that vary."""
    search = (config or {}).get("search")
    observed = lambda n: [r.get(f"hp_{n}") for r in rows if r.get(f"hp_{n}") is not None]  # noqa: E731
    if isinstance(search, Mapping):
        specs = [_space_spec(n, d) for n, d in (search.get("space") or {}).items()]
        specs += [ParamSpec(n, "categorical", choices=list(v)) for n, v in (search.get("grid") or {}).items()]
        variants = [{k: v for k, v in dict(x).items() if k != "name"} for x in search.get("variants") or []]
        for key in sorted({k for v in variants for k in v}):
            if len({repr(v.get(key)) for v in variants}) > 1 and key not in {s.name for s in specs}:
                specs.append(ParamSpec(key, "categorical", choices=sorted(set(observed(key)), key=repr)))
        return specs, "the sweep's search section (sweep.json)"
    hp = sorted(c[3:] for r in rows for c in r if c.startswith("hp_"))
    specs = [_observed_spec(n, observed(n)) for n in dict.fromkeys(hp)]
    return [s for s in specs if s.sampled], "the trials' hp_* values (sweep.json has no search section)"


def history(rows: Sequence[Mapping[str, Any]], metric: str, mode: str) -> list[tuple[str, float, float]]:
    """(trial_id, value, best so far) of completed trials in completion order (``ended_at``, then id)."""
    done = [r for r in rows if r.get("status") == "completed" and _finite(r.get(metric))]
    done.sort(key=lambda r: (r.get("ended_at") is None, r.get("ended_at") or 0, str(r["trial_id"])))
    out, best = [], None
    for r in done:
        v = float(r[metric])
        best = v if best is None else (max(best, v) if mode == "max" else min(best, v))
        out.append((str(r["trial_id"]), v, best))
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
    if n < 2:
        return None, f"fewer than 2 completed trials with {metric} fit the search space ({n})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "importances will be equal" on tiny studies
        found = optuna.importance.get_param_importances(study)
    note = f"{n} completed trials" + (f" ({skipped} outside the search space left out)" if skipped else "")
    return dict(found), note


@dataclass
class SweepReport:
    """Everything a report shows."""

    name: str
    metric: str
    mode: str
    status: dict[str, Any]
    table1: ScoreTable
    table2: ScoreTable
    best: list[dict[str, Any]]
    params: list[ParamSpec]
    params_source: str
    history: list[tuple[str, float, float]]
    importances: dict[str, float] | None
    importances_note: str
    rows: list[dict[str, Any]]


def build_report(root: str | Path, name: str, *, top: int = 5) -> SweepReport:
    """Read sweep ``name`` under ``root`` (through the results API) into a :class:`SweepReport`."""
    check_sweep(root, name)
    table = read_trials(root, name)
    rows = table.to_pylist()
    meta = next((m for m in read_sweep_metas(root) if m.get("name") == name), None)
    metric, mode = selection(meta, table.column_names)
    status = next(r for r in sweep_status(root).to_pylist() if r["sweep"] == name)
    best = best_trials(root, metric=metric, mode=mode, sweep=name, top=top).to_pylist() if any(
        r.get("status") == "completed" and _finite(r.get(metric)) for r in rows) else []
    config = meta.get("config") if meta else None
    params, source = searched_params(config if isinstance(config, Mapping) else None, rows)
    params = [p for p in params if f"hp_{p.name}" in table.column_names]
    imp, note = param_importances(rows, params, metric, mode)
    return SweepReport(name, metric, mode, status, method_table(rows, metric, mode), ablation_table(rows, metric, mode),
                       best, params, source, history(rows, metric, mode), imp, note, rows)


def _pct(value: object) -> str:
    return f"{100 * float(value):.2f}" if _finite(value) else "–"  # type: ignore[arg-type]


def _num(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "nan"
    return "–" if value is None else str(value)


def _md_table(head: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in body] + [""]


def _md_scores(t: ScoreTable, short: dict[str, str]) -> list[str]:
    head = ["Method"] + [f"{d} {short[m]}" for d in t.datasets for m in t.metrics]
    body = [[label] + [_pct(cells[d].scores.get(m)) if d in cells else "–" for d in t.datasets for m in t.metrics]
            for label, cells in t.rows.items()]
    lines = _md_table(head, body)
    for label, cells in t.rows.items():
        lines += [f"- {label}, {d}: trial `{c.trial_id}`" + (f" (best of {c.n_trials})" if label != "Teacher" else "")
                  for d, c in cells.items()]
    return lines + [""]


def render_markdown(r: SweepReport, plots: Mapping[str, str | None]) -> str:
    """``report.md``: ``plots`` maps ``metric_vs_params``/``history``/``importances`` to a PNG name (or None)."""
    short = {"test_ua": "UA", "test_wa": "WA", "test_f1": "F1"}
    s = r.status
    out = [f"# Sweep report: {r.name}", "",
           f"Status {s.get('status') or 'unknown'}: {s['total']} trials ({s['completed']} completed, {s['failed']} "
           f"failed, {s['running']} running, {s['pruned']} pruned). Selection metric: `{r.metric}` ({r.mode}).", "",
           f"Each cell shows the test scores (%, means over the trial's folds) of the completed trial of that cell "
           f"that is best by `{r.metric}` ({r.mode}); ties go to the lower trial id. Trials whose `{r.metric}` is "
           "missing or NaN are left out. The teacher row shows the teacher's own test scores as recorded by the "
           "dataset's best trial.", "", "## Table 1: methods x datasets", ""]
    if r.table1.rows:
        out += _md_scores(r.table1, short)
    else:
        out += [f"Omitted: no completed trial with a finite `{r.metric}`.", ""]
    out += ["## Table 2: ablation", ""]
    if len(r.table2.rows) >= 2:
        out += _md_scores(r.table2, short)
    else:
        have = ", ".join(r.table2.rows) or "none"
        out += [f"Omitted: the sweep's completed trials cover fewer than two ablation rows (LDist, LDist + PDist "
                f"with CKA or AwCKA, loss terms switched off); covered: {have}.", ""]
    out += [f"## Best trials by `{r.metric}` ({r.mode})", ""]
    if r.best:
        cols = [r.metric, "test_ua", "test_wa", "test_f1", "teacher_test_ua", "teacher_test_wa", "teacher_test_f1"]
        cols = list(dict.fromkeys(cols))
        hps = [p.name for p in r.params] or sorted(c[3:] for c in r.best[0] if c.startswith("hp_"))
        body = [[str(b["rank"]), f"`{b['trial_id']}`", _num(b.get("objective")), _num(b.get("dataset"))]
                + [_num(b.get(c)) for c in cols] + [_num(b.get(f"hp_{h}")) for h in hps] for b in r.best]
        out += _md_table(["rank", "trial", "objective", "dataset", *cols, *hps], body)
    else:
        out += ["No completed trial yet.", ""]
    out += ["## Searched hyperparameters", "", f"From {r.params_source}: "
            + (", ".join(f"`{p.name}`" for p in r.params) or "none") + ".", ""]
    out += [f"![{r.metric} against each hyperparameter]({plots['metric_vs_params']})" if plots.get("metric_vs_params")
            else "No plot: no searched hyperparameter or no completed trial.", "",
            "## Optimisation history", ""]
    out += [f"![{r.metric} per trial in completion order, best so far]({plots['history']})" if plots.get("history")
            else "No plot: no completed trial.", "", "## Hyperparameter importances (Optuna)", ""]
    if r.importances is None:
        out += [f"Not computed: {r.importances_note}.", ""]
    else:
        out += [f"`optuna.importance.get_param_importances` (Optuna's default evaluator) on a study rebuilt from "
                f"{r.importances_note}, target `{r.metric}`.", ""]
        out += _md_table(["hyperparameter", "importance"], [[f"`{k}`", f"{v:.3f}"] for k, v in r.importances.items()])
        if plots.get("importances"):
            out += [f"![importances]({plots['importances']})", ""]
    return "\n".join(out)


def write_report(root: str | Path, name: str, out: str | Path | None = None, *, top: int = 5) -> Path:
    """Write ``report.md`` and its PNGs for sweep ``name`` into ``out`` (default
    ``<root>/<name>/report``), atomically: built in a temp folder beside it, then renamed into place.
    An existing ``out`` is replaced only if it is a report (holds ``report.md``) or empty."""
    from pldistill.results._plots import write_plots

    report = build_report(root, name, top=top)
    out = Path(out) if out is not None else Path(root) / name / "report"
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "report.md").is_file())):
        raise InputError(out, None, "exists and is not a report folder (no report.md); choose another --out")
    try:
        with atomic_dir(out) as tmp:
            plots = write_plots(report, tmp)
            (tmp / "report.md").write_text(render_markdown(report, plots), encoding="utf-8")
    except OSError as exc:
        raise InputError(out, None, f"cannot write the report here ({exc.strerror or exc})") from exc
    return out
