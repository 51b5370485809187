"""The suite's layout that its parallel run relies on (tests/conftest.py): tests that start Ray live
under ``tests/integration``, which the xdist scheduler splits into two work units (at most two Ray
instances at a time, one per worker); every other module is a work unit of its own."""

from __future__ import annotations

import re
from pathlib import Path

from _xdist import RAY_FOLDER, RAY_SECOND, work_unit

TESTS = Path(__file__).resolve().parents[1]

#: What starts a Ray instance in a test: the conftest's fixture and helper, a cluster, the CLI
#: launcher as a process, a ``ray start`` head.
_STARTS_RAY = re.compile(r"\bray_private\b|\bprivate_ray\(|\bCluster\(|\bstart_cli\(|\"start\", \"--head\"")


def test_tests_that_start_ray_are_under_the_ray_folder() -> None:
    outside = [str(p.relative_to(TESTS.parent)) for p in TESTS.rglob("test_*.py")
               if not str(p.relative_to(TESTS.parent)).startswith(RAY_FOLDER) and _STARTS_RAY.search(p.read_text())]
    assert outside == [], f"move these under {RAY_FOLDER} (the xdist scheduler keeps its Ray tests apart)"


def test_work_units() -> None:
    assert work_unit("tests/integration/test_jobs.py::test_sweep_as_ray_job") == "ray-2"
    assert work_unit("tests/integration/test_two_nodes.py::test_x[a::b]") == "ray-2"
    assert work_unit("tests/integration/test_sweep_e2e.py::test_launch_then_query") == "ray-1"
    integration = {p.name for p in (TESTS / "integration").glob("test_*.py")}
    assert integration >= RAY_SECOND, RAY_SECOND - integration  # a renamed module would drift to ray-1
    assert {work_unit(f"tests/integration/{name}::t") for name in integration} == {"ray-1", "ray-2"}
    assert work_unit("tests/unit/train/test_parallel.py::test_x[fsdp]") == "tests/unit/train/test_parallel.py"
