"""``pldistill-sweep report``: one sweep's results as a Markdown report with PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pldistill.cli._app import app
from pldistill.cli.results import ResultsDir

__all__ = ["report"]


@app.command()
def report(
    name: Annotated[str, typer.Argument(help="The sweep (a folder under --results).")],
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default: <results>/<name>/report); "
                                                           "replaced whole when it already holds a report.",
                                             show_default=False)] = None,
    top: Annotated[int, typer.Option(min=1, help="Best trials listed.")] = 5,
    reference: Annotated[str, typer.Option(help="Objective every Table 1 row is compared with (paired "
                                                "difference over matched (seed, fold) runs, 95% CI).")] = "sft",
    results: ResultsDir = Path("results"),
) -> None:
    """Write report.md (the paper's Tables 1 and 2, best trials, Optuna's hyperparameter importances,
    teacher beside students, a random search's tuning curves) and PNG plots (metric per hyperparameter,
    optimisation history, tuning curves)."""
    from pldistill.errors import PldistillError

    try:
        import matplotlib  # noqa: F401
        import opda  # noqa: F401
        import optuna  # noqa: F401
    except ImportError as exc:
        raise PldistillError(f"report needs {exc.name}: pip install 'pldistill[report]'") from None
    from pldistill.results.report import write_report

    folder = write_report(results, name, out, top=top, reference=reference)
    typer.echo(f"report: {folder / 'report.md'}")
    for png in sorted(folder.glob("*.png")):
        typer.echo(f"plot: {png}")
