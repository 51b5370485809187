"""The Ray Data cache builder's actor, called in process (no Ray): under ``pseudo_target: metadata`` its
rows are the teacher forced on the fold's pseudo targets, as the in-process builder writes them."""

from __future__ import annotations

import pytest
import torch
from _clips import LABELS, WINDOW, random_examples
from _pseudo import pseudo_targets

import pldistill.prepare.cache_build as sweep_cache
import pldistill.train.dataset as dataset
import pldistill.train.pseudo_target as pseudo_target
from pldistill.config import TrialConfig
from pldistill.models.loading import build_tiny_teacher, set_encoder_window
from pldistill.train.dataset import FoldData
from pldistill.train.teacher_cache import TeacherCache, cache_rows, teacher_dims


@pytest.mark.parametrize("mode", ["label", "metadata"])
def test_actor_rows_follow_the_pseudo_target(tmp_path, monkeypatch, mode):
    teacher = build_tiny_teacher(seed=3)
    set_encoder_window(teacher.audio_tower, WINDOW)
    teacher.model.eval().requires_grad_(False)
    data = FoldData(dataset="synthetic", fold=1, labels=LABELS, window_s=WINDOW, features_key="a0",
                    train=random_examples(4, 0, "tr"), val=random_examples(1, 1, "va"), test=[])
    targets = pseudo_targets(data.train + data.val, LABELS)
    monkeypatch.setattr(dataset, "prepare_fold", lambda cfg, fold: data)
    monkeypatch.setattr(sweep_cache, "_load_teacher", lambda cfg, d, log: teacher)
    monkeypatch.setattr(pseudo_target, "fold_pseudo_targets",  # no audio to derive them from here
                        lambda cfg, d: targets if cfg.hparams.pseudo_target == "metadata" else None)
    cfg = TrialConfig.model_validate({"cache_dir": str(tmp_path), "hparams": {"objective": "caad",
                                                                               "pseudo_target": mode}})
    actor = sweep_cache._TeacherRowsActor(cfg.to_json(), 1)
    keys = ["tr2", "va0", "tr0"]
    got = actor({"key": keys})
    examples = [ex for k in keys for ex in data.train + data.val if ex.key == k]
    train = {ex.key for ex in data.train}
    meta = teacher_dims(teacher)
    want = cache_rows(teacher, examples, LABELS, teacher_keys=train,
                      pseudo_targets=targets if mode == "metadata" else None)
    gold = cache_rows(teacher, examples, LABELS, teacher_keys=train)
    a, b, g = (TeacherCache.from_table(t, meta) for t in (got, want, gold))
    for key in ("tr2", "tr0"):
        torch.testing.assert_close(a.row(key, "hidden_response_text"), b.row(key, "hidden_response_text"))
        assert (a.row(key, "hidden_response").shape[0] > g.row(key, "hidden_response").shape[0]) == \
            (mode == "metadata")
