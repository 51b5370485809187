"""The words for how a trial stands, and the one way every command counts them.

``status``, ``best``, the report, the launch summary, live progress and Ray Job logs all print
from here, so a trial ASHA stopped is "pruned" everywhere (never "completed"). A leaf of
:mod:`pldistill.results`: it imports nothing else of pldistill.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

__all__ = ["COMPLETED", "PRUNED", "FAILED", "RUNNING", "TRIAL_STATUSES", "count_statuses", "describe_counts"]

#: Ran every epoch and reported its whole result.
COMPLETED = "completed"
#: Ended by the scheduler (ASHA) before its last epoch; its figures are the best so far.
PRUNED = "pruned"
#: Raised (after Tune's retries); the row keeps the root cause.
FAILED = "failed"
#: Started and not ended (or the launcher stopped before it ended).
RUNNING = "running"
#: Every trial status, in the order the counts are printed.
TRIAL_STATUSES = (COMPLETED, PRUNED, FAILED, RUNNING)


def count_statuses(statuses: Iterable[str | None]) -> dict[str, int]:
    """``{status: n}`` for every word of :data:`TRIAL_STATUSES` (0 when absent)."""
    seen = Counter(statuses)
    return {word: seen.get(word, 0) for word in TRIAL_STATUSES}


def describe_counts(counts: Mapping[str, int], *, skip_zero: bool = False) -> str:
    """``3 completed, 3 pruned, 0 failed, 0 running`` (``skip_zero``: only the words that occur)."""
    parts = [f"{int(counts.get(word) or 0)} {word}" for word in TRIAL_STATUSES
             if not skip_zero or counts.get(word)]
    return ", ".join(parts) or "no trials"
