"""A preparation step killed while it writes leaves a temporary folder beside its artifact; the next
process that builds that artifact removes it (under the artifact's lock), so nothing is left forever.

Each step is run in a real process that is SIGKILLed while its artifact sits whole in its temporary
folder (``atomic_dir`` is made to wait there, after the real writes and before the rename): the
fine-tuned teacher, the student prior, the teacher cache, in turn. The next process runs the steps
again; at the end every artifact is there and no ``.<name>.tmp-*`` or ``.<name>.old-*`` is.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest
from _corpus import SMALL_CORPUS

pytestmark = pytest.mark.slow

#: In the order a single trial's preparation builds them (a fold's chain, then what folds share): each
#: child is killed in its step after the steps before it were built whole.
STEPS = ("teacher", "teacher_cache", "student_prior")
#: Where each step's entries live under the cache (``pldistill.prepare.artifacts``).
_FOLDERS = {"teacher": "teachers", "student_prior": "students", "teacher_cache": "teacher_outputs"}


def _config(cache: str):
    from pldistill.config import TrialConfig

    # an init seed of its own: a teacher, prior and cache no other test builds in the shared cache;
    # the tiny teacher as it is (its metrics are still an artifact written the same way): seconds, not minutes
    return TrialConfig.model_validate({
        "cache_dir": cache, "output_dir": str(Path(cache) / "unused"),
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "model": {"init_seed": 2827, "teacher_finetune": {"enabled": False}, "teacher_mode": "cached"},
        "train": {"num_threads": 1}})


def _prepare(cache: str, hang_in: str | None, marker: str | None) -> None:
    """The trial's preparation (:func:`pldistill.prepare.prepare_trial`, every artifact through
    ``_fs.build_once``); ``hang_in``: the step whose ``atomic_dir`` waits, after its block, for the
    kill (``marker`` written then)."""
    import pldistill._fs as fs
    from pldistill.prepare import prepare_trial

    if hang_in is not None:
        real = fs.atomic_dir

        @contextlib.contextmanager
        def hanging(final, **kwargs):
            with real(final, **kwargs) as tmp:
                yield tmp
                if Path(final).parent.name == _FOLDERS[hang_in]:
                    Path(marker).write_text(str(tmp))
                    time.sleep(600)

        fs.atomic_dir = hanging  # build_once looks it up at call time
    prepare_trial(_config(cache), log=lambda m: None)


def _temps(cache: Path) -> list[Path]:
    return [p for p in cache.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.timeout(2400)
def test_a_killed_preparation_step_leaves_no_temporary_after_the_next_run(tmp_path, tiny_cache) -> None:
    cache = Path(tiny_cache)
    ctx = mp.get_context("spawn")
    left = []
    for step in STEPS:
        marker = tmp_path / f"{step}.hanging"
        child = ctx.Process(target=_prepare, args=(tiny_cache, step, str(marker)))
        child.start()
        try:
            deadline = time.monotonic() + 1500  # the student prior: 300 steps, slow on a busy machine
            while not marker.exists() and child.is_alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert marker.exists(), f"{step}: never reached its write (exit code {child.exitcode})"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.join(30)
            if child.is_alive():
                child.kill()
        tmp = Path(marker.read_text())
        assert tmp.is_dir(), f"{step}: the kill should leave its temporary folder {tmp}"
        left.append(tmp)
    _prepare(tiny_cache, None, None)  # the next run: every step finds its artifact or builds it
    assert not [p for p in left if p.exists()], left
    assert not _temps(cache), _temps(cache)
    cfg = _config(tiny_cache)
    assert any((cfg.cache_dir / "teachers").glob("*/metrics.json"))
    assert any((cfg.cache_dir / "students").glob("*/config.json"))
    assert any((cfg.cache_dir / "teacher_outputs").glob("*/meta.json"))
