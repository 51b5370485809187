"""data.labelled_fraction on a real (tiny) fold: the teacher answers the unlabelled clips once, the
distillation students train on every clip (the unlabelled ones forced on those answers, the CE
skipping them), sft on the labelled clips alone for as many steps, and the teacher cache holds the
teacher's outputs on the answers."""

from __future__ import annotations

import json

import pytest
from _corpus import SMALL_CORPUS

from pldistill.config import TrialConfig
from pldistill.models.inputs import collate
from pldistill.train import trial
from pldistill.train.dataset import prepare_fold
from pldistill.train.teacher import ANSWERS_FILE, teacher_key
from pldistill.train.teacher_cache import TeacherCache, teacher_cache_dir


def _cfg(tmp_path, cache: str, objective: str, fraction: float = 0.5) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS,
                 "labelled_fraction": fraction, "labelled_seed": 1},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 2},
        "model": {"teacher_mode": "cached"}, "hparams": {"objective": objective},
        "output_dir": str(tmp_path / objective), "cache_dir": cache,
    })


@pytest.fixture(scope="module")
def folds(tmp_path_factory, tiny_cache):
    """The fold as sft and as forward KL set it up (the teacher fine-tuned and its cache built once)."""
    tmp = tmp_path_factory.mktemp("lf")
    out = {}
    for objective in ("forward_kl", "sft"):
        cfg = _cfg(tmp, tiny_cache, objective)
        out[objective] = (cfg, trial._setup_fold(cfg, 0, 1, trial.FoldResult(fold=1, best_epoch=-1, best={},
                                                                                 teacher={}), None))
    return out


def test_teacher_answers_every_unlabelled_clip_once(folds):
    cfg, f = folds["forward_kl"]
    data = f.data
    assert data.unlabelled and data.train and all(not ex.labelled for ex in data.unlabelled)
    saved = json.loads((cfg.cache_dir / "teachers" / teacher_key(cfg, data) / ANSWERS_FILE).read_text())
    assert set(saved["answers"]) == {ex.key for ex in data.unlabelled}
    assert 0.0 <= saved["ua"] <= 1.0
    # the teacher is not the one of the fully labelled fold: it trained on the labelled clips only
    full = TrialConfig.model_validate({**cfg.model_dump(mode="json"),
                                       "data": {**cfg.data.model_dump(mode="json"), "labelled_fraction": 1.0}})
    assert teacher_key(full, prepare_fold(full, 1)) != teacher_key(cfg, data)


def test_distillation_trains_on_every_clip_forced_on_the_teachers_answers(folds):
    cfg, f = folds["forward_kl"]
    saved = json.loads((cfg.cache_dir / "teachers" / teacher_key(cfg, f.data) / ANSWERS_FILE).read_text())["answers"]
    keys = [ex.key for ex in f.train]
    assert keys == [ex.key for ex in f.data.train] + [ex.key for ex in f.data.unlabelled]
    unlabelled = f.train[len(f.data.train):]
    assert all(not ex.labelled and ex.label == saved[ex.key] for ex in unlabelled)
    assert all(ex.labelled for ex in f.train[:len(f.data.train)])
    # the teacher is not always right (so the check above tells its answers from the gold labels)
    assert saved != {ex.key: ex.label for ex in f.data.unlabelled}


def test_sft_trains_on_the_labelled_clips_for_as_many_steps(folds):
    _, kd = folds["forward_kl"]
    cfg, f = folds["sft"]
    assert [ex.key for ex in f.train] == [ex.key for ex in f.data.train]
    assert f.schedule.micro_per_epoch == kd.schedule.micro_per_epoch
    assert f.schedule.micro_per_epoch > -(-len(f.train) // cfg.train.batch_size)  # it must cycle
    batches = trial._epoch_batches(f, cfg.train, rank=0, world=1)
    assert len(batches) >= f.schedule.micro_per_epoch
    used = {int(i) for b in batches[:f.schedule.micro_per_epoch] for i in b}
    assert used == set(range(len(f.train)))


def test_ce_is_divided_by_the_expected_number_of_labelled_clips(folds):
    """Distillation batches mix labelled and unlabelled clips: the CE's share rho is the labelled share
    of the clips (ce_divisor: expected_labelled); sft's batches are all labelled (rho 1)."""
    _, kd = folds["forward_kl"]
    _, sft = folds["sft"]
    rho = len(kd.data.train) / (len(kd.data.train) + len(kd.data.unlabelled))
    assert 0.0 < rho < 1.0 and kd.models.objective.options.ce_share == pytest.approx(rho)
    assert sft.models.objective.options.ce_share == 1.0


def test_cache_rows_of_unlabelled_clips_follow_the_answers(folds):
    cfg, f = folds["forward_kl"]
    cache = TeacherCache(teacher_cache_dir(cfg, f.data))
    unlabelled = f.train[len(f.data.train):][:4]
    batch = collate(unlabelled, f.teacher.tokenizer, f.data.labels)
    rows = cache.batch(batch.keys, "cpu")
    # the response rows are those of the answers' tokens: the step puts them back at these positions
    rows.teacher_hidden(batch.audio_mask, batch.response_mask)
    assert rows.hidden_response.shape[0] == int(batch.response_mask.sum())
    assert batch.labelled is not None and not batch.labelled.any()
    assert not batch.ce_mask.any() and batch.response_mask.any()


def test_metadata_pseudo_targets_of_unlabelled_clips_start_with_the_teachers_answer(folds):
    """CAAD's pseudo_target: metadata composes an unlabelled clip's target from the teacher's answer,
    never its gold label (which no student may read)."""
    from pldistill.train.pseudo_target import fold_pseudo_targets

    cfg, f = folds["forward_kl"]
    meta = cfg.model_copy(update={"hparams": cfg.hparams.model_copy(update={"pseudo_target": "metadata"})})
    targets = fold_pseudo_targets(meta, f.data)
    assert targets is not None
    answered = f.train[len(f.data.train):]
    for ex in answered:
        assert targets[ex.key].split(",")[0] == f.data.labels[ex.label]  # the answer, as the response
    gold = {ex.key: ex.label for ex in f.data.unlabelled}
    assert any(ex.label != gold[ex.key] for ex in answered), "the teacher erred somewhere: the check can fail"


def test_prepare_fold_draws_the_labelled_part_with_labelled_seed(tmp_path, tiny_cache):
    from pldistill.data import load_fold, split_labelled
    from pldistill.train.dataset import manifests_dir

    cfg = _cfg(tmp_path, tiny_cache, "sft")  # labelled_seed 1, val_seed 0
    manifests, audio = manifests_dir(cfg)
    whole = load_fold(manifests, "synthetic", 1, audio_root=audio, val_fraction=cfg.data.val_fraction, val_seed=0)
    drawn = {seed: [c.key for c in split_labelled(whole.train, 0.5, seed)[0]] for seed in (0, 1)}
    assert drawn[0] != drawn[1]  # so a part drawn with val_seed (0) instead would be told apart
    assert [ex.key for ex in prepare_fold(cfg, 1).train] == drawn[1]
