"""The teacher pool of the synthetic corpus: speakers in no fold, heard only by a teacher fine-tuned here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pldistill.config import TrialConfig
from pldistill.data import load_fold, synthesize_corpus
from pldistill.data.emobox import TEACHER_POOL_FILE, load_teacher_pool
from pldistill.errors import InputError

SMALL = {"speakers": 4, "per_class": 1, "folds": 2, "seed": 7}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pool")
    return (synthesize_corpus(root / "none", teacher_speakers=0, **SMALL),
            synthesize_corpus(root / "two", teacher_speakers=2, **SMALL))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "synth.json"}


def test_the_pool_is_two_more_speakers_in_no_fold(corpora) -> None:
    _, two = corpora
    pool = load_teacher_pool(two, "synthetic")
    assert len(pool) == 2 * 4 * 1 and {c.speaker for c in pool} == {"S05F", "S06M"}
    fold_speakers = {c.speaker for k in (1, 2) for part in ("train", "val", "test")
                     for c in getattr(load_fold(two, "synthetic", k), part)}
    assert fold_speakers == {"S01F", "S02M", "S03F", "S04M"}
    assert all(c.transcript and c.lexical for c in pool)  # the same kind of clips as the folds'


def test_adding_a_pool_changes_no_fold_clip(corpora) -> None:
    none, two = corpora
    a, b = _files(none / "synthetic"), _files(two / "synthetic")
    assert set(b) - set(a) == {TEACHER_POOL_FILE} | {k for k in b if k.startswith(("wav/S05F", "wav/S06M"))}
    assert all(a[k] == b[k] for k in a)  # every fold manifest and wav byte-identical


def test_a_corpus_without_pool_file_has_an_empty_pool(corpora) -> None:
    none, _ = corpora
    assert not (none / "synthetic" / TEACHER_POOL_FILE).exists()
    assert load_teacher_pool(none, "synthetic") == []


def test_a_pool_clip_that_is_also_a_fold_clip_is_refused(corpora, tmp_path) -> None:
    _, two = corpora
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(two, copy)
    test_line = (copy / "synthetic" / "fold_1" / "synthetic_test_fold_1.jsonl").read_text().splitlines()[0]
    with (copy / "synthetic" / TEACHER_POOL_FILE).open("a") as fh:
        fh.write(test_line + "\n")
    fold = load_fold(copy, "synthetic", 1)
    with pytest.raises(InputError) as exc:
        load_teacher_pool(copy, "synthetic", exclude=fold.train + fold.val + fold.test)
    assert exc.value.field == "key" and TEACHER_POOL_FILE in str(exc.value)
    assert json.loads(test_line)["key"] in str(exc.value) and "\n" not in str(exc.value)


def test_the_teacher_fine_tune_trains_on_the_pool_too(tmp_path) -> None:
    """The pool reaches the teacher's fine-tune (more steps, its own cache key) and no fold split."""
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.teacher import ensure_teacher, teacher_key

    def cfg(pool: int) -> TrialConfig:
        return TrialConfig.model_validate({
            "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1],
                     "synth": {**SMALL, "per_class": 2, "teacher_speakers": pool}},
            "model": {"teacher_finetune": {"epochs": 1}},
            "train": {"num_threads": 1}, "output_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")})

    with_pool, without = cfg(2), cfg(0)
    data, plain = prepare_fold(with_pool, 1), prepare_fold(without, 1)
    assert len(data.teacher_pool) == 2 * 4 * 2 and plain.teacher_pool == []
    assert [e.key for e in data.train] == [e.key for e in plain.train]  # the students' data is the same
    assert teacher_key(with_pool, data) != teacher_key(without, plain)
    got: list[str] = []
    ensure_teacher(with_pool, data, log=got.append)
    assert any(f"{len(data.train)} train clips + 16 teacher-pool clips" in ln for ln in got), got
    steps = -(-(len(data.train) + 16) // 8)
    assert any(f": {steps}/{steps} steps (100%)" in ln for ln in got), got


@pytest.mark.parametrize("train_encoder", [None, False])
def test_the_fine_tune_leaves_the_encoder_random_when_told(tmp_path, train_encoder) -> None:
    """teacher_finetune.train_encoder: false keeps the tiny encoder at its initialisation (its own
    cache key); unset, the tiny teacher's encoder is trained (the default, key unchanged)."""
    import torch

    from pldistill.models.loading import load_teacher
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.teacher import ensure_teacher, teacher_key

    ft = {"epochs": 1} if train_encoder is None else {"epochs": 1, "train_encoder": train_encoder}
    cfg = TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1],
                 "synth": {**SMALL, "per_class": 2, "teacher_speakers": 0}},
        "model": {"teacher_finetune": ft},
        "train": {"num_threads": 1}, "output_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")})
    data = prepare_fold(cfg, 1)
    default = cfg.model_copy(update={"model": cfg.model.model_copy(update={
        "teacher_finetune": cfg.model.teacher_finetune.model_copy(update={"train_encoder": None})})})
    assert (teacher_key(cfg, data) == teacher_key(default, data)) == (train_encoder is None)
    tuned, _ = ensure_teacher(cfg, data, log=lambda m: None)
    fresh = load_teacher("tiny", seed=cfg.model.init_seed)
    pairs = [(n, p, dict(fresh.audio_tower.named_parameters())[n]) for n, p in tuned.audio_tower.named_parameters()
             if "embed_positions" not in n]
    changed = [n for n, p, q in pairs if not torch.equal(p, q)]
    assert (changed == []) == (train_encoder is False), changed[:3]
    projector = [(p, dict(fresh.model.named_parameters())[n]) for n, p in tuned.model.named_parameters()
                 if "multi_modal_projector" in n]
    assert projector and any(not torch.equal(p, q) for p, q in projector)  # the rest is trained either way
