"""The report's PNGs: metric against each searched hyperparameter, optimisation history, importances,
tuning curves. Pruned trials appear in the first two, marked as such.

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

__all__ = ["FIGURES", "write_plots"]

_DPI = 100


def _figure(size: tuple[float, float]) -> Any:
    """A figure on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _log_ticks(axis: Any, spec: ParamSpec) -> None:
    """Readable ticks on a log axis that spans less than a few decades: powers of 2 for an integer
    (LoRA rank 2, 4, 8, 16), 1-2-5 steps for a float, plain numbers, and no minor labels (matplotlib
    labels every minor tick of a short log axis, and they overlap)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    base, subs = (2.0, (1.0,)) if spec.kind == "int" else (10.0, (1.0, 2.0, 5.0))
    axis.set_major_locator(LogLocator(base=base, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _numeric_axis(ax: Any, spec: ParamSpec, xs: list[float]) -> None:
    """The searched range, not just where the draws fell: where in the space the trials landed is part
    of what the panel says, and a short log axis would get one or two tick labels."""
    if spec.log:
        ax.set_xscale("log")
        _log_ticks(ax.xaxis, spec)
    elif spec.kind == "int":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if spec.low is None or spec.high is None:
        return
    low, high = min([float(spec.low), *xs]), max([float(spec.high), *xs])
    if spec.log and low > 0:
        pad = (high / low) ** 0.04
        ax.set_xlim(low / pad, high * pad)
    else:
        pad = 0.04 * (high - low)
        ax.set_xlim(low - pad, high + pad)


def _scatter(ax: Any, xs: list[float], ys: list[float], pruned: list[bool], label: str) -> None:
    """Completed trials as filled dots; pruned ones (ASHA stopped them; their score is their last
    epoch's) as hollow orange ones, so a reader sees them and does not take them for finished runs."""
    done = [i for i, p in enumerate(pruned) if not p]
    cut = [i for i, p in enumerate(pruned) if p]
    ax.scatter([xs[i] for i in done], [ys[i] for i in done], s=22, alpha=0.8, color="tab:blue", label=label)
    if cut:
        ax.scatter([xs[i] for i in cut], [ys[i] for i in cut], s=26, facecolors="none", edgecolors="tab:orange",
                   label="pruned (score at its last epoch)")


def _spread(slots: list[int]) -> list[float]:
    """x positions for points on category ``slots``: the points of one category side by side (a
    grid's trials that ignore a hyperparameter tie on it, and stacked dots read as one trial)."""
    seen: dict[int, int] = {}
    rank = []
    for s in slots:
        rank.append(seen.get(s, 0))
        seen[s] = rank[-1] + 1
    return [s + (0.0 if seen[s] == 1 else 0.25 * (r / (seen[s] - 1) - 0.5)) for s, r in zip(slots, rank)]


def _param_axis(ax: Any, spec: ParamSpec, points: list[tuple[Any, float, bool]], metric: str) -> None:
    """One panel: the metric of every completed or pruned trial against ``spec``'s value."""
    if spec.kind == "categorical":
        cats = list(dict.fromkeys([*spec.choices, *(v for v, _, _ in points)]))
        index = {repr(c): i for i, c in enumerate(cats)}
        xs = _spread([index[repr(v)] for v, _, _ in points])
        names = [str(c) for c in cats]
        ax.set_xticks(range(len(cats)), names, rotation=20 if max(map(len, names)) > 6 else 0, fontsize=8)
        ax.set_xlim(-0.5, len(cats) - 0.5)
    else:
        xs = [float(v) for v, _, _ in points]
        _numeric_axis(ax, spec, xs)
    _scatter(ax, xs, [y for _, y, _ in points], [p for _, _, p in points], "completed")
    ax.set_xlabel(spec.name)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)


def _params_figure(report: SweepReport) -> Any | None:
    shown = [r for r in report.rows if r.get("status") in ("completed", "pruned") and _finite(r.get(report.metric))]
    if not report.params or not shown:
        return None
    n = len(report.params)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = _figure((4.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, spec in zip(axes.flat, report.params):
        points = [(r[f"hp_{spec.name}"], float(r[report.metric]), r.get("status") == "pruned") for r in shown
                  if r.get(f"hp_{spec.name}") is not None]
        _param_axis(ax, spec, points, report.metric)
    if any(r.get("status") == "pruned" for r in shown):  # one key below the panels, over no point
        fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=2, fontsize=8, frameon=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{report.name}: {report.metric} against each searched hyperparameter")
    return fig


def _history_figure(report: SweepReport) -> Any | None:
    from matplotlib.ticker import MaxNLocator

    if not report.history:
        return None
    xs = [float(i) for i in range(1, len(report.history) + 1)]
    fig = _figure((6.4, 4.0))
    ax = fig.subplots()
    _scatter(ax, xs, [h.value for h in report.history], [h.pruned for h in report.history],
             f"{report.metric} per completed trial")
    ax.step(xs, [h.best for h in report.history], where="post", color="tab:red",
            label=f"best completed so far ({report.mode})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (completion order)")
    ax.set_ylabel(report.metric)
    ax.set_title(f"{report.name}: optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=8, frameon=False)
    return fig


def _importances_figure(report: SweepReport) -> Any | None:
    if not report.importances:
        return None
    names = list(report.importances)[::-1]  # most important at the top
    fig = _figure((6.4, 1.2 + 0.45 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [report.importances[n] for n in names], color="tab:green")
    ax.set_xlabel("importance (Optuna)")
    ax.set_title(f"{report.name}: hyperparameter importances for {report.metric}")
    ax.grid(alpha=0.3, axis="x")
    return fig


def _tuning_figure(report: SweepReport) -> Any | None:
    """Each method's tuning curve over k = 1..n with its band, on integer ticks."""
    from matplotlib.ticker import MaxNLocator

    t = report.tuning
    if t is None or not t.curves:
        return None
    fig = _figure((6.4, 4.2))
    ax = fig.subplots()
    for i, c in enumerate(t.curves):
        color = f"C{i}"
        ks = range(1, c.n + 1)
        # light fill and dashed edges: where bands overlap, each one's edges stay readable
        ax.fill_between(ks, c.lower, c.upper, color=color, alpha=0.1, linewidth=0)
        for edge in (c.lower, c.upper):
            ax.plot(ks, edge, color=color, linewidth=0.8, linestyle="--", alpha=0.7)
        ax.plot(ks, c.point, color=color, marker="o", markersize=3, label=f"{c.method} (n={c.n})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, max(c.n for c in t.curves) + 0.5)  # k = 1 and k = n whole, not cut by the frame
    ax.set_xlabel("k (random-search trials)")
    ax.set_ylabel(f"median best {t.metric} of k trials")
    ax.set_title(f"{report.name}: tuning curves, {round(100 * t.confidence)}% simultaneous bands")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


#: Plot key (its PNG's name) -> the function drawing it (None: nothing to draw).
FIGURES = {"metric_vs_params": _params_figure, "history": _history_figure, "importances": _importances_figure,
           "tuning_curves": _tuning_figure}


def write_plots(report: SweepReport, folder: Path) -> dict[str, str | None]:
    """Write the PNGs into ``folder``; returns plot key -> file name, None where there is nothing to plot."""
    out: dict[str, str | None] = {}
    for key, draw in FIGURES.items():
        fig = draw(report)
        out[key] = None if fig is None else f"{key}.png"
        if fig is not None:
            fig.tight_layout()
            # "tight": the legends below the axes are kept in the image
            fig.savefig(folder / f"{key}.png", dpi=_DPI, bbox_inches="tight")
    return out
