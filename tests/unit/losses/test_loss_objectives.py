"""Objectives: weighted sums of logged terms, ablations, name checks, gradients, term formulas."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _objectives import objective as build

from pldistill.losses import (
    OBJECTIVES,
    TERMS,
    DistillBatch,
    awcka,
    kl_divergence,
    relation_distance,
)

MakeBatch = Callable[..., DistillBatch]
#: The objectives that read a DistillBatch (emodistill reads a ClassifierBatch: test_loss_emodistill_objective.py).
AUDIOLM = [n for n, o in OBJECTIVES.items() if o.family == "audiolm"]


def test_registered_names_are_what_config_and_schema_use() -> None:
    from pldistill.config import Hyperparameters
    from pldistill.losses import BATCH_TYPES
    from pldistill.results.schema import LOSS_TERMS

    for family, batch_type in BATCH_TYPES.items():  # every term reads fields of its family's batch
        batch_fields = {f.name for f in dataclasses.fields(batch_type)}
        assert {f for t in TERMS.values() if t.family == family for f in t.inputs} <= batch_fields
    assert all(set(o.weights) <= set(TERMS) for o in OBJECTIVES.values())
    assert all({TERMS[t].family for t in o.weights} == {o.family} for o in OBJECTIVES.values())
    # every weight an objective names is a hyperparameter (its default written there once)
    hp = set(Hyperparameters.model_fields)
    assert {h for o in OBJECTIVES.values() for h in o.weights.values() if h} <= hp
    # the results schema has one loss column per registered term, plus the total
    assert ("total", *TERMS) == LOSS_TERMS
    for name in OBJECTIVES:  # the config accepts exactly the registered objectives
        Hyperparameters(objective=name)
    with pytest.raises(ValueError, match=", ".join(OBJECTIVES)):
        Hyperparameters(objective="pl_distil")


def test_paper_objective_weights() -> None:
    objective = build("pl_distill")
    assert objective.weights == {"ce": 1.0, "cka": 1.0, "kl_audio": 0.8, "kl_response": 1.0}
    assert objective.options.temperature == 2.0
    assert objective.needs_teacher and objective.needs_audio
    sft = build("sft")
    assert not sft.needs_teacher and not sft.needs_audio
    assert build("forward_kl").needs_teacher and not build("forward_kl").needs_audio


@pytest.mark.parametrize("name", AUDIOLM)
@pytest.mark.parametrize("t2", [False, True])
def test_total_is_weighted_sum_of_logged_terms(make_batch: MakeBatch, name: str, t2: bool) -> None:
    objective = build(name, alpha=0.7, beta=0.3, gamma=1.9, llava_kd_relation=0.4, kl_t2_scaling=t2)
    out = objective(make_batch())
    assert set(out.terms) == set(OBJECTIVES[name].weights)
    expected = sum(objective.weights[t] * out.terms[t] for t in out.terms)
    torch.testing.assert_close(out.total, expected)
    for term, hyper in OBJECTIVES[name].weights.items():
        scale = 4.0 if t2 and TERMS[term].kl else 1.0
        base = {None: 1.0, "alpha": 0.7, "beta": 0.3, "gamma": 1.9, "llava_kd_relation": 0.4}[hyper]
        assert objective.weights[term] == pytest.approx(base * scale)


def test_zero_weight_removes_term_but_still_logs_it(make_batch: MakeBatch) -> None:
    full = build("pl_distill")(make_batch())
    ablated_objective = build("pl_distill", alpha=0.0)
    batch = make_batch(requires_grad=True)
    ablated = ablated_objective(batch)
    assert "cka" in ablated.terms
    torch.testing.assert_close(ablated.terms["cka"], full.terms["cka"])
    torch.testing.assert_close(ablated.total, full.total - full.terms["cka"])
    ablated.total.backward()
    assert batch.student_audio is not None and batch.student_audio.grad is None  # nothing else reads it
    # term_weights gives the same ablation, and can add a term the objective lacks.
    via_terms = build("pl_distill", term_weights={"cka": 0.0})
    assert via_terms.weights == ablated_objective.weights
    extended = build("ldist", term_weights={"cka": 0.5})
    assert extended.weights["cka"] == 0.5 and extended.needs_audio


def test_unknown_names_list_valid_ones() -> None:
    with pytest.raises(ValueError, match="sft, forward_kl, reverse_kl, llava_kd, ldist, pl_distill"):
        build("pl_distil")
    with pytest.raises(ValueError, match="ce, cka, kl_audio, kl_response, rkl_response, relation, relation_projector"):
        build("pl_distill", term_weights={"kl_prompt": 1.0})
    with pytest.raises(ValueError, match="biased, debiased"):
        build("pl_distill", cka_estimator="unbiased")


def test_sft_without_teacher_fields(make_batch: MakeBatch) -> None:
    batch = dataclasses.replace(
        make_batch(requires_grad=True),
        teacher_logits=None,
        teacher_audio=None,
        student_audio=None,
        audio_token_mask=None,
        audio_weights=None,
    )
    out = build("sft")(batch)
    assert set(out.terms) == {"ce"}
    out.total.backward()
    assert batch.student_logits.grad is not None


def test_missing_fields_are_named(make_batch: MakeBatch) -> None:
    batch = dataclasses.replace(make_batch(), audio_weights=None)
    with pytest.raises(ValueError, match="audio_weights"):
        build("pl_distill")(batch)


@pytest.mark.parametrize("name", AUDIOLM)
def test_gradient_reaches_student_not_teacher(make_batch: MakeBatch, name: str) -> None:
    batch = make_batch(requires_grad=True)
    teacher = [batch.teacher_logits, batch.teacher_text_logits, batch.teacher_audio, batch.audio_weights]
    for t in teacher:
        assert t is not None
        t.requires_grad_(True)
    objective = build(name)
    objective(batch).total.backward()
    assert batch.student_logits.grad is not None and batch.student_logits.grad.abs().sum() > 0
    assert batch.student_audio is not None
    assert (batch.student_audio.grad is not None) == objective.needs_audio
    assert all(t.grad is None for t in teacher if t is not None)


def test_terms_match_their_definitions(make_batch: MakeBatch) -> None:
    """The wiring: each term is its pure function with the objective's per-sample reductions (CE summed
    over a sample's response tokens, eq. 7; KL averaged over a sample's positions), then the mean over
    samples, so a batch equals accumulated single clips."""
    from pldistill.losses.ce import cross_entropy

    batch = make_batch()
    opts = build("pl_distill").options
    assert (
        batch.teacher_logits is not None
        and batch.teacher_audio is not None
        and batch.student_audio is not None
    )
    rm = batch.response_mask
    per_sample_ce = [F.cross_entropy(batch.student_logits[b][rm[b]], batch.labels[b][rm[b]], reduction="sum")
                     for b in range(len(rm))]
    torch.testing.assert_close(TERMS["ce"].fn(batch, opts), torch.stack(per_sample_ce).mean())
    mean_opts = build("pl_distill", ce_reduction="mean").options
    torch.testing.assert_close(TERMS["ce"].fn(batch, mean_opts),
                               cross_entropy(batch.student_logits, batch.labels, rm, reduction="sample_mean"))
    for b in range(len(rm)):  # the per-sample reductions do differ from the batch mean here
        assert rm[b].sum() != rm[0].sum() or b == 0
    torch.testing.assert_close(
        TERMS["kl_audio"].fn(batch, opts),
        kl_divergence(batch.teacher_logits, batch.student_logits, batch.audio_mask, temperature=2.0,
                      reduction="sample_mean"),
    )
    torch.testing.assert_close(
        TERMS["rkl_response"].fn(batch, opts),
        kl_divergence(batch.teacher_logits, batch.student_logits, rm, temperature=2.0, direction="reverse",
                      reduction="sample_mean"),
    )
    assert batch.audio_weights is not None
    torch.testing.assert_close(
        TERMS["cka"].fn(batch, opts),
        1
        - awcka(batch.teacher_audio, batch.student_audio, batch.audio_weights, batch.audio_token_mask).mean(),
    )


def test_ce_ignores_non_response_positions(make_batch: MakeBatch) -> None:
    batch = make_batch()
    dirty = batch.student_logits.clone()
    dirty[~batch.response_mask] = float("nan")
    opts = build("sft").options
    torch.testing.assert_close(
        TERMS["ce"].fn(dataclasses.replace(batch, student_logits=dirty), opts), TERMS["ce"].fn(batch, opts)
    )


def test_chunked_kl_objective_equals_unchunked(make_batch: MakeBatch) -> None:
    batch = make_batch()
    plain = build("pl_distill")(batch)
    chunked = build("pl_distill", kl_chunk_size=2)(batch)
    torch.testing.assert_close(chunked.total, plain.total)


def _np_relation(t: np.ndarray, s: np.ndarray) -> float:
    def corr(h: np.ndarray) -> np.ndarray:
        h = h / np.linalg.norm(h, axis=1, keepdims=True)
        return (h @ h.T).ravel()

    rt, rs = corr(t), corr(s)
    return float(1 - rt @ rs / (np.linalg.norm(rt) * np.linalg.norm(rs)))


def test_relation_distance() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    s = torch.randn(2, 6, 4, generator=g, dtype=torch.float64)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    got = relation_distance(t, s, mask)
    for b, n in ((0, 6), (1, 4)):
        assert got[b].item() == pytest.approx(_np_relation(t[b, :n].numpy(), s[b, :n].numpy()), rel=1e-10)
    torch.testing.assert_close(relation_distance(t, t, mask), torch.zeros(2, dtype=torch.float64))
    dirty = s.clone()
    dirty[~mask] = float("nan")
    torch.testing.assert_close(relation_distance(t, 3.0 * dirty, mask), got)


def test_llava_kd_relation_reads_logits_at_audio_positions(make_batch: MakeBatch) -> None:
    """The baseline as published: RDist on the output logits at the audio positions (NumPy reference
    per sample), the same from cached hidden states; the projector variant is a separate ablation."""
    batch = make_batch()
    opts = build("llava_kd").options
    assert batch.teacher_logits is not None
    got = TERMS["relation"].fn(batch, opts)
    t, s, audio = batch.teacher_logits.numpy(), batch.student_logits.detach().numpy(), batch.audio_mask.numpy()
    expected = np.mean([_np_relation(t[b][audio[b]], s[b][audio[b]]) for b in range(len(t))])
    assert float(got) == pytest.approx(expected, rel=1e-10)
    # from hidden states and an lm_head, as the teacher cache gives them: the same value
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(*batch.teacher_logits.shape[:2], 5, generator=g, dtype=torch.float64)
    head = torch.randn(batch.teacher_logits.shape[-1], 5, generator=g, dtype=torch.float64)
    via_logits = dataclasses.replace(batch, teacher_logits=hidden @ head.T)
    via_hidden = dataclasses.replace(batch, teacher_logits=None, teacher_hidden=hidden, teacher_lm_head=head)
    torch.testing.assert_close(TERMS["relation"].fn(via_hidden, opts), TERMS["relation"].fn(via_logits, opts))
    # the objective weights it by llava_kd_relation and never reads the projector outputs
    objective = build("llava_kd", llava_kd_relation=0.25)
    assert objective.weights["relation"] == 0.25 and not objective.needs_audio
    assert build("llava_kd_projector").needs_audio and "relation_projector" in build("llava_kd_projector").weights
