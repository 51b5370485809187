"""The teacher cache built with Ray Data (actor pool), on a private local Ray; and ``prepare``.

Tiny teacher fine-tuned for one epoch (a cache of its own), synthetic corpus. Checks: every clip
once, rows joined by sample id equal an in-process teacher forward, a second build reuses the
folder, the ``prepare`` CLI builds and reuses every entry, and a trial in ``cached`` mode reproduces
the online trial.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch
import yaml
from _corpus import SMALL_CORPUS

from pldistill.cli import run_app
from pldistill.config import TrialConfig
from pldistill.prepare import prepare_trial
from pldistill.prepare.cache_build import CacheBuildOptions, build_fold_cache
from pldistill.train.dataset import prepare_fold
from pldistill.train.teacher import ensure_teacher
from pldistill.train.teacher_cache import ARRAY_COLUMNS, TeacherCache, cache_rows, fold_examples

pytestmark = pytest.mark.slow


def _base(cache_dir: str) -> dict:
    return {"data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
            "model": {"teacher": "tiny", "student_llm": "tiny", "teacher_finetune": {"epochs": 1}},
            "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 1},
            "cache_dir": cache_dir}


def test_ray_data_build_joins_rows_by_sample_id_and_is_reused(ray_private, tmp_path):
    cfg = TrialConfig.model_validate({**_base(str(tmp_path / "cache")), "output_dir": str(tmp_path / "run")})
    opts = CacheBuildOptions(actors=2, batch_size=5)  # two actors: batches come back in any order
    logs: list[str] = []
    data = prepare_fold(prepare_trial(cfg, log=logs.append), 1)  # corpus, features, teacher (online: no cache)
    path = build_fold_cache(cfg, data, log=logs.append, opts=opts)
    assert any("teacher cache fold 1" in m and "clips" in m for m in logs)
    cache = TeacherCache(path)
    examples = fold_examples(data)
    assert len(cache) == len(examples) == cache.meta["rows"]
    # against a forward in this process, for clips spread over the fold (join by key, not by order)
    teacher, _ = ensure_teacher(cfg, data, log=lambda m: None)
    picked = examples[::7]
    train = {ex.key for ex in data.train}
    assert train & {ex.key for ex in picked} and {ex.key for ex in picked} - train
    direct = TeacherCache.from_table(cache_rows(teacher, picked, data.labels, teacher_keys=train), cache.meta)
    for ex in picked:
        for col in ARRAY_COLUMNS if ex.key in train else ("encoded",):
            torch.testing.assert_close(cache.row(ex.key, col), direct.row(ex.key, col), rtol=1e-5, atol=1e-5)
    assert cache.meta["teacher_rows"] == len(train)
    # second build: reused, not rebuilt
    stamp = (path / "meta.json").stat().st_mtime_ns
    assert build_fold_cache(cfg, data, log=logs.append, opts=opts) == path
    assert (path / "meta.json").stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")] == [path.name]


def test_prepare_cli_builds_then_reuses(tmp_path, monkeypatch, capsys):
    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    try:
        _cli_builds_then_reuses(tmp_path, capsys)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _cli_builds_then_reuses(tmp_path, capsys):
    sweep = {"name": "c", "results": str(tmp_path / "results"), "base": _base(str(tmp_path / "cache")),
             "search": {"algorithm": "random", "num_samples": 1,
                        "space": {"alpha": {"type": "uniform", "low": 0.0, "high": 1.0}}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(sweep))
    assert run_app(["prepare", str(path), "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    rows = {cells[0]: cells for cells in _rows(out)}
    assert set(rows) == {"corpus", "features", "teacher", "student_prior", "teacher_cache"}, out
    assert all(cells[2] == "built" for cells in rows.values()), out
    folder = rows["teacher_cache"][-1]
    assert os.path.isfile(os.path.join(folder, "meta.json"))
    assert out.strip().splitlines()[-1].startswith("5 built, 0 reused")
    assert run_app(["prepare", str(path), "--num-cpus", "2"]) == 0  # complete: nothing rebuilt
    again = capsys.readouterr().out
    assert {cells[0]: cells[2] for cells in _rows(again)} == dict.fromkeys(rows, "reused")
    assert folder in again and "clips" not in again


def _rows(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines()
            if "│" in line and "artifact" not in line]


def test_cached_trial_reproduces_the_online_trial(tmp_path, monkeypatch):
    import pldistill.train.teacher as teacher_mod
    from pldistill.train.trial import run_trial

    def cfg(mode: str) -> TrialConfig:
        return TrialConfig.model_validate({
            **_base(str(tmp_path / "cache")), "output_dir": str(tmp_path / mode),
            "model": {**_base("")["model"], "teacher_mode": mode},
            "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 1, "max_steps_per_epoch": 4},
            "hparams": {"objective": "pl_distill", "weighting": "attention_layers"}})

    loads: list[bool] = []
    real_load = teacher_mod.load_teacher

    def spy(*args, encoder_only: bool = False, **kwargs):
        loads.append(encoder_only)
        return real_load(*args, encoder_only=encoder_only, **kwargs)

    prepare_trial(cfg("online"))
    prepare_trial(cfg("cached"))
    assert (tmp_path / "cache" / "teacher_outputs").is_dir()
    monkeypatch.setattr(teacher_mod, "load_teacher", spy)
    online, cached = run_trial(cfg("online")), run_trial(cfg("cached"))
    a, b = online.folds[0].epochs[0], cached.folds[0].epochs[0]
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith(("train_loss_", "val_", "test_")):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    # online: the whole teacher; cached: the teacher without its LLM (the cache holds what it gives)
    assert loads == [False, True]
    again = run_trial(cfg("cached").model_copy(update={"output_dir": tmp_path / "again"}))
    assert loads[2:] == [True]
    strip = lambda e: {k: v for k, v in e.items() if k not in ("wall_s", "samples_per_s")}  # noqa: E731
    assert strip(again.folds[0].epochs[0]) == strip(b)
    assert again.folds[0].teacher == cached.folds[0].teacher
