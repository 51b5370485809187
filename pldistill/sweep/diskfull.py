"""A full disk ends a sweep at once, in one line: which filesystem, what is free, how much more the
sweep needs. Every write is atomic, so every file stays readable, and ``resume`` finishes the sweep
once there is room. (Trials that fail for it stop the sweep through
:class:`~pldistill.sweep.recorder.DiskFullGuard`, before Tune retries them.)"""

from __future__ import annotations

from typing import Any

__all__ = ["disk_full_cause", "disk_full_line"]


def disk_full_cause(exc: BaseException | None) -> Any:
    """The :class:`~pldistill.errors.DiskFullError` (or ENOSPC ``OSError``) ``exc`` was raised from, if
    any: Tune wraps what a callback raises in its own error."""
    import errno

    from pldistill.errors import DiskFullError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return exc
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return DiskFullError(exc.filename or ".")
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_line(path: str, store: Any, sweep: Any) -> str:
    """The one line a full disk ends a sweep with: the filesystem, what is free, and how much more the
    sweep needs at the rate its folder grew per trial so far (files stay whole: writes are atomic)."""
    import shutil

    from pldistill._fs import folder_size, mount_point
    from pldistill.sweep.space import build_tune_search

    def size(n: float) -> str:
        for unit in ("B", "KiB", "MiB", "GiB"):
            if n < 1024 or unit == "GiB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            n /= 1024
        return ""

    mount = mount_point(path)
    usage = shutil.disk_usage(mount)
    used = folder_size(store.sweep_dir)
    done = len(list((store.sweep_dir / "trials").glob("*.parquet")))
    total = build_tune_search(sweep).num_samples_total
    need = (f"it holds {size(used)} after {done} of {total} trials: about {size(used * (total - done) / done)} "
            "more to finish" if done else f"it holds {size(used)} before any trial finished")
    return (f"{path}: no space left on device (filesystem {mount}: {size(usage.free)} free of "
            f"{size(usage.total)}); the sweep stopped, {need}; make room, then 'pldistill-sweep resume "
            f"{sweep.name} --results {store.root}'")
