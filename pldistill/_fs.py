"""File-system safety in one place (a leaf: imports nothing from pldistill but its error types).

Everything pldistill writes that another process may read meanwhile goes through here:

* :func:`private_dirs`: folders created user-only (0o700), parents included;
* :func:`atomic_write`: a file that appears whole or not at all (temp file in the same folder,
  fsync, ``os.replace``, fsync of the folder);
* :func:`atomic_dir`: a folder that appears whole or not at all (built aside, renamed in);
* :func:`file_lock`: an exclusive ``flock`` held for a block (blocking, or failing at once);
* :func:`artifact_lock`: the lock of one built artifact, which also clears what a writer of it
  killed earlier left behind (:func:`remove_stale_temps`);
* :func:`build_once`: every artifact of a sweep's preparation (``pldistill.prepare``) is built through
  it: its lock, its stale temporaries cleared, its completeness checked, built aside and renamed in;
* :func:`artifacts_read_only`: while a trial runs, any build is refused (:func:`may_build`): trials
  read artifacts by path, a missing one is a clear error, never a silent rebuild.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pldistill.errors import MissingArtifactError

__all__ = ["private_dirs", "atomic_write", "atomic_dir", "file_lock", "artifact_lock", "fsync_dir",
           "remove_stale_temps", "mount_point", "folder_size", "build_once", "may_build", "artifacts_read_only",
           "note_built", "noting_builds"]

_DIR_MODE = 0o700


def private_dirs(path: str | Path) -> None:
    """Create ``path`` and its missing parents user-only (0o700): ``mkdir(parents=True, mode=...)``
    would give the parents the umask's default (usually 0o755). A file in the way raises
    :class:`NotADirectoryError`."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(p))
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=_DIR_MODE)


def fsync_dir(path: str | Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every filesystem opens folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, content: bytes | str | Callable[[IO[bytes]], None], *,
                 durable: bool = True) -> Path:
    """Write ``path`` through a temp file beside it, then ``os.replace``: a reader sees the old file
    or the new one, never part of one. ``content`` is bytes, text (UTF-8) or a function that writes
    into the open binary file. ``durable`` fsyncs the file and its folder (results that must survive
    a lost machine); the folder is created user-only when missing."""
    path = Path(path)
    private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode() if isinstance(content, str) else content)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


@contextmanager
def atomic_dir(final: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``final``; when the block succeeds it becomes ``final``.

    An existing ``final`` is renamed aside first and deleted after the new one is in place, so there
    is no moment without one. ``replace=False``: an existing ``final`` (say, built meanwhile by a
    concurrent process) is kept, the new one discarded and :class:`FileExistsError` raised, for the
    caller to check that theirs matches. On failure the temp folder is removed and ``final`` left as
    it was."""
    final = Path(final)
    private_dirs(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            if not replace:
                raise FileExistsError(17, "File exists", str(final))
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temps(folder: str | Path, name: str | None = None) -> int:
    """Delete what an interrupted :func:`atomic_dir`/:func:`atomic_write` of ``folder/name`` left
    behind (a process killed mid-write cannot clean up); ``name=None``: of every name in ``folder``.
    Call it only where no other process may be writing there right now. Returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir()
             if (p.name.startswith((f".{name}.tmp-", f".{name}.old-")) if name is not None
                 else p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name))]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
    return len(stale)


@contextmanager
def file_lock(path: str | Path, *, blocking: bool = True, holder: str | None = None) -> Iterator[IO[str]]:
    """An exclusive ``flock`` on ``path`` for the block (the folder is created user-only).

    ``blocking=False`` raises :class:`BlockingIOError` at once when another process holds it.
    ``holder``: written into the file while held, so the one refused can say who holds it."""
    path = Path(path)
    private_dirs(path.parent)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            if holder is not None:
                fh.seek(0)
                fh.truncate()
                fh.write(holder)
                fh.flush()
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def artifact_lock(final: str | Path) -> Iterator[IO[str]]:
    """The lock of the artifact built at ``final`` (``.<name>.lock`` beside it, blocking), with the
    temporaries an earlier writer of it left when killed removed: every writer of ``final`` holds
    this lock, so none of them is still writing (a half-built teacher cache is gigabytes)."""
    final = Path(final)
    with file_lock(final.parent / f".{final.name}.lock") as fh:
        remove_stale_temps(final.parent, final.name)
        yield fh


#: Hints of the read-only blocks this process is in (innermost last); empty: builds are allowed.
_READ_ONLY: list[str] = []


@contextmanager
def artifacts_read_only(hint: str) -> Iterator[None]:
    """Inside the block, :func:`may_build` refuses every build with :class:`MissingArtifactError`
    ending in ``hint`` (what to run instead). A trial runs inside one."""
    _READ_ONLY.append(hint)
    try:
        yield
    finally:
        _READ_ONLY.pop()


def may_build(final: str | Path, what: str) -> None:
    """Raise :class:`MissingArtifactError` when an artifact (``what``, at ``final``) would be built
    inside :func:`artifacts_read_only`; do nothing otherwise. Every builder calls it first."""
    if _READ_ONLY:
        raise MissingArtifactError(what, final, _READ_ONLY[-1])


#: Open journals of :func:`noting_builds` (innermost last).
_JOURNALS: list[list[Path]] = []


@contextmanager
def noting_builds() -> Iterator[list[Path]]:
    """Collect the paths of the artifacts built in this process during the block (:func:`note_built`):
    how preparation tells an entry it built from one it found."""
    journal: list[Path] = []
    _JOURNALS.append(journal)
    try:
        yield journal
    finally:
        _JOURNALS.remove(journal)


def note_built(path: str | Path) -> None:
    """Record that the artifact at ``path`` was just built (a no-op outside :func:`noting_builds`)."""
    for journal in _JOURNALS:
        journal.append(Path(path).resolve())


def build_once(final: str | Path, complete: str, build: Callable[[Path], None], *, what: str) -> bool:
    """The artifact folder ``final``, built once: ``build(tmp)`` fills a temp folder beside it, which is
    renamed into place whole; ``final/complete`` (written last by ``build``) marks it complete. Under
    the artifact's lock, which also clears what a writer killed earlier left behind; a concurrent
    caller waits and reuses the first one's. Inside :func:`artifacts_read_only` a complete artifact is
    read without the lock and a missing one raises. Returns whether this call built it."""
    final = Path(final)
    if _READ_ONLY:
        if (final / complete).is_file():
            return False
        may_build(final, what)
    with artifact_lock(final):
        if (final / complete).is_file():
            return False
        with atomic_dir(final) as tmp:
            build(tmp)
            if not (tmp / complete).is_file():  # a builder that forgot its marker would be rebuilt forever
                raise RuntimeError(f"{what}: its build wrote no {complete} into {tmp}")
    note_built(final)
    return True


def mount_point(path: str | Path) -> Path:
    """The mount point of the filesystem that holds ``path`` (or would: its nearest existing folder)."""
    p = Path(path).resolve()
    while not p.exists() and p.parent != p:
        p = p.parent
    dev = p.stat().st_dev
    while p.parent != p and p.parent.stat().st_dev == dev:
        p = p.parent
    return p


def folder_size(path: str | Path) -> int:
    """Bytes the files under ``path`` hold (0 when it is missing)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # gone meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
    return total

