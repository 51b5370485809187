"""The one exception type that reaches users as a one-line message.

Anything that is the user's fault (bad YAML, a missing manifest, an unknown label) raises
:class:`PldistillError` with a message that names the file and the field. The CLI prints
``error: <message>`` on one line and exits with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PldistillError", "InputError", "DiskFullError", "MissingArtifactError", "did_you_mean"]


class PldistillError(Exception):
    """An error with a message meant for the user (one line, names file and field)."""


class InputError(PldistillError):
    """Bad input: a file, a field and what was expected.

    >>> str(InputError("sweeps/x.yaml", "search.space.alpha.low", "a number >= 0, got -1"))
    'sweeps/x.yaml: search.space.alpha.low: a number >= 0, got -1'
    """

    def __init__(self, file: str | Path | None, field: str | None, problem: str) -> None:
        self.file = str(file) if file is not None else None
        self.field = field
        self.problem = problem
        parts = [p for p in (self.file, field) if p]
        super().__init__(": ".join([*parts, problem]))

    def __reduce__(self):  # cross-process (Ray) errors are pickled: keep all three parts
        return (type(self), (self.file, self.field, self.problem))


def did_you_mean(name: str, valid: Iterable[str], n: int = 3) -> str:
    """The closest of ``valid`` to a mistyped ``name``, quoted (``'alpha' or 'alpha_cka'``); "" when none is close.

    >>> did_you_mean("alpah", ["alpha", "beta", "lora_rank"])
    "'alpha'"
    """
    return " or ".join(repr(c) for c in difflib.get_close_matches(name, list(dict.fromkeys(valid)), n=n, cutoff=0.6))


class DiskFullError(PldistillError):
    """No space left on the device pldistill was writing ``path`` to: a sweep stops at the first one
    (every retry would fail the same way) and resumes once there is room."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: no space left on device")

    def __reduce__(self):  # crosses processes (Ray) pickled
        return (type(self), (self.path,))


class MissingArtifactError(PldistillError):
    """A trial found an artifact of the sweep's preparation missing (``pldistill.prepare``): trials read
    artifacts by path and never build one, so a missing one means preparation did not run for this
    configuration (or its cache entry was removed since)."""

    def __init__(self, what: str, path: str | Path, hint: str) -> None:
        self.what, self.path, self.hint = what, str(path), hint
        super().__init__(f"{self.path}: {what} is not built; {hint}")

    def __reduce__(self):  # crosses processes (Ray) pickled
        return (type(self), (self.what, self.path, self.hint))
