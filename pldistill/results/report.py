"""A sweep's report: the paper's tables, the best trials, Optuna's importances, as Markdown + PNGs.

:func:`build_report` reads a sweep through the results API into a :class:`SweepReport` (the data
comes from :mod:`pldistill.results.tables` and :mod:`pldistill.results.space`);
:func:`render_markdown` turns it into ``report.md``; :func:`write_report` writes that and the plots
of :mod:`pldistill.results._plots` into a folder that appears whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pldistill._fs import atomic_dir
from pldistill.errors import InputError
from pldistill.results.compare import ClipPredictions, Comparison
from pldistill.results.protocol import SweepProtocol, caption_lines, protocol_lines, sweep_protocol
from pldistill.results.query import best_trials, sweep_status
from pldistill.results.space import ParamSpec, _finite, searched_params
from pldistill.results.stats import (
    difference_verdict,
    format_difference,
    format_estimate,
    format_p,
    interval_legend,
)
from pldistill.results.status import describe_counts
from pldistill.results.store import list_sweeps, read_sweep_metas, read_trials
from pldistill.results.tables import (
    HistoryPoint,
    ScoreTable,
    ablation_table,
    differences,
    history,
    method_labels,
    param_importances,
    selection,
    teacher_scoring,
)
from pldistill.results.tuning import TuningCurves, tuning_curves, tuning_markdown
from pldistill.results.variants import named_method_table, reference_row

#: Table 2's rows are compared with LDist, the logit-only base PL-Distill adds its term to.
ABLATION_REFERENCE = "LDist"
#: The score the paired differences compare.
DIFFERENCE_SCORE = "test_ua"

__all__ = ["SweepReport", "build_report", "check_sweep", "render_markdown", "write_report"]


def check_sweep(root: str | Path, name: str) -> None:
    """InputError unless ``root`` holds sweep ``name``; the message lists the sweeps that exist."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, None, "no results folder here (run a sweep, or pass --results DIR)")
    known = list_sweeps(root)
    if name not in known:
        raise InputError(root, "sweep", f"unknown sweep {name!r}; sweeps here: {', '.join(known) or 'none'}")


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
    history: list[HistoryPoint]
    importances: dict[str, float] | None
    importances_note: str
    rows: list[dict[str, Any]]
    reference: str = "sft"
    diffs1: dict[str, Comparison] | None = None
    diffs2: dict[str, Comparison] | None = None
    test_selected: bool = False
    #: What was run (from the trials' resolved configs), and Table 1's best-of-n picks with the others.
    protocol: SweepProtocol = field(default_factory=SweepProtocol)
    picks1: list[str] = field(default_factory=list)
    tuning: TuningCurves | None = None


def _clip_loader(root: Path, name: str):
    """``(trial_id, run) -> (y_true, y_pred)`` from the run's saved test predictions (sorted by clip
    key, so two trials of one fold line up), or None where the file is missing."""
    import pyarrow.parquet as pq

    def load(trial_id: str, run: Mapping[str, Any]) -> ClipPredictions | None:
        path = (root / name / "runs" / trial_id / f"seed_{run.get('seed')}" / f"fold_{run.get('fold')}" / "best"
                / "test_predictions.parquet")
        if not path.is_file():
            return None
        rows = sorted(pq.read_table(path, columns=["key", "label", "pred"]).to_pylist(), key=lambda r: r["key"])
        return [r["label"] for r in rows], [r["pred"] for r in rows]

    return load


def build_report(root: str | Path, name: str, *, top: int = 5, reference: str = "sft") -> SweepReport:
    """Read sweep ``name`` under ``root`` (through the results API) into a :class:`SweepReport`;
    ``reference`` is the objective every Table 1 row is compared with."""
    check_sweep(root, name)
    table = read_trials(root, name)
    rows = table.to_pylist()
    meta = next((m for m in read_sweep_metas(root) if m.get("name") == name), None)
    metric, mode = selection(meta, table.column_names)
    status = next(r for r in sweep_status(root).to_pylist() if r["sweep"] == name)
    best = best_trials(root, metric=metric, mode=mode, sweep=name, top=top).to_pylist() if any(
        r.get("status") == "completed" and _finite(r.get(metric)) for r in rows) else []
    params, source = searched_params(meta, rows)
    params = [p for p in params if f"hp_{p.name}" in table.column_names]
    imp, note = param_importances(rows, params, metric, mode)
    labels = method_labels()
    if reference not in labels:
        raise InputError(None, "--reference", f"unknown objective {reference!r}; valid: {', '.join(labels)}")
    (table1, picks1), table2 = named_method_table(rows, metric, mode, meta), ablation_table(rows, metric, mode)
    ref = reference_row(table1, labels[reference])
    clips = _clip_loader(Path(root), name)
    search = ((meta or {}).get("config") or {}).get("search") or {}
    return SweepReport(name, metric, mode, status, table1, table2, best, params, source, history(rows, metric, mode),
                       imp, note, rows, reference=ref,
                       diffs1=differences(table1, ref, DIFFERENCE_SCORE, clips),
                       diffs2=differences(table2, ABLATION_REFERENCE, DIFFERENCE_SCORE, clips),
                       test_selected=bool(search.get("allow_test_selection")) or str(metric).startswith("test_"),
                       protocol=sweep_protocol(rows), picks1=picks1,
                       tuning=tuning_curves(rows, meta, metric, mode))


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
    # Every row says how many seeds its trial ran and why no more (search.replicates), per dataset.
    head = ["Method"] + [f"{d} {short[m]}" for d in t.datasets for m in t.metrics] + [f"{d} seeds" for d in t.datasets]
    body = [[label] + [format_estimate(cells[d].estimate(m), digits=2, scale=100, marker=True) if d in cells else "–"
                       for d in t.datasets for m in t.metrics]
            + [(cells[d].seeds or "–") if d in cells and label != "Teacher" else "" for d in t.datasets]
            for label, cells in t.rows.items()]
    kinds = {c.estimate(m).kind for cells in t.rows.values() for c in cells.values() for m in t.metrics}
    lines = _md_table(head, body) + _legend(kinds)
    for label, cells in t.rows.items():
        lines += [f"- {label}, {d}: trial `{c.trial_id}`" + (f" (best of {c.n_trials})" if label != "Teacher" else "")
                  for d, c in cells.items()]
    return lines + [""]


def _legend(kinds: set[str]) -> list[str]:
    """The interval markers used in a table, one line each."""
    lines = interval_legend(kinds)
    return ["Intervals: " + "; ".join(lines) + ".", ""] if lines else []


def _md_differences(diffs: dict[str, Comparison] | None, reference: str) -> list[str]:
    """Each row's paired difference to ``reference`` per dataset (test UA, points), with its CI, its
    p-values (raw and Holm-adjusted within the table) and the verdict from the adjusted one."""
    if not diffs:
        return [f"No paired differences: no `{reference}` row to compare with.", ""]
    datasets = list(diffs)
    labels = list(dict.fromkeys(g.group for c in diffs.values() for g in c.groups if g.group != reference))
    found = [g.difference for c in diffs.values() for g in c.groups if g.difference is not None]
    body = []
    for label in labels:
        cells = []
        for d in datasets:
            g = next((g for g in diffs[d].groups if g.group == label), None)
            if g is None or g.difference is None:
                cells.append("–")
                continue
            p = format_p(g.difference)
            cells.append(f"{format_difference(g.difference, digits=2, scale=100, marker=True)}"
                         f"{f' {p}' if p else ''}: {difference_verdict(g.difference, reference)}")
        body.append([label, *cells])
    family = max((x.family for x in found), default=0)
    holm = (f"Verdicts use Holm-adjusted p-values over the {family} comparison{'s' if family != 1 else ''} of this "
            f"table with a p-value (every row x dataset against {reference}); both p-values are shown."
            if family else "No comparison in this table has a p-value, so there is no multiple-comparison adjustment.")
    methods = sorted({x.method for x in found})
    return (_md_table(["Method", *(f"{d}: test UA − {reference} (points)" for d in datasets)], body)
            + _legend({x.kind for x in found if x.has_interval}) + [holm, ""] + [f"How: {m}." for m in methods] + [""])


def render_markdown(r: SweepReport, plots: Mapping[str, str | None]) -> str:
    """``report.md``: ``plots`` maps ``metric_vs_params``/``history``/``importances`` to a PNG name (or None)."""
    short = {"test_ua": "UA", "test_wa": "WA", "test_f1": "F1", "test_conflict_ua": "UA (conflict clips)"}
    s = r.status
    out = [f"# Sweep report: {r.name}", ""]
    if r.test_selected:
        out += ["> **Selected on test.** This sweep's selection metric is a test metric (`allow_test_selection`): "
                "every test figure below was used to choose trials and is biased upwards; it is not a held-out "
                "estimate.", ""]
    out += [
           f"Status {s.get('status') or 'unknown'}: {s['total']} trials ({describe_counts(s)}). "
           f"Selection metric: `{r.metric}` ({r.mode}).", "",
           f"Each cell shows the test scores (%) of the completed trial of that cell that is best by `{r.metric}` "
           f"({r.mode}; ties go to the lower trial id) as mean ± half-width of the 95% t interval over the trial's "
           f"(seed, fold) runs (the mean of its fold means), with n and a marker naming the interval (legend under "
           f"each table). Trials whose `{r.metric}` is missing or NaN are left out. The teacher row "
           "shows the teacher's own test scores (one run per fold: it is the same for every seed) as recorded by "
           f"the dataset's best trial. Students are scored closed-set (the most likely label's answer); the "
           f"teacher row by {teacher_scoring(r.rows)}.", "", *protocol_lines(r.protocol), "",
           "## Table 1: methods x datasets", ""]
    if r.table1.rows:
        out += [*caption_lines(r.protocol, r.table1.rows, teachers=True), ""]
        out += _md_scores(r.table1, short)
        if r.picks1:
            out += [f"Rows picked among several trials by `{r.metric}`; the trials each passed over:", *r.picks1, ""]
        out += [f"### Paired differences to {r.reference}", ""] + _md_differences(r.diffs1, r.reference)
    else:
        out += [f"Omitted: no completed trial with a finite `{r.metric}`.", ""]
    out += ["## Table 2: ablation", ""]
    if len(r.table2.rows) >= 2:
        out += [*caption_lines(r.protocol, r.table2.rows), ""]
        out += _md_scores(r.table2, short)
        out += [f"### Paired differences to {ABLATION_REFERENCE}", ""] + _md_differences(r.diffs2, ABLATION_REFERENCE)
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
            else "No plot: no completed trial.", ""]
    if any(h.pruned for h in r.history):
        out += ["Hollow points in both plots are pruned trials (the scheduler stopped them): their score is their "
                "last epoch's, and they never set the best so far.", ""]
    out += ["## Hyperparameter importances (Optuna)", ""]
    if r.importances is None:
        out += [f"Not computed: {r.importances_note}.", ""]
    else:
        out += [f"`optuna.importance.get_param_importances` (Optuna's default evaluator) on a study rebuilt from "
                f"{r.importances_note}, target `{r.metric}`.", ""]
        out += _md_table(["hyperparameter", "importance"], [[f"`{k}`", f"{v:.3f}"] for k, v in r.importances.items()])
        if plots.get("importances"):
            out += [f"![importances]({plots['importances']})", ""]
    if r.tuning is not None:
        out += tuning_markdown(r.tuning, plots.get("tuning_curves"))
    return "\n".join(out)


def write_report(root: str | Path, name: str, out: str | Path | None = None, *, top: int = 5,
                 reference: str = "sft") -> Path:
    """Write ``report.md`` and its PNGs for sweep ``name`` into ``out`` (default
    ``<root>/<name>/report``), atomically: built in a temp folder beside it, then renamed into place.
    An existing ``out`` is replaced only if it is a report (holds ``report.md``) or empty."""
    from pldistill.results._plots import write_plots

    report = build_report(root, name, top=top, reference=reference)
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
