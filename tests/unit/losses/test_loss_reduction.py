"""Per-sample reductions: a batch of B clips of different lengths gives the mean of the B single-clip
loss terms and the mean of their gradients (batch 1 x accumulation B == batch B x accumulation 1)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from _objectives import objective as objective_for

from pldistill.losses import (
    OBJECTIVES,
    WEIGHTING_VARIANTS,
    audio_token_weights,
    awcka,
    contrastive_hidden,
    kl_divergence,
    kl_divergence_from_hidden,
    relation_distance,
)
from pldistill.losses.ce import cross_entropy
from pldistill.losses.distill_terms import _audio_rows
from pldistill.losses.fused import FUSED_TERMS, fused_distill_terms
from pldistill.losses.reduction import position_weights

D, H, V, HT, E0, ES, ET, HEADS = 5, 6, 17, 7, 4, 5, 8, 2
#: (sequence length, audio tokens, response tokens) per clip: all different.
CLIPS = ((9, 4, 1), (13, 6, 3), (8, 5, 2))
#: "fused_frozen": the fused terms with a frozen lm_head, whose forward pass computes the gradients.
LOGIT_PATHS = ("logits", "logits_chunked", "hidden", "fused", "fused_frozen")
TOL = dict(rtol=1e-5, atol=1e-6)


@dataclass
class Inputs:
    """One batch (B clips right-padded with finite garbage, or one clip unpadded)."""

    x: torch.Tensor  # (B, L, D) student LLM input features
    u: torch.Tensor  # (B, La, E0) student projector input
    labels: torch.Tensor  # (B, L)
    audio_mask: torch.Tensor  # (B, L)
    response_mask: torch.Tensor  # (B, L) logit positions whose next token is a response token
    token_mask: torch.Tensor  # (B, La)
    t_hidden: torch.Tensor  # (B, L, HT)
    t_audio: torch.Tensor  # (B, La, ET)
    attention: torch.Tensor  # (B, HEADS, L, L)


def _clip(i: int) -> Inputs:
    length, n_audio, n_resp = CLIPS[i]
    g = torch.Generator().manual_seed(100 + i)
    audio = torch.zeros(1, length, dtype=torch.bool)
    audio[0, 1 : 1 + n_audio] = True
    response = torch.zeros(1, length, dtype=torch.bool)
    response[0, length - 1 - n_resp : length - 1] = True
    scores = torch.randn(1, HEADS, length, length, generator=g)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    return Inputs(x=torch.randn(1, length, D, generator=g), u=torch.randn(1, n_audio, E0, generator=g),
                  labels=torch.randint(0, V, (1, length), generator=g), audio_mask=audio, response_mask=response,
                  token_mask=torch.ones(1, n_audio, dtype=torch.bool), t_hidden=2 * torch.randn(1, length, HT, generator=g),
                  t_audio=torch.randn(1, n_audio, ET, generator=g),
                  attention=scores.masked_fill(~causal, float("-inf")).softmax(-1))


def _pad(t: torch.Tensor, dims: tuple[int, ...], sizes: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Right-pads ``dims`` of ``t`` to ``sizes`` with garbage of its dtype (finite, not zero)."""
    out_shape = list(t.shape)
    for d, s in zip(dims, sizes):
        out_shape[d] = s
    if t.dtype == torch.bool:
        out = torch.zeros(out_shape, dtype=torch.bool)
    elif t.dtype == torch.long:
        out = torch.randint(0, V, out_shape, generator=g)
    else:
        out = 7.0 * torch.randn(out_shape, generator=g).abs()
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


def _batch(clips: list[Inputs]) -> Inputs:
    g = torch.Generator().manual_seed(7)
    lmax = max(c.x.shape[1] for c in clips)
    amax = max(c.u.shape[1] for c in clips)
    fields = {}
    for name in Inputs.__dataclass_fields__:
        parts = []
        for c in clips:
            t = getattr(c, name)
            dims = (1,) if name in ("x", "labels", "audio_mask", "response_mask", "t_hidden") else \
                (1,) if name in ("u", "token_mask", "t_audio") else (2, 3)
            sizes = (amax,) if name in ("u", "token_mask", "t_audio") else (lmax,) * len(dims)
            parts.append(_pad(t, dims, sizes, g))
        fields[name] = torch.cat(parts)
    return Inputs(**fields)


@dataclass
class Student:
    """Parameters shared by every clip: the gradients compared are theirs."""

    a: torch.Tensor  # (D, H): x -> final hidden states
    w: torch.Tensor  # (V, H): lm_head
    p: torch.Tensor  # (E0, ES): projector

    @classmethod
    def make(cls) -> Student:
        g = torch.Generator().manual_seed(1)
        return cls(*(torch.randn(*s, generator=g).requires_grad_(True) for s in ((D, H), (V, H), (E0, ES))))

    def params(self) -> list[torch.Tensor]:
        return [self.a, self.w, self.p]


T_HEAD = torch.randn(V, HT, generator=torch.Generator().manual_seed(2))


def _terms(s: Student, b: Inputs, path: str, red: dict[str, str], weighting: str) -> dict[str, torch.Tensor]:
    """Every term of every objective, each reduced per sample; the logit terms by ``path``."""
    hidden = torch.tanh(b.x @ s.a)
    masks = {"audio": b.audio_mask, "response": b.response_mask, "ce": b.response_mask}
    if path.startswith("fused"):
        w = s.w.detach() if path == "fused_frozen" else s.w
        out = fused_distill_terms(hidden, w, b.labels, b.response_mask, b.audio_mask, terms=tuple(FUSED_TERMS),
                                  teacher_hidden=b.t_hidden, teacher_lm_head=T_HEAD, temperature=2.0,
                                  chunk_size=3, reduction=red)
    else:
        z = F.linear(hidden, s.w)
        out = {}
        for t, (mask_name, direction) in FUSED_TERMS.items():
            m = masks[mask_name]
            if direction is None:
                out[t] = cross_entropy(z, b.labels, m, reduction=red[t])
            elif path == "hidden":
                out[t] = kl_divergence_from_hidden(b.t_hidden, T_HEAD, z, m, temperature=2.0, direction=direction,
                                                   chunk_size=2, reduction=red[t])
            else:
                out[t] = kl_divergence(F.linear(b.t_hidden, T_HEAD), z, m, temperature=2.0, direction=direction,
                                       chunk_size=2 if path == "logits_chunked" else None, reduction=red[t])
    # CAAD's contrastive response KL (unfused: the fused kernel has no such term); a text-only hidden
    # state per position derived from the audio-aware one, so padding garbage stays garbage
    mixed = contrastive_hidden(b.t_hidden, torch.roll(b.t_hidden, 1, dims=-1), 1.5)
    if path in ("logits", "logits_chunked"):
        out["kl_response_cd"] = kl_divergence(F.linear(mixed, T_HEAD), F.linear(hidden, s.w), b.response_mask,
                                              temperature=2.0, reduction=red["kl_response"],
                                              chunk_size=2 if path == "logits_chunked" else None)
    else:
        out["kl_response_cd"] = kl_divergence_from_hidden(mixed, T_HEAD, F.linear(hidden, s.w), b.response_mask,
                                                          temperature=2.0, chunk_size=2,
                                                          reduction=red["kl_response"])
    student_audio = b.u @ s.p
    weights = audio_token_weights(b.attention, b.audio_mask, torch.roll(b.response_mask, 1, 1), weighting)
    out["cka"] = 1.0 - awcka(b.t_audio, student_audio, weights, b.token_mask).mean()
    out["relation_projector"] = relation_distance(b.t_audio, student_audio, b.token_mask).mean()
    # LLaVA-KD's relation reads the logits at the audio positions (materialised on every path)
    rows, valid = _audio_rows(F.linear(hidden, s.w), b.audio_mask)
    t_rows, _ = _audio_rows(F.linear(b.t_hidden, T_HEAD), b.audio_mask)
    out["relation"] = relation_distance(t_rows, rows, valid).mean()
    return out


def _value_and_grads(fn, s: Student) -> tuple[torch.Tensor, list[torch.Tensor]]:
    value = fn()
    return value.detach(), list(torch.autograd.grad(value, s.params(), allow_unused=True, materialize_grads=True))


def _assert_batch_is_mean_of_clips(fn_of_batch, s: Student) -> None:
    clips = [_clip(i) for i in range(len(CLIPS))]
    value, grads = _value_and_grads(lambda: fn_of_batch(_batch(clips)), s)
    singles = [_value_and_grads(lambda c=c: fn_of_batch(c), s) for c in clips]
    torch.testing.assert_close(value, torch.stack([v for v, _ in singles]).mean(), **TOL)
    for i, g in enumerate(grads):
        torch.testing.assert_close(g, torch.stack([gs[i] for _, gs in singles]).mean(0), **TOL)


REDUCTION_SETS = ({"ce": "sample_sum", "kl_audio": "sample_mean", "kl_response": "sample_mean",
                   "rkl_response": "sample_mean"},
                  {"ce": "sample_mean", "kl_audio": "sample_sum", "kl_response": "sample_sum",
                   "rkl_response": "sample_sum"})


@pytest.mark.parametrize("term", [*FUSED_TERMS, "cka", "relation", "relation_projector"])
@pytest.mark.parametrize("path", LOGIT_PATHS)
@pytest.mark.parametrize("red", REDUCTION_SETS, ids=["eq7", "swapped"])
def test_each_term_batch_equals_mean_of_clips(term: str, path: str, red: dict[str, str]) -> None:
    s = Student.make()
    _assert_batch_is_mean_of_clips(lambda b: _terms(s, b, path, red, "attention_last")[term], s)


@pytest.mark.parametrize("objective", [n for n, o in OBJECTIVES.items() if o.family == "audiolm"])
@pytest.mark.parametrize("weighting", WEIGHTING_VARIANTS)
@pytest.mark.parametrize("path", ["logits_chunked", "fused", "fused_frozen"])
def test_every_objective_and_weighting(objective: str, weighting: str, path: str) -> None:
    s = Student.make()
    weights = objective_for(objective).weights

    def total(b: Inputs) -> torch.Tensor:
        terms = _terms(s, b, path, REDUCTION_SETS[0], weighting)
        return sum(w * terms[t] for t, w in weights.items())

    _assert_batch_is_mean_of_clips(total, s)


@pytest.mark.parametrize("path", LOGIT_PATHS)
def test_batch_mean_is_not_per_sample(path: str) -> None:
    """The default reduction weighs clips by their number of positions: the property fails, so the
    test above can fail."""
    s = Student.make()
    red = dict.fromkeys(FUSED_TERMS, "batch_mean")
    with pytest.raises(AssertionError):
        _assert_batch_is_mean_of_clips(lambda b: _terms(s, b, path, red, "uniform")["kl_audio"], s)


def test_position_weights() -> None:
    mask = torch.tensor([[True, True, False, True], [False, True, False, False], [False] * 4])
    torch.testing.assert_close(position_weights(mask, "batch_mean"), mask.float() / 4)
    torch.testing.assert_close(position_weights(mask, "sample_sum"), mask.float() / 3)
    expected = torch.tensor([[1 / 9, 1 / 9, 0, 1 / 9], [0, 1 / 3, 0, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(position_weights(mask, "sample_mean"), expected)
    with pytest.raises(ValueError, match="batch_mean, sample_mean, sample_sum"):
        position_weights(mask, "mean")


def test_cross_entropy_reductions_match_formulas() -> None:
    """batch_mean is F.cross_entropy over the response rows (the objective's CE so far); sample_sum is
    eq. 7 per sample, averaged."""
    g = torch.Generator().manual_seed(3)
    z, labels = torch.randn(2, 5, V, generator=g, dtype=torch.float64), torch.randint(0, V, (2, 5), generator=g)
    m = torch.tensor([[False, True, True, True, False], [True, False, False, False, False]])
    nll = -torch.log_softmax(z, -1).gather(-1, labels[..., None]).squeeze(-1)
    torch.testing.assert_close(cross_entropy(z, labels, m), F.cross_entropy(z[m], labels[m]))
    torch.testing.assert_close(cross_entropy(z, labels, m, reduction="sample_sum"), (nll[0, 1:4].sum() + nll[1, 0]) / 2)
    torch.testing.assert_close(cross_entropy(z, labels, m, reduction="sample_mean"),
                               (nll[0, 1:4].mean() + nll[1, 0]) / 2)
    empty = cross_entropy(z.requires_grad_(True), labels, torch.zeros_like(m), reduction="sample_sum")
    assert empty.item() == 0.0


@pytest.mark.parametrize("reduction", ["sample_mean", "sample_sum"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "jsd"])
def test_kl_reduction_chunked_and_from_hidden_agree(reduction: str, direction: str) -> None:
    g = torch.Generator().manual_seed(4)
    th = torch.randn(3, 6, HT, generator=g, dtype=torch.float64)
    head = T_HEAD.double()
    m = torch.rand(3, 6, generator=g) > 0.4
    m[2] = False  # a sample without positions counts as 0 in the mean over samples
    results = []
    for chunk, hidden in ((None, False), (2, False), (5, True)):
        s = torch.randn(3, 6, V, generator=torch.Generator().manual_seed(5), dtype=torch.float64).requires_grad_(True)
        kw = dict(temperature=1.5, direction=direction, chunk_size=chunk, reduction=reduction)
        v = kl_divergence_from_hidden(th, head, s, m, **kw) if hidden else kl_divergence(F.linear(th, head), s, m, **kw)
        v.backward()
        results.append((v.detach(), s.grad))
    per_sample = [kl_divergence(F.linear(th[i : i + 1], head), s.detach()[i : i + 1], m[i : i + 1],
                                temperature=1.5, direction=direction, reduction=reduction) for i in range(3)]
    torch.testing.assert_close(results[0][0], torch.stack(per_sample).mean())
    for v, grad in results[1:]:
        torch.testing.assert_close(v, results[0][0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, results[0][1], rtol=1e-12, atol=1e-14)
