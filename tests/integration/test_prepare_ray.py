"""Preparation on Ray: folds built side by side as Ray tasks give the same bytes as built in process,
and ``pldistill-sweep prepare`` / ``cache`` report them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from _corpus import SMALL_CORPUS
from conftest import private_ray

from pldistill.config import TrialConfig
from pldistill.prepare import PrepareOptions, prepare_configs


def _cfg(cache: Path) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1, 2], "synth": SMALL_CORPUS},
        "model": {"teacher_mode": "online", "teacher_finetune": {"epochs": 1}},
        "train": {"num_threads": 1}, "hparams": {"objective": "pl_distill"}, "cache_dir": str(cache),
    })


def _digests(entries) -> dict[tuple[str, int | None], str]:
    out = {}
    for e in entries:
        if e.artifact == "corpus":  # its manifests name their own folder
            continue
        p = Path(e.path)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        h = hashlib.sha256()
        for f in files:
            if f.suffix in (".json",) and f.name != "metrics.json":  # tokenizer/config files: same code writes them
                continue
            h.update(f.name.encode() + f.read_bytes())
        out[(e.artifact, e.fold)] = h.hexdigest()
    return out


def test_folds_built_as_ray_tasks_equal_those_built_in_process(tmp_path) -> None:
    quiet = PrepareOptions(log=lambda m: None, parallel=False)
    in_process = prepare_configs([_cfg(tmp_path / "a")], quiet)
    lines: list[str] = []
    with private_ray():  # the caller's Ray: preparation uses it and leaves it up
        on_ray = prepare_configs([_cfg(tmp_path / "b")], PrepareOptions(log=lines.append, parallel=True))
    assert [(e.artifact, e.fold) for e in on_ray.entries] == [(e.artifact, e.fold) for e in in_process.entries]
    assert {e.artifact for e in on_ray.entries} == {"corpus", "features", "teacher", "student_prior"}
    assert all(e.built for e in on_ray.entries)
    # each fold's chain ran as its own task and said so
    assert any(line.startswith("prepared fold 1:") for line in lines)
    assert any(line.startswith("prepared fold 2:") for line in lines)
    assert _digests(on_ray.entries) == _digests(in_process.entries)
