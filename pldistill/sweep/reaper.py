"""Free a stopped trial's worker placement group, so the next trial can be scheduled.

When Tune stops a trial early (ASHA), it kills the trial driver; Ray Train's controller dies with
it, but the placement group reserving the trial's worker CPUs/GPUs outlives it. Ray Train has a
detached cleaner for that, which asks the State API whether the controller lives; without the
dashboard (``--no-dashboard``, tests, some clusters) that query fails and the group leaks,
holding the resources until the sweep hangs. Each worker reports its group's id with its
metrics; when Tune ends the trial, this callback removes the group if it still exists.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ray.tune import Callback

__all__ = ["PlacementGroupReaper", "PG_KEY"]

PG_KEY = "placement_group_id"


class PlacementGroupReaper(Callback):
    def __init__(self) -> None:
        self._groups: dict[str, str] = {}

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        if isinstance(result.get(PG_KEY), str):
            self._groups[trial.trial_id] = result[PG_KEY]

    def _reap(self, trial) -> None:
        import ray
        from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

        hex_id = self._groups.pop(trial.trial_id, None)
        if not hex_id:
            return
        state = placement_group_table().get(hex_id, {}).get("state")
        if state in (None, "REMOVED"):
            return
        with contextlib.suppress(Exception):  # already gone: nothing to free
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(hex_id))))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._reap(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._reap(trial)
