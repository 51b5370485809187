"""``pseudo_target: metadata`` in the step: the student's CE stays on the gold answer, every other term reads
the student forced on the pseudo target, beside the teacher forced on it (one student forward, two sequences).

Tiny random-weight models in fp32 (``conftest.tiny_distill``), tolerance 1e-5.
"""

from __future__ import annotations

import pytest
import torch
from _clips import LABELS
from _objectives import objective as build
from _pseudo import pseudo_targets
from _steps import TOL, assert_same_step, step_and_grads
from test_microbatch import assert_batch_equals_accumulation

from pldistill.config import TrialConfig
from pldistill.losses import OBJECTIVES, objectives
from pldistill.models.audiolm import AudioLMHead
from pldistill.models.inputs import collate, pseudo_target_inputs
from pldistill.train.step import DistillModels, distill_step
from pldistill.train.teacher_cache import TeacherCache, ensure_teacher_cache, teacher_cache_key

CLIPS = (4, 0, 7, 2)
HPARAMS = dict(alpha=0.7, beta=0.8, gamma=1.1, temperature=2.0, caad_contrast=0.5)


@pytest.fixture(scope="module")
def meta(tiny_distill, tmp_path_factory):
    """``(teacher, head, data, metadata cache, pseudo targets)``: the fold's cache forced on the pseudo targets."""
    teacher, head, data, label_cache = tiny_distill
    tmp = tmp_path_factory.mktemp("meta")
    targets = pseudo_targets(data.train + data.val + data.test, LABELS)
    cfg = TrialConfig.model_validate({"cache_dir": str(tmp / "cache"), "output_dir": str(tmp / "run"),
                                      "model": {"teacher_finetune": {"enabled": False}},
                                      "hparams": {"objective": "caad", "pseudo_target": "metadata"}})
    assert teacher_cache_key(cfg, data) not in str(label_cache.path)
    cache = TeacherCache(ensure_teacher_cache(cfg, data, teacher, log=lambda m: None, batch_size=3,
                                              pseudo_targets=targets))
    return teacher, head, data, cache, targets


def _models(setup, mode: str, objective: str, fused: bool = True, weighting: str = "attention_last",
            **hparams) -> DistillModels:
    teacher, head, _, cache = setup[:4]
    common = dict(student=head, vocab=len(teacher.tokenizer), objective=build(objective, **{**HPARAMS, **hparams}),
                  weighting=weighting, sharpen_p=3.0, fused_logits=fused)
    if mode == "cached":
        return DistillModels(audio_tower=None, teacher=None, cache=cache, **common)
    return DistillModels(audio_tower=teacher.audio_tower, teacher=AudioLMHead(teacher.model), **common)






def test_pseudo_inputs_keep_the_layout_and_change_only_the_response(tiny_distill):
    teacher, _, data, _ = tiny_distill
    examples = [data.train[i] for i in CLIPS]
    gold = collate(examples, teacher.tokenizer, LABELS)
    same = pseudo_target_inputs(examples, teacher.tokenizer, LABELS, {ex.key: LABELS[ex.label] for ex in examples})
    for name, value in vars(gold).items():  # the label's answer as a pseudo target is the label batch
        assert torch.equal(value, vars(same)[name]) if isinstance(value, torch.Tensor) else value == vars(same)[name]
    pseudo = pseudo_target_inputs(examples, teacher.tokenizer, LABELS, pseudo_targets(examples, LABELS))
    assert torch.equal(pseudo.input_features, gold.input_features) and torch.equal(pseudo.label_index, gold.label_index)
    assert pseudo.keys == gold.keys and pseudo.input_ids.shape[1] > gold.input_ids.shape[1]
    for i in range(len(examples)):
        start = int(gold.response_mask[i].nonzero()[0]) + 1  # first response token
        assert torch.equal(pseudo.input_ids[i, :start], gold.input_ids[i, :start])
        assert torch.equal(pseudo.audio_mask[i, :start], gold.audio_mask[i, :start])
        assert int(pseudo.response_mask[i].sum()) > int(gold.response_mask[i].sum())
        text = teacher.tokenizer.decode(pseudo.input_ids[i, start:int(pseudo.attention_mask[i].sum())])
        assert text == pseudo_targets(examples, LABELS)[examples[i].key] + "<|im_end|>"


@pytest.mark.parametrize("mode", ["online", "cached"])
@pytest.mark.parametrize("fused", [True, False])
def test_a_pseudo_target_equal_to_the_label_gives_label_mode(tiny_distill, mode, fused):
    teacher, head, data, _ = tiny_distill
    examples = [data.train[i] for i in CLIPS]
    batch = collate(examples, teacher.tokenizer, LABELS)
    same = pseudo_target_inputs(examples, teacher.tokenizer, LABELS, {ex.key: LABELS[ex.label] for ex in examples})
    models = _models(tiny_distill, mode, "caad", fused)
    assert_same_step(*step_and_grads(models, head, batch), *step_and_grads(models, head, batch, same))


@pytest.mark.parametrize("objective", ["caad", "pl_distill"])
@pytest.mark.parametrize("fused", [True, False])
def test_ce_reads_the_gold_rows_and_every_other_term_the_pseudo_rows(tiny_distill, objective, fused):
    """CE as in label mode; every other term as if the pseudo target were the gold answer (the teacher and
    the student both forced on it); total and gradients are the sum of those two parts."""
    teacher, head, data, _ = tiny_distill
    examples = [data.train[i] for i in CLIPS]
    batch = collate(examples, teacher.tokenizer, LABELS)
    pseudo = pseudo_target_inputs(examples, teacher.tokenizer, LABELS, pseudo_targets(examples, LABELS))
    models = _models(tiny_distill, "online", objective, fused)
    got, g_got = step_and_grads(models, head, batch, pseudo)
    gold, g_gold = step_and_grads(_models(tiny_distill, "online", "sft", fused), head, batch)
    rest_weights = {t: w for t, w in models.objective.weights.items() if t != "ce"}
    rest_models = _models(tiny_distill, "online", objective, fused)
    rest_models.objective = objectives.WeightedSumObjective(objective, rest_weights, models.objective.options)
    rest, g_rest = step_and_grads(rest_models, head, pseudo)
    assert list(got.terms) == list(OBJECTIVES[objective].weights)
    torch.testing.assert_close(got.terms["ce"], gold.terms["ce"], **TOL)
    for k in rest_weights:
        torch.testing.assert_close(got.terms[k], rest.terms[k], **TOL, msg=k)
    torch.testing.assert_close(got.total, gold.total + rest.total, **TOL)
    for k in g_got:
        torch.testing.assert_close(g_got[k], g_gold[k] + g_rest[k], **TOL, msg=k)
    # and it is not label mode: the response KL differs
    label, _ = step_and_grads(models, head, batch)
    kl = "kl_response_cd" if objective == "caad" else "kl_response"
    assert abs(float(label.terms[kl]) - float(got.terms[kl])) > 1e-4


@pytest.mark.parametrize("mode", ["online", "cached"])
def test_fused_split_step_equals_the_materialised_one(meta, mode, monkeypatch):
    teacher, head, data, _, targets = meta
    calls: list[int] = []
    real = objectives.fused_logit_terms
    monkeypatch.setattr(objectives, "fused_logit_terms", lambda *a, **k: calls.append(1) or real(*a, **k))
    examples = [data.train[i] for i in CLIPS]
    batch = collate(examples, teacher.tokenizer, LABELS)
    pseudo = pseudo_target_inputs(examples, teacher.tokenizer, LABELS, targets)
    fused = step_and_grads(_models(meta, mode, "caad", True), head, batch, pseudo)
    assert calls, "the fused path must be taken"
    calls.clear()
    assert_same_step(*fused, *step_and_grads(_models(meta, mode, "caad", False), head, batch, pseudo))
    assert not calls


@pytest.mark.parametrize(("mode", "objective"), [("online", "caad"), ("cached", "caad"), ("cached", "pl_distill")])
def test_batch_equals_accumulated_single_clips_with_a_pseudo_target(meta, mode, objective, monkeypatch):
    """Exact per-clip normalisation holds with the second sequence: a batch of B equals B batches of one."""
    import test_microbatch

    teacher, head, data, _, targets = meta
    tok = teacher.tokenizer

    def step(models, batch):  # the helper's step, with each batch's pseudo-target twin
        pseudo = pseudo_target_inputs([ex for k in batch.keys for ex in data.train if ex.key == k], tok, LABELS,
                                      targets)
        return distill_step(models, batch, pseudo)

    monkeypatch.setattr(test_microbatch, "distill_step", step)
    models = _models(meta, mode, objective, weighting="attention_sharpened")
    assert_batch_equals_accumulation(models, head, [data.train[i] for i in CLIPS], tok)


def test_a_batch_of_other_clips_is_refused(tiny_distill):
    teacher, head, data, _ = tiny_distill
    examples = [data.train[i] for i in CLIPS]
    batch = collate(examples, teacher.tokenizer, LABELS)
    other = pseudo_target_inputs(examples[::-1], teacher.tokenizer, LABELS, pseudo_targets(examples, LABELS))
    with pytest.raises(ValueError, match="same clips"):
        distill_step(_models(tiny_distill, "online", "caad"), batch, other)
