"""What a cache folder holds: each artifact entry with its key, size and age, and which sweeps read it.

Entries are found by their records' locations (:data:`~pldistill.prepare.artifacts.ARTIFACTS`);
a sweep's users are read from its ``sweep.json`` (``artifacts``: the entries its preparation built or
reused, recorded by ``launch``). Removing an entry is safe for a finished sweep (its results do not
read the cache) and costs a rebuild for one that runs again.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pldistill._fs import artifact_lock, folder_size
from pldistill.prepare.artifacts import ARTIFACTS

__all__ = ["CacheEntry", "cache_entries", "attach_users", "remove_entry"]


@dataclass
class CacheEntry:
    artifact: str
    key: str
    path: Path
    bytes: int
    age_s: float
    users: list[str] = field(default_factory=list)  # sweeps (under the results root) that read it


def cache_entries(cache_dir: str | Path) -> list[CacheEntry]:
    """Every complete-or-not entry under ``cache_dir`` (temporaries and locks are not entries)."""
    root = Path(cache_dir)
    now = time.time()
    out = []
    for artifact in ARTIFACTS.values():
        pattern = artifact.location.rstrip("/").replace("<key>", "*")
        for path in sorted(root.glob(pattern)):
            if path.name.startswith("."):
                continue
            prefix, _, suffix = Path(artifact.location.rstrip("/")).name.partition("<key>")
            key = path.name.removeprefix(prefix).removesuffix(suffix)
            size = folder_size(path) if path.is_dir() else path.stat().st_size
            out.append(CacheEntry(artifact.name, key, path.resolve(), size, now - path.stat().st_mtime))
    return out


def attach_users(entries: list[CacheEntry], metas: list[dict[str, Any]]) -> list[str]:
    """Fill each entry's ``users`` from the sweeps' ``sweep.json`` (``metas``); returns the names of
    sweeps that recorded no artifacts (run before preparation recorded them): what they read is unknown."""
    by_path = {str(e.path): e for e in entries}
    unknown = []
    for meta in metas:
        recorded = meta.get("artifacts")
        if recorded is None:
            unknown.append(str(meta.get("name")))
            continue
        for item in recorded:
            entry = by_path.get(str(Path(item.get("path", "")).resolve()))
            if entry is not None and meta.get("name") not in entry.users:
                entry.users.append(str(meta.get("name")))
    return unknown


def remove_entry(entry: CacheEntry) -> None:
    """Delete ``entry`` under its artifact's lock (a build of it in progress finishes first)."""
    with artifact_lock(entry.path):
        if entry.path.is_dir():
            shutil.rmtree(entry.path)
        elif entry.path.exists():
            entry.path.unlink()
