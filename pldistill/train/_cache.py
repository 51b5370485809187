"""Once-per-config artefacts on disk: a cross-process lock and folders that appear whole or not at all."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pldistill._fs import private_dirs

__all__ = ["cache_lock", "atomic_dir", "private_dirs"]


@contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (concurrent trials wait instead of building twice)."""
    private_dirs(path.parent)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``final``; on success it replaces ``final`` in one rename."""
    private_dirs(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
