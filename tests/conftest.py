"""Shared fixtures. Ray tests get a private instance with its own temp dir, always shut down.

The suite runs on pytest-xdist workers (``-n 2`` in ``.ci/run``), so:

* the Ray tests (everything under ``tests/integration``: keep tests that start Ray there) are two
  work units of about equal length (``tests/_xdist.py``), so at most two of the suite's private Ray
  instances run at a time, one per worker (their ports are picked free; run as one unit they alone
  took 11 of the suite's 13 minutes); the workers fill the rest of their time with unit tests;
  every other module is a unit of its own, so a module-scoped fixture is built once;
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
    """:func:`private_ray` as a fixture (for tests under ``tests/integration``, which the xdist
    scheduler keeps apart)."""
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


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """With ``-n N`` (``--dist load``, the default): xdist's scope scheduler with the work units of
    :func:`_xdist.work_unit`, the two Ray units first (they are the longest; collection order puts them first).

    A custom scheduler rather than ``--dist loadgroup`` with ``xdist_group`` marks: pytest-xdist 3.8
    groups by rewriting ``item._nodeid``, which pytest 9.2 no longer reads, so the marks are ignored."""
    if config.getvalue("dist") != "load":
        return None
    from _xdist import work_unit
    from xdist.scheduler import LoadScopeScheduling

    class RayApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return RayApart(config, log)
