"""Shared fixtures. Ray tests get a private instance with its own temp dir, always shut down."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def ray_private() -> Iterator[str]:
    """A private local Ray (``address="local"``) with a fresh ``RAY_TMPDIR``; yields the temp dir.

    The temp dir is short and under /tmp because Ray's unix sockets cannot have long paths.
    """
    import ray

    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=tmp,
                 log_to_driver=False, configure_logging=False)
        yield tmp
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Iterator[str]:
    """One cache folder per test session: the synthetic corpus, fine-tuned tiny teacher and student
    prior are built once (about 30 s) and shared by every test that trains."""
    yield str(tmp_path_factory.mktemp("pldistill-cache"))
