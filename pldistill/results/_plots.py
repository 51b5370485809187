"""The report's PNGs: metric against each searched hyperparameter, optimisation history, importances.

Matplotlib is imported inside the functions; figures are drawn on the non-interactive ``Agg``
canvas directly (no pyplot, so no global backend switch or figure registry): the report runs
without a display, in threads, and importing this module costs nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pldistill.results.space import ParamSpec, _finite

if TYPE_CHECKING:
    from pldistill.results.report import SweepReport

__all__ = ["write_plots"]

_DPI = 100


def _figure(size: tuple[float, float]) -> Any:
    """A figure on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    return True


def _param_axis(ax: Any, spec: ParamSpec, points: list[tuple[Any, float]], metric: str) -> None:
    """One panel: the metric of every completed trial against ``spec``'s value."""
    if spec.kind == "categorical":
        cats = list(dict.fromkeys([*spec.choices, *(v for v, _ in points)]))
        index = {repr(c): i for i, c in enumerate(cats)}
        xs = [index[repr(v)] for v, _ in points]
        ax.set_xticks(range(len(cats)), [str(c) for c in cats], rotation=20, fontsize=8)
        ax.set_xlim(-0.5, len(cats) - 0.5)
    else:
        xs = [float(v) for v, _ in points]
        if spec.log:
            ax.set_xscale("log")
    ax.scatter(xs, [y for _, y in points], s=22, alpha=0.8, color="tab:blue")
    ax.set_xlabel(spec.name)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)


def _params_figure(report: SweepReport, path: Path) -> bool:
    done = [r for r in report.rows if r.get("status") == "completed" and _finite(r.get(report.metric))]
    if not report.params or not done:
        return False
    n = len(report.params)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = _figure((4.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, spec in zip(axes.flat, report.params):
        points = [(r[f"hp_{spec.name}"], float(r[report.metric])) for r in done
                  if r.get(f"hp_{spec.name}") is not None]
        _param_axis(ax, spec, points, report.metric)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{report.name}: {report.metric} against each searched hyperparameter")
    return _save(fig, path)


def _history_figure(report: SweepReport, path: Path) -> bool:
    if not report.history:
        return False
    xs = list(range(1, len(report.history) + 1))
    fig = _figure((6.4, 4.0))
    ax = fig.subplots()
    ax.scatter(xs, [v for _, v, _ in report.history], s=22, color="tab:blue", label=f"{report.metric} per trial")
    ax.step(xs, [b for _, _, b in report.history], where="post", color="tab:red", label=f"best so far ({report.mode})")
    ax.set_xlabel("trial (completion order)")
    ax.set_ylabel(report.metric)
    ax.set_title(f"{report.name}: optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def _importances_figure(report: SweepReport, path: Path) -> bool:
    if not report.importances:
        return False
    names = list(report.importances)[::-1]  # most important at the top
    fig = _figure((6.4, 1.2 + 0.45 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [report.importances[n] for n in names], color="tab:green")
    ax.set_xlabel("importance (Optuna)")
    ax.set_title(f"{report.name}: hyperparameter importances for {report.metric}")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def _tuning_figure(report: SweepReport, path: Path) -> bool:
    """Each method's tuning curve over k = 1..n with its band, on integer ticks."""
    from matplotlib.ticker import MaxNLocator

    t = report.tuning
    if t is None or not t.curves:
        return False
    fig = _figure((6.4, 4.2))
    ax = fig.subplots()
    for i, c in enumerate(t.curves):
        color = f"C{i}"
        ks = range(1, c.n + 1)
        ax.fill_between(ks, c.lower, c.upper, color=color, alpha=0.18, linewidth=0)
        ax.plot(ks, c.point, color=color, marker="o", markersize=3, label=f"{c.method} (n={c.n})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(1, max(c.n for c in t.curves))
    ax.set_xlabel("k (random-search trials)")
    ax.set_ylabel(f"median best {t.metric} of k trials")
    ax.set_title(f"{report.name}: tuning curves, {round(100 * t.confidence)}% simultaneous bands")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def write_plots(report: SweepReport, folder: Path) -> dict[str, str | None]:
    """Write the PNGs into ``folder``; returns plot key -> file name, None where there is nothing to plot."""
    out: dict[str, str | None] = {}
    for key, draw in (("metric_vs_params", _params_figure), ("history", _history_figure),
                      ("importances", _importances_figure), ("tuning_curves", _tuning_figure)):
        name = f"{key}.png"
        out[key] = name if draw(report, folder / name) else None
    return out
