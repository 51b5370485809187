"""File-system helpers every layer may use (a leaf: imports nothing from pldistill)."""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["private_dirs"]


def private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents user-only (0o700): ``mkdir(parents=True, mode=...)``
    would give the parents the umask's default (usually 0o755)."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=0o700)
