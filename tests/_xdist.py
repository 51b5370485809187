"""The parallel run's work units (used by the xdist scheduler in tests/conftest.py)."""

from __future__ import annotations

__all__ = ["RAY_FOLDER", "RAY_SECOND", "work_unit"]

#: The tests that start Ray (``tests/integration``): two work units, so at most two of the suite's
#: private Ray instances run at a time, one per worker. Every port they open is picked free (checked
#: in Ray 2.60: GCS, raylets, object managers, metrics; the dashboard is off or probes from 8265) and
#: every process they kill is found by its own RAY_TMPDIR, so two cannot collide.
RAY_FOLDER = "tests/integration/"
#: The second Ray unit's modules, chosen so the two units take about the same time (2 idle cores, both
#: units at once, 444 s in all: e2e 76 s, cache_build 103, failures 82, node_loss 31, launch_once 26 in
#: the first unit, about 320 s; jobs 116, resume 68, two_nodes 65, worker_failure 56 and the small ones
#: in this one, about 330 s). As one unit, the Ray tests alone took 11 of the suite's 13 minutes.
RAY_SECOND = frozenset({"test_sweep_resume.py", "test_jobs.py", "test_two_nodes.py", "test_worker_failure.py",
                        "test_metrics_export.py", "test_cli_bad_input.py", "test_cluster_yaml.py"})


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test: ``ray-1`` or ``ray-2`` for the Ray tests, else the test's module."""
    path = nodeid.split("::", 1)[0]
    if not path.startswith(RAY_FOLDER):
        return path
    return "ray-2" if path.rsplit("/", 1)[-1] in RAY_SECOND else "ray-1"
