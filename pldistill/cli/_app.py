"""The Typer application and the error boundary shared by every command module.

Command modules (``pldistill/cli/<topic>.py``) register on :data:`app` (or add a sub-app) and
import heavy libraries (torch, ray, transformers) inside the command bodies, so that
``pldistill-sweep --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

__all__ = ["app", "data_app", "state"]

app = typer.Typer(
    name="pldistill-sweep",
    help="Distil audio-language models for speech emotion recognition and sweep the distillation on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Click's plain help: Typer's rich panels label every flag (--help too) with a stray "<bool>"
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Corpora: synthesise the embedded default, inspect EmoBox manifests.",
                       no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")


class _State:
    debug: bool = False


state = _State()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    state.debug = debug


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit status 2 (``--debug``: traceback)."""
    from typer._click import exceptions as click_exc  # typer 0.29 vendors its own click

    from pldistill.errors import PldistillError

    try:
        rv = app(args=argv, standalone_mode=False)
    except PldistillError as exc:
        if state.debug:
            raise
        # One line per problem (a sweep file may have several), each starting ``error: ``.
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except click_exc.ClickException as exc:  # usage errors: bad option, missing argument
        exc.show()
        return exc.exit_code
    # With standalone_mode=False, a command's ``raise typer.Exit(n)`` comes back as the return value.
    return rv if isinstance(rv, int) else 0
