"""Shared fixtures. Ray tests get a private instance with its own temp dir, always shut down.

The suite runs on pytest-xdist workers (``-n 2 --dist loadgroup`` in pyproject's addopts), so:

* every test carries an ``xdist_group``: the Ray tests (``tests/integration``, any test using
  ``ray_private``) share one group, so at most one of the suite's Ray instances runs at a time (as in a
  serial run; their waits and timeouts were sized for that), while the other worker runs the CPU-bound
  unit tests; every other test is grouped by module, so a module-scoped fixture is built once;
* ``tiny_cache`` is one folder shared by the workers: every build into it (synthetic corpus, teachers,
  student prior, teacher outputs) is under a file lock or renamed into place, so the second worker
  reuses what the first built;
* torch threads are capped at the worker's share of the cores: two workers each running the
  configs' ``num_threads: 2`` on 2 cores made training several times slower (OpenMP spin-waits).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def private_ray(**init_kwargs) -> Iterator[str]:
    """A private local Ray (``address="local"``, 2 CPUs) with a fresh ``RAY_TMPDIR``, always shut
    down; yields the temp dir. ``init_kwargs`` go to ``ray.init`` (e.g. ``_metrics_export_port``).

    The temp dir is short and under /tmp because Ray's unix sockets cannot have long paths.
    """
    import ray

    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=tmp,
                 log_to_driver=False, configure_logging=False, **init_kwargs)
        yield tmp
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def ray_private() -> Iterator[str]:
    """:func:`private_ray` as a fixture."""
    with private_ray() as tmp:
        yield tmp


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory, worker_id: str) -> Iterator[str]:
    """One cache folder per test run: the synthetic corpus, fine-tuned tiny teacher and student
    prior are built once (about 30 s) and shared by every test that trains, on every xdist worker
    (the folder beside the workers' own temp dirs, as pytest-xdist's docs suggest)."""
    if worker_id == "master":  # not distributed
        yield str(tmp_path_factory.mktemp("pldistill-cache"))
        return
    shared = tmp_path_factory.getbasetemp().parent / "pldistill-cache"
    shared.mkdir(exist_ok=True)
    yield str(shared)


def _xdist_worker_count() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def pytest_configure(config: pytest.Config) -> None:
    """On an xdist worker: torch (and OpenMP in the processes it starts) get the worker's share of
    the cores, however many threads a test's config asks for."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    share = max(1, (os.cpu_count() or 1) // _xdist_worker_count())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(min(share, int(os.environ.get(var, share))))
    import torch

    set_threads = torch.set_num_threads

    def capped(n: int) -> None:
        set_threads(max(1, min(int(n), share)))

    torch.set_num_threads = capped
    capped(share)


RAY_GROUP = "ray"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The xdist groups (see the module docstring): ``ray`` for Ray tests, else the test's module."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        ray = path.startswith("tests/integration/") or "ray_private" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.xdist_group(RAY_GROUP if ray else path))
