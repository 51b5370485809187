"""The parallel run's work units (used by the xdist scheduler in tests/conftest.py)."""

from __future__ import annotations

__all__ = ["RAY_FOLDER", "work_unit"]

#: The tests that start Ray: one work unit, so at most one of the suite's Ray instances runs at a time.
RAY_FOLDER = "tests/integration/"


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test: ``ray`` for the Ray tests, else the test's module."""
    path = nodeid.split("::", 1)[0]
    return "ray" if path.startswith(RAY_FOLDER) else path
