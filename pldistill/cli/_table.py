"""The one way every command prints a table (``status``, ``best``, ``query``, ``jobs``, ``predict``,
the launch summary, ``data info``).

In a terminal a table fits the window (long cells fold inside their column). Anywhere else (a
pipe, a log file, Ray Job output) there is no window to fit: rich would squeeze the table into 80
columns and split names and trial ids across lines, so it is printed at its natural width,
every cell on one line; a wide table is fine in a log.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["table_console", "new_table", "print_table"]

#: Wide enough for any table: off a terminal a table is as wide as its widest cells.
_UNBOUNDED = 100_000


def table_console(console: Console | None = None) -> Console:
    """``console``, or a new one on stdout; off a terminal made wide enough that nothing wraps."""
    from rich.console import Console

    console = console or Console(file=sys.stdout)
    if not console.is_terminal:
        console.width = _UNBOUNDED  # a log has no window to fit; a table takes its natural width
    return console


def new_table(title: str | None, columns: Iterable[str], *, right: Sequence[str] = (),
              whole: Sequence[str] = (), **kwargs: object) -> Table:
    """A table with ``columns`` (``right``: right-aligned, e.g. numbers; ``whole``: never folded or cut,
    e.g. ids a user copies into the next command)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold", **kwargs)  # type: ignore[arg-type]
    for name in columns:
        keep = name in whole
        table.add_column(name, justify="right" if name in right else "left", no_wrap=keep,
                         overflow="ignore" if keep else "fold")
    return table


def print_table(table: Table, console: Console | None = None, *, empty: str | None = None) -> None:
    """Print ``table`` (``empty``: a line printed after it when it has no rows); a caller's console
    gets its width back after (its other lines wrap as before)."""
    width = console.width if console is not None else None
    out = table_console(console)
    try:
        out.print(table)
        if empty is not None and not table.row_count:
            out.print(empty)
    finally:
        if width is not None:
            out.width = width
