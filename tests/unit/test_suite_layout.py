"""The suite's layout that its parallel run relies on (tests/conftest.py): tests that start Ray live
under ``tests/integration``, which the xdist scheduler keeps on one worker; every other module is a
work unit of its own."""

from __future__ import annotations

import re
from pathlib import Path

from _xdist import RAY_FOLDER, work_unit

TESTS = Path(__file__).resolve().parents[1]

#: What starts a Ray instance in a test: the conftest's fixture and helper, a cluster, the CLI
#: launcher as a process, a ``ray start`` head.
_STARTS_RAY = re.compile(r"\bray_private\b|\bprivate_ray\(|\bCluster\(|\bstart_cli\(|\"start\", \"--head\"")


def test_tests_that_start_ray_are_under_the_ray_folder() -> None:
    outside = [str(p.relative_to(TESTS.parent)) for p in TESTS.rglob("test_*.py")
               if not str(p.relative_to(TESTS.parent)).startswith(RAY_FOLDER) and _STARTS_RAY.search(p.read_text())]
    assert outside == [], f"move these under {RAY_FOLDER} (the xdist scheduler runs its tests one at a time)"


def test_work_units() -> None:
    assert work_unit("tests/integration/test_jobs.py::test_sweep_as_ray_job") == "ray"
    assert work_unit("tests/integration/test_two_nodes.py::test_x[a::b]") == "ray"
    assert work_unit("tests/unit/train/test_parallel.py::test_x[fsdp]") == "tests/unit/train/test_parallel.py"
