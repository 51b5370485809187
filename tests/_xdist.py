"""The parallel run's work units (used by the xdist scheduler in tests/conftest.py)."""

from __future__ import annotations

__all__ = ["RAY_FOLDER", "work_unit"]

#: The tests that start Ray (``tests/integration``): one work unit, so at most one of the suite's
#: private Ray instances runs at a time. Two units (one per worker) were tried: every port Ray 2.60
#: opens is picked free, and the integration tests alone passed that way in 7.4 min, but in the full
#: run a Ray Job's driver (test_jobs, ``launch --address auto``) finished its sweep and never exited
#: while the other worker's Ray was up. Until that is understood, one at a time (11:44 for the suite).
RAY_FOLDER = "tests/integration/"


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test: ``ray`` for the Ray tests, else the test's module."""
    path = nodeid.split("::", 1)[0]
    return "ray" if path.startswith(RAY_FOLDER) else path
