"""fused_distill_terms: equals today's path (materialised student logits, then CE and KL) in value and
gradient, chunked or not; an independent NumPy float64 reference for each term; edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pldistill.losses import kl_divergence, kl_divergence_from_hidden
from pldistill.losses.ce import cross_entropy
from pldistill.losses.fused import FUSED_TERMS, fused_distill_terms
from pldistill.losses.reduction import REDUCTIONS

F64, F32 = torch.float64, torch.float32
B, L, HS, HT, V = 2, 9, 6, 7, 13
ALL = tuple(FUSED_TERMS)
TOL = {F32: dict(rtol=1e-5, atol=1e-5), F64: dict(rtol=1e-10, atol=1e-10)}
#: (head requires grad, grad_in_forward): the backward recomputes the logits unless the head is frozen
#: and grad_in_forward is on, in which case the forward computes the hidden-state gradients.
MODES = {"head_grad": (True, True), "frozen": (False, True), "frozen_recompute": (False, False)}


def _rand(seed: int, *shape: int, dtype: torch.dtype = F64, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    """Audio and response positions: 5 + 2 in sample 0, 3 + 3 in sample 1 (13 in all, a prime)."""
    audio = torch.zeros(B, L, dtype=torch.bool)
    response = torch.zeros(B, L, dtype=torch.bool)
    audio[0, 1:6] = True
    response[0, [7, 8]] = True
    audio[1, [0, 2, 3]] = True
    response[1, 5:8] = True
    return audio, response


def _inputs(dtype: torch.dtype, head_grad: bool = True) -> dict[str, torch.Tensor]:
    labels = torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(99))
    return dict(hidden=_rand(0, B, L, HS, dtype=dtype).requires_grad_(True),
                weight=_rand(1, V, HS, dtype=dtype, scale=0.9).requires_grad_(head_grad),
                t_hidden=_rand(2, B, L, HT, dtype=dtype), t_weight=_rand(3, V, HT, dtype=dtype, scale=0.9),
                labels=labels)


def _today(x: dict[str, torch.Tensor], terms: tuple[str, ...], teacher: str, temperature: float,
           reduction: str) -> dict[str, torch.Tensor]:
    """Today's path: student logits materialised, then the pure functions with ``reduction``."""
    audio, response = _masks()
    z = F.linear(x["hidden"], x["weight"])
    t_logits = F.linear(x["t_hidden"], x["t_weight"])
    out = {}
    for t in terms:
        mask_name, direction = FUSED_TERMS[t]
        mask = audio if mask_name == "audio" else response
        if direction is None:
            out[t] = cross_entropy(z, x["labels"], mask, reduction=reduction)
        elif teacher == "logits":
            out[t] = kl_divergence(t_logits, z, mask, temperature=temperature, direction=direction,
                                   reduction=reduction)
        else:
            out[t] = kl_divergence_from_hidden(x["t_hidden"], x["t_weight"], z, mask, temperature=temperature,
                                               direction=direction, reduction=reduction)
    return out


def _fused(x: dict[str, torch.Tensor], terms: tuple[str, ...], teacher: str, temperature: float,
           reduction: str, chunk: int, in_forward: bool = True) -> dict[str, torch.Tensor]:
    audio, response = _masks()
    side = dict(teacher_logits=F.linear(x["t_hidden"], x["t_weight"])) if teacher == "logits" else \
        dict(teacher_hidden=x["t_hidden"], teacher_lm_head=x["t_weight"])
    return fused_distill_terms(x["hidden"], x["weight"], x["labels"], response, audio, terms=terms,
                               temperature=temperature, chunk_size=chunk, reduction=reduction,
                               grad_in_forward=in_forward, **side)


def _grads(values: dict[str, torch.Tensor], x: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of a weighted sum with distinct weights, so each term's gradient counts."""
    total = sum((0.5 + i) * v for i, v in enumerate(values.values()))
    params = [x["hidden"]] + ([x["weight"]] if x["weight"].requires_grad else [])
    return list(torch.autograd.grad(total, params))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("terms", [ALL, ("ce", "kl_audio", "kl_response"), ("rkl_response",), ("ce",)])
@pytest.mark.parametrize("chunk", [1, 4, 5, 13, 64])  # 13 union positions: divisors and not
@pytest.mark.parametrize("teacher", ["logits", "hidden"])
@pytest.mark.parametrize("mode", MODES)
def test_equals_todays_path(dtype: torch.dtype, terms: tuple[str, ...], chunk: int, teacher: str, mode: str) -> None:
    head_grad, in_forward = MODES[mode]
    x = _inputs(dtype, head_grad)
    ref = _today(x, terms, teacher, 2.0, "batch_mean")
    got = _fused(x, terms, teacher, 2.0, "batch_mean", chunk, in_forward)
    assert list(got) == list(terms)
    for t in terms:
        assert got[t].dtype == ref[t].dtype
        torch.testing.assert_close(got[t], ref[t], **TOL[dtype])
    for g, r in zip(_grads(got, x), _grads(ref, x)):
        torch.testing.assert_close(g, r, **TOL[dtype])


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("chunk", [3, 64])
@pytest.mark.parametrize("mode", MODES)
def test_reductions_equal_the_pure_functions(dtype: torch.dtype, reduction: str, chunk: int, mode: str) -> None:
    head_grad, in_forward = MODES[mode]
    x = _inputs(dtype, head_grad)
    ref = _today(x, ALL, "hidden", 1.5, reduction)
    got = _fused(x, ALL, "hidden", 1.5, reduction, chunk, in_forward)
    for t in ALL:
        torch.testing.assert_close(got[t], ref[t], **TOL[dtype])
    for g, r in zip(_grads(got, x), _grads(ref, x)):
        torch.testing.assert_close(g, r, **TOL[dtype])


def test_reduction_per_term_mapping() -> None:
    x = _inputs(F64)
    audio, response = _masks()
    got = fused_distill_terms(x["hidden"], x["weight"], x["labels"], response, audio, terms=("ce", "kl_audio"),
                              teacher_hidden=x["t_hidden"], teacher_lm_head=x["t_weight"], chunk_size=4,
                              reduction={"ce": "sample_sum"})
    z = F.linear(x["hidden"], x["weight"])
    torch.testing.assert_close(got["ce"], cross_entropy(z, x["labels"], response, reduction="sample_sum"))
    torch.testing.assert_close(got["kl_audio"], kl_divergence_from_hidden(x["t_hidden"], x["t_weight"], z, audio))


# --- independent NumPy float64 reference ------------------------------------------------------------

def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_term(term: str, h: np.ndarray, w: np.ndarray, th: np.ndarray, tw: np.ndarray, labels: np.ndarray,
             masks: dict[str, np.ndarray], t: float, reduction: str) -> float:
    """One term from the definitions (eq. 5-7), sample by sample in plain loops."""
    mask_name, direction = FUSED_TERMS[term]
    per_sample, count = [], 0
    for b in range(h.shape[0]):
        rows = np.flatnonzero(masks[mask_name][b])
        values = []
        for i in rows:
            zs, zt = h[b, i] @ w.T, th[b, i] @ tw.T
            if direction is None:
                values.append(-_np_log_softmax(zs)[labels[b, i]])
                continue
            ps, pt = np.exp(_np_log_softmax(zs / t)), np.exp(_np_log_softmax(zt / t))
            p, q = (pt, ps) if direction == "forward" else (ps, pt)
            values.append(float((p * np.log(p / q)).sum()))
        count += len(values)
        per_sample.append(values)
    if reduction == "batch_mean":
        return sum(map(sum, per_sample)) / max(count, 1)
    if reduction == "sample_mean":
        return float(np.mean([sum(v) / max(len(v), 1) for v in per_sample]))
    return float(np.mean([sum(v) for v in per_sample]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_numpy_reference(reduction: str) -> None:
    x = _inputs(F64)
    audio, response = _masks()
    got = _fused(x, ALL, "hidden", 2.0, reduction, 4)
    arrays = [x[k].detach().numpy() for k in ("hidden", "weight", "t_hidden", "t_weight", "labels")]
    masks = {"audio": audio.numpy(), "response": response.numpy(), "ce": response.numpy()}
    for t in ALL:
        assert got[t].item() == pytest.approx(_np_term(t, *arrays, masks, 2.0, reduction), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("reduction", ["sample_mean", "sample_sum"])
def test_ce_mask_leaves_out_unlabelled_samples_and_keeps_them_in_b(reduction: str) -> None:
    """An unlabelled clip (its response is the teacher's answer) adds nothing to CE but counts in B,
    as the single-clip losses of an accumulated batch would; the KL terms still read its response."""
    x = _inputs(F64)
    audio, response = _masks()
    ce_mask = response.clone()
    ce_mask[1] = False  # sample 1 unlabelled
    got = fused_distill_terms(x["hidden"], x["weight"], x["labels"], response, audio, terms=ALL,
                              teacher_hidden=x["t_hidden"], teacher_lm_head=x["t_weight"], temperature=2.0,
                              chunk_size=4, reduction=reduction, ce_mask=ce_mask)
    arrays = [x[k].detach().numpy() for k in ("hidden", "weight", "t_hidden", "t_weight", "labels")]
    masks = {"audio": audio.numpy(), "response": response.numpy(), "ce": ce_mask.numpy()}
    for t in ALL:
        assert got[t].item() == pytest.approx(_np_term(t, *arrays, masks, 2.0, reduction), rel=1e-10, abs=1e-12)
    only_first = fused_distill_terms(x["hidden"][:1], x["weight"], x["labels"][:1], response[:1], audio[:1],
                                     terms=("ce",), reduction=reduction)["ce"]
    assert got["ce"].item() == pytest.approx(only_first.item() / 2, rel=1e-12)  # mean over B = 2 clips
    unfused = cross_entropy(F.linear(x["hidden"], x["weight"]), x["labels"], ce_mask, reduction=reduction)
    torch.testing.assert_close(got["ce"], unfused)
    g_fused = torch.autograd.grad(got["ce"], x["hidden"])[0]
    g_ref = torch.autograd.grad(unfused, x["hidden"])[0]
    torch.testing.assert_close(g_fused, g_ref)
    assert g_fused[1].abs().max().item() == 0.0


# --- properties and edge cases --------------------------------------------------------------------------

@pytest.mark.parametrize("empty", ["audio", "response", "both"])
@pytest.mark.parametrize("chunk", [1, 4])
def test_empty_masks_give_zero_with_zero_gradient(empty: str, chunk: int) -> None:
    x = _inputs(F64)
    audio, response = _masks()
    if empty in ("audio", "both"):
        audio = torch.zeros_like(audio)
    if empty in ("response", "both"):
        response = torch.zeros_like(response)
    got = fused_distill_terms(x["hidden"], x["weight"], x["labels"], response, audio, terms=ALL,
                              teacher_hidden=x["t_hidden"], teacher_lm_head=x["t_weight"], chunk_size=chunk)
    z = F.linear(x["hidden"], x["weight"])
    ref = {"ce": cross_entropy(z, x["labels"], response),
           "kl_audio": kl_divergence_from_hidden(x["t_hidden"], x["t_weight"], z, audio),
           "kl_response": kl_divergence_from_hidden(x["t_hidden"], x["t_weight"], z, response),
           "rkl_response": kl_divergence_from_hidden(x["t_hidden"], x["t_weight"], z, response,
                                                     direction="reverse")}
    for t in ALL:
        torch.testing.assert_close(got[t], ref[t])
        if (empty == "audio") == (t == "kl_audio") or empty == "both":
            assert got[t].item() == 0.0
    for g, r in zip(_grads(got, x), _grads(ref, x)):
        torch.testing.assert_close(g, r)
        assert torch.isfinite(g).all()


@pytest.mark.parametrize("mode", MODES)
def test_unmasked_positions_and_unused_terms_do_not_leak(mode: str) -> None:
    """Garbage outside the masks changes nothing; a NaN term left out of the loss (its gradient None,
    as the objective does for a zero weight) cannot reach the gradient."""
    head_grad, in_forward = MODES[mode]
    x = _inputs(F64, head_grad)
    audio, response = _masks()
    clean = fused_distill_terms(x["hidden"], x["weight"], x["labels"], response, audio, terms=ALL,
                                teacher_hidden=x["t_hidden"], teacher_lm_head=x["t_weight"], chunk_size=4,
                                grad_in_forward=in_forward)
    g_clean = torch.autograd.grad(clean["ce"] + clean["kl_response"], x["hidden"])[0]
    hidden = x["hidden"].detach().clone()
    hidden[~(audio | response)] = float("nan")
    t_hidden = x["t_hidden"].clone()
    t_hidden[~(audio | response)] = float("inf")
    t_hidden[audio] = float("nan")  # kl_audio becomes NaN; it is logged, not optimised
    labels = torch.where(response, x["labels"], 10**6)  # out-of-range labels where CE does not read
    hidden.requires_grad_(True)
    dirty = fused_distill_terms(hidden, x["weight"], labels, response, audio, terms=ALL,
                                teacher_hidden=t_hidden, teacher_lm_head=x["t_weight"], chunk_size=4,
                                grad_in_forward=in_forward)
    assert torch.isnan(dirty["kl_audio"])
    for t in ("ce", "kl_response", "rkl_response"):
        torch.testing.assert_close(dirty[t], clean[t])
    g_dirty = torch.autograd.grad(dirty["ce"] + dirty["kl_response"], hidden)[0]
    torch.testing.assert_close(g_dirty, g_clean)
    assert (g_dirty[~response] == 0).all()


def test_frozen_head_gets_no_gradient() -> None:
    x = _inputs(F64, head_grad=False)
    got = _fused(x, ALL, "logits", 2.0, "batch_mean", 5)
    ref = _today(x, ALL, "logits", 2.0, "batch_mean")
    (g,), (r,) = _grads(got, x), _grads(ref, x)
    torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)
    assert x["weight"].grad is None


def test_zero_for_the_teacher_own_head() -> None:
    x = _inputs(F64)
    audio, response = _masks()
    got = fused_distill_terms(x["hidden"], x["weight"], x["labels"], response, audio, terms=ALL[1:],
                              teacher_hidden=x["hidden"], teacher_lm_head=x["weight"], chunk_size=3)
    for v in got.values():
        assert v.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode: str) -> None:
    head_grad, in_forward = MODES[mode]
    x = _inputs(F64, head_grad)
    audio, response = _masks()

    def f(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out = fused_distill_terms(h, w, x["labels"], response, audio, terms=ALL, teacher_hidden=x["t_hidden"],
                                  teacher_lm_head=x["t_weight"], chunk_size=3, temperature=1.7,
                                  reduction={"ce": "sample_sum", "kl_audio": "sample_mean"},
                                  grad_in_forward=in_forward)
        return out["ce"] + 0.8 * out["kl_audio"] + 1.3 * out["kl_response"] + 0.6 * out["rkl_response"]

    assert torch.autograd.gradcheck(f, (x["hidden"], x["weight"]))


def test_no_grad_forward_and_values_independent_of_mode() -> None:
    """Under no_grad (logging an ablated term) nothing is computed for a backward pass, and the values
    are the same bits whichever way the gradients are computed."""
    x = _inputs(F32, head_grad=False)
    with_grad = _fused(x, ALL, "logits", 2.0, "batch_mean", 4, in_forward=True)
    recompute = _fused(x, ALL, "logits", 2.0, "batch_mean", 4, in_forward=False)
    with torch.no_grad():
        plain = _fused(x, ALL, "logits", 2.0, "batch_mean", 4)
    for t in ALL:
        assert with_grad[t].grad_fn is not None and plain[t].grad_fn is None
        assert torch.equal(with_grad[t], recompute[t]) and torch.equal(with_grad[t], plain[t])


def test_bf16_model_gives_fp32_terms_close_to_reference() -> None:
    x = _inputs(torch.bfloat16)
    got = _fused(x, ALL, "logits", 2.0, "batch_mean", 4)
    ref = _today(x, ALL, "logits", 2.0, "batch_mean")
    for t in ALL:
        assert got[t].dtype == F32
        torch.testing.assert_close(got[t], ref[t], rtol=1e-5, atol=1e-5)
    for g, r in zip(_grads(got, x), _grads(ref, x)):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g, r, rtol=2e-2, atol=2e-2)


def test_invalid_arguments() -> None:
    x = _inputs(F64)
    audio, response = _masks()
    args = (x["hidden"], x["weight"], x["labels"], response, audio)
    with pytest.raises(ValueError, match="unknown term"):
        fused_distill_terms(*args, terms=("kl",))
    with pytest.raises(ValueError, match="teacher_logits, or teacher_hidden"):
        fused_distill_terms(*args, terms=("kl_audio",))
    with pytest.raises(ValueError, match="chunk_size"):
        fused_distill_terms(*args, chunk_size=0)
    with pytest.raises(ValueError, match="reduction"):
        fused_distill_terms(*args, reduction={"ce": "sum"})
    with pytest.raises(ValueError, match="student_lm_head"):
        fused_distill_terms(x["hidden"], x["weight"][:, :3], x["labels"], response, audio)
    with pytest.raises(ValueError, match="audio_mask"):
        fused_distill_terms(*args[:4], audio.long())
    with pytest.raises(ValueError, match="teacher_lm_head"):
        fused_distill_terms(*args, terms=("kl_audio",), teacher_hidden=x["t_hidden"], teacher_lm_head=x["weight"])


@pytest.mark.parametrize("chunk", [1, 2, 5, 64])
def test_overlapping_masks_and_inputs_left_unchanged(chunk: int) -> None:
    """Positions read by several terms (here the audio mask overlaps the response mask) and a
    teacher whose rows the kernel scales in place on its own copies only."""
    x = _inputs(F64)
    audio, response = _masks()
    audio = audio.clone()
    audio[0, 7] = audio[1, 6] = True  # also response positions
    t_logits = F.linear(x["t_hidden"], x["t_weight"])
    before = t_logits.clone(), x["hidden"].detach().clone()
    got = fused_distill_terms(x["hidden"], x["weight"], x["labels"], response, audio, terms=ALL,
                              teacher_logits=t_logits, temperature=2.0, chunk_size=chunk)
    g_got = _grads(got, x)
    assert torch.equal(t_logits, before[0]) and torch.equal(x["hidden"].detach(), before[1])
    z = F.linear(x["hidden"], x["weight"])
    ref = {"ce": cross_entropy(z, x["labels"], response),
           "kl_audio": kl_divergence(t_logits, z, audio, temperature=2.0),
           "kl_response": kl_divergence(t_logits, z, response, temperature=2.0),
           "rkl_response": kl_divergence(t_logits, z, response, temperature=2.0, direction="reverse")}
    for t in ALL:
        torch.testing.assert_close(got[t], ref[t], rtol=1e-10, atol=1e-10)
    for g, r in zip(g_got, _grads(ref, x)):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)
