"""Exact micro-batching: one batch of B clips equals B batches of one clip accumulated.

For every registered objective and every AwCKA weighting, in cached and online teacher mode: the
loss terms and the total of one ``distill_step`` on B clips of different lengths (so the batch is
padded) equal the mean of the B single-clip figures, and the student's gradients equal those of
the B single-clip backwards of ``total / B`` (what ``trial._train_epoch`` does with ``grad_accum``).
That holds because every term is normalised per sample and then averaged over the samples
(:mod:`pldistill.losses.reduction`; CKA and the relation terms are per-sample values averaged over
the batch). No term is batch-level.

Tiny random-weight models in fp32, tolerance 1e-5 (all cases also pass at 1e-6). The weighting only
changes the ``cka`` term, so objectives without it are run at every weighting all the same (cached
mode; the online path is covered at the paper's weighting and for every weighting of PL-Distill).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _objectives import audiolm_objectives
from _objectives import objective as build

from pldistill.losses import WEIGHTING_VARIANTS
from pldistill.models.audiolm import AudioLMHead
from pldistill.models.inputs import Example, collate
from pldistill.train.step import DistillModels, distill_step

LABELS = ("Neutral", "Happy", "Angry", "Sad")
TOL = dict(rtol=1e-5, atol=1e-5)
CLIPS = (4, 0, 7, 2)  # different lengths and labels: the batch is padded, its responses differ


@pytest.fixture(scope="module")
def setup(tiny_distill):
    data = tiny_distill[2]
    assert len({data.train[i].num_audio_tokens for i in CLIPS}) > 1, "the clips must differ in length"
    return tiny_distill


def _models(setup, mode: str, objective: str, weighting: str, **hparams) -> DistillModels:
    teacher, head, _, cache = setup
    obj = build(objective, **{"alpha": 0.7, "beta": 0.8, "gamma": 1.1, "temperature": 2.0, "llava_kd_relation": 0.5,
                              "caad_contrast": 0.5, **hparams})
    common = dict(student=head, vocab=len(teacher.tokenizer), objective=obj, weighting=weighting, sharpen_p=3.0)
    if mode == "cached":
        return DistillModels(audio_tower=None, teacher=None, cache=cache, **common)
    return DistillModels(audio_tower=teacher.audio_tower, teacher=AudioLMHead(teacher.model), **common)


def _grads(head: AudioLMHead) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in head.named_parameters() if p.requires_grad and p.grad is not None}


def assert_batch_equals_accumulation(models: DistillModels, head: AudioLMHead, examples: list[Example],
                                     tokenizer) -> None:
    """One batch of every clip vs one clip at a time accumulated: terms, total and student gradients."""
    head.zero_grad(set_to_none=True)
    whole = distill_step(models, collate(examples, tokenizer, LABELS))
    whole.total.backward()
    g_whole = _grads(head)
    head.zero_grad(set_to_none=True)
    n = len(examples)
    terms = {k: torch.zeros(()) for k in whole.terms}
    total = torch.zeros(())
    for ex in examples:
        out = distill_step(models, collate([ex], tokenizer, LABELS))
        (out.total / n).backward()
        total += out.total.detach() / n
        for k, v in out.terms.items():
            terms[k] += v.detach().float() / n
    g_acc = _grads(head)
    for k in whole.terms:
        torch.testing.assert_close(whole.terms[k].float(), terms[k], **TOL, msg=k)
    torch.testing.assert_close(whole.total.detach().float(), total, **TOL)
    assert g_whole.keys() == g_acc.keys() and len(g_whole) > 0
    for k in g_whole:
        torch.testing.assert_close(g_whole[k], g_acc[k], **TOL, msg=k)


CASES = [("cached", o, w) for o in audiolm_objectives() for w in WEIGHTING_VARIANTS]
CASES += [("online", o, "attention_last") for o in audiolm_objectives()]
CASES += [("online", "pl_distill", w) for w in WEIGHTING_VARIANTS if w != "attention_last"]


@pytest.mark.parametrize(("mode", "objective", "weighting"), CASES)
def test_batch_equals_accumulated_single_clips(setup, mode, objective, weighting):
    teacher, head, data, _ = setup
    models = _models(setup, mode, objective, weighting)
    assert_batch_equals_accumulation(models, head, [data.train[i] for i in CLIPS], teacher.tokenizer)


@pytest.mark.parametrize("options", [{"ce_reduction": "mean"}, {"cka_estimator": "debiased"},
                                     {"kl_t2_scaling": True}, {"awcka_end_row": True}])
def test_batch_equals_accumulation_under_other_options(setup, options):
    """The options that change a term's arithmetic (CE's mean, the debiased CKA, t**2, the AwCKA rows)."""
    teacher, head, data, _ = setup
    end_row = options.pop("awcka_end_row", False)
    models = _models(setup, "cached", "pl_distill", "attention_sharpened", **options)
    models.awcka_end_row = end_row
    assert_batch_equals_accumulation(models, head, [data.train[i] for i in CLIPS], teacher.tokenizer)


# --- unlabelled clips (data.labelled_fraction): the CE skips them, the teacher's terms do not ------------

def _unlabelled(ex: Example) -> Example:
    return dataclasses.replace(ex, labelled=False)


@pytest.mark.parametrize("objective", audiolm_objectives())
def test_batch_with_unlabelled_clips_equals_accumulation(setup, objective):
    """A batch mixing labelled clips and unlabelled ones (forced on the teacher's answer) still equals
    the clips accumulated one at a time: an unlabelled clip adds 0 to the CE and counts in B."""
    teacher, head, data, _ = setup
    examples = [data.train[i] if k % 2 == 0 else _unlabelled(data.train[i]) for k, i in enumerate(CLIPS)]
    assert_batch_equals_accumulation(_models(setup, "cached", objective, "attention_last"), head, examples,
                                     teacher.tokenizer)


@pytest.mark.parametrize("fused", [True, False])
def test_unlabelled_clip_adds_nothing_to_the_ce_and_everything_to_the_kl(setup, fused):
    """sft on [labelled a, unlabelled b] is half of sft on [a] (value and gradients); forward KL's KL
    term on the same pair is the one of two labelled clips (it reads b's response all the same)."""
    teacher, head, data, _ = setup
    tok = teacher.tokenizer
    a, b = data.train[CLIPS[0]], data.train[CLIPS[1]]

    def run(objective: str, examples: list[Example]):
        models = _models(setup, "cached", objective, "attention_last")
        models.fused_logits = fused
        head.zero_grad(set_to_none=True)
        out = distill_step(models, collate(examples, tok, LABELS))
        out.total.backward()
        return out, _grads(head)

    pair, g_pair = run("sft", [a, _unlabelled(b)])
    alone, g_alone = run("sft", [a])
    torch.testing.assert_close(pair.total.detach(), alone.total.detach() / 2, **TOL)
    for k in g_alone:
        torch.testing.assert_close(g_pair[k], g_alone[k] / 2, **TOL, msg=k)
    mixed, _ = run("forward_kl", [a, _unlabelled(b)])
    both, _ = run("forward_kl", [a, b])
    torch.testing.assert_close(mixed.terms["kl_response"], both.terms["kl_response"], **TOL)
    torch.testing.assert_close(mixed.terms["ce"], alone.terms["ce"] / 2, **TOL)
    assert both.terms["ce"].item() > mixed.terms["ce"].item() > 0
