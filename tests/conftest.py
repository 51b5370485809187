"""Shared fixtures. Ray tests get a private instance with its own temp dir, always shut down."""

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
def tiny_cache(tmp_path_factory) -> Iterator[str]:
    """One cache folder per test session: the synthetic corpus, fine-tuned tiny teacher and student
    prior are built once (about 30 s) and shared by every test that trains."""
    yield str(tmp_path_factory.mktemp("pldistill-cache"))
