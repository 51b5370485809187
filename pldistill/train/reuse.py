"""What a process that runs trial after trial keeps between them: a fold's data and its frozen encoder.

A sweep's one-worker trials run in Tune trial processes that Tune reuses (``reuse_actors``), so the
next trial of the same fold would read and hash the same audio (every clip's bytes, for the
features' content key) and load the same encoder and tokenizer again: seconds to minutes at real
sizes. :func:`enable` (called by the sweep's trial loop) turns on :func:`memo`, which keeps the
last value of each kind; elsewhere (tests, Ray Train workers, the CLI) nothing is kept, so a
changed file on disk is always read again.

Only what a trial never changes is kept: ``FoldData`` (read-only examples) and an encoder-only
teacher (frozen; :func:`~pldistill.train.teacher.ensure_teacher` freezes it again on every hit).
One value per kind, so memory holds at most what one trial needs anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["enable", "enabled", "memo", "clear"]

T = TypeVar("T")
_state: dict[str, Any] = {"enabled": False}
_kept: dict[str, tuple[Hashable, Any]] = {}


def enable(on: bool = True) -> None:
    """Keep values between calls in this process (``on``), or stop and drop them."""
    _state["enabled"] = on
    if not on:
        _kept.clear()


def enabled() -> bool:
    return bool(_state["enabled"])


def clear() -> None:
    _kept.clear()


def memo(kind: str, key: Hashable, build: Callable[[], T]) -> T:
    """``build()``, or the value kept for ``kind`` when it was built for ``key`` (when enabled)."""
    if not _state["enabled"]:
        return build()
    hit = _kept.get(kind)
    if hit is not None and hit[0] == key:
        return hit[1]
    _kept.pop(kind, None)  # let the old value go before the new one is built
    value = build()
    _kept[kind] = (key, value)
    return value
