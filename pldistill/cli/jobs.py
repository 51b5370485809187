"""``pldistill-sweep jobs``: (being written)."""

from __future__ import annotations

from pldistill.cli._app import app  # noqa: F401  (commands register on it)

__all__: list[str] = []
