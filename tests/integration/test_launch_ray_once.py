"""A local ``launch`` starts Ray once: the teacher-cache build (Ray Data) and the sweep share it.

The sweep's teacher cache is missing (its cache folder links the session's corpus, fine-tuned
teacher and student prior, but not their teacher outputs), so ``prepare_sweep`` must build it
with Ray before the one trial (one worker, in the Tune trial's process) runs. ``ray.init`` is
counted in the launching process.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from _procs import tiny_sweep

from pldistill.results import read_trials
from pldistill.sweep import load_sweep
from pldistill.sweep.launch import LaunchOptions, launch

pytestmark = pytest.mark.slow

_GRID = {"algorithm": "grid", "max_concurrent_trials": 1, "variants": [{"name": "only", "objective": "sft"}]}


def _cache_without_teacher_outputs(tmp_path: Path, shared: str) -> Path:
    """A cache folder with the session's corpus, teacher and prior (built there once) but no teacher cache."""
    from pldistill.sweep.space import resolve_trial_config
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.student_prior import ensure_student_llm
    from pldistill.train.teacher import ensure_teacher

    cfg = resolve_trial_config(load_sweep(tiny_sweep("shared", tmp_path, shared, search=_GRID)), {}, trial_id="p")
    teacher, _ = ensure_teacher(cfg, prepare_fold(cfg, 1), log=lambda m: None)
    ensure_student_llm(cfg, teacher.tokenizer, log=lambda m: None)
    own = tmp_path / "cache"
    own.mkdir()
    for entry in Path(shared).iterdir():
        if entry.name != "teacher_outputs":
            (own / entry.name).symlink_to(entry)
    return own


def test_local_launch_starts_ray_once_for_the_cache_build_and_the_sweep(tmp_path, tiny_cache, monkeypatch):
    import ray

    cache = _cache_without_teacher_outputs(tmp_path, tiny_cache)
    path = tiny_sweep("rayonce", tmp_path, str(cache), search=_GRID, max_steps_per_epoch=2)
    inits: list[dict] = []
    real_init = ray.init

    def counted(*args, **kwargs):
        inits.append(kwargs)
        return real_init(*args, **kwargs)

    monkeypatch.setattr(ray, "init", counted)
    ray_tmp = tempfile.mkdtemp(prefix="ro", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    try:
        summary = launch(path, LaunchOptions(num_cpus=2, dashboard=False, progress=False, ray_tmpdir=ray_tmp))
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert [p for p in (cache / "teacher_outputs").iterdir() if p.is_dir()], "the teacher cache was not built"
    assert len(inits) == 1, inits
    assert "pldistill_driver" in inits[0]["resources"]  # the sweep's own start, not the cache build's
    assert summary.counts == {"completed": 1, "pruned": 0, "failed": 0, "running": 0, "total": 1}
    (row,) = read_trials(tmp_path / "results").to_pylist()
    assert row["status"] == "completed", row["error"]
