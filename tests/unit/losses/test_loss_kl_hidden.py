"""kl_divergence_from_hidden: equals kl_divergence on lm_head(hidden), chunked or not, never holds teacher logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _objectives import objective

from pldistill.losses import KL_DIRECTIONS, kl_divergence, kl_divergence_from_hidden
from pldistill.losses.objectives import DistillBatch

F64 = torch.float64
B, L, H, V = 2, 7, 6, 11


def _rand(seed: int, *shape: int, dtype: torch.dtype = F64, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def _mask() -> torch.Tensor:
    m = torch.zeros(B, L, dtype=torch.bool)
    m[0, [1, 2, 3, 5]] = True
    m[1, [0, 4, 5, 6]] = True
    return m


@pytest.mark.parametrize("direction", KL_DIRECTIONS)
@pytest.mark.parametrize("chunk", [None, 1, 3, 8, 64])
@pytest.mark.parametrize("bias", [False, True])
def test_equals_kl_on_recomputed_logits(direction: str, chunk: int | None, bias: bool) -> None:
    hidden, weight, m = _rand(0, B, L, H), _rand(1, V, H, scale=0.8), _mask()
    b = _rand(2, V) if bias else None
    s_ref = _rand(3, B, L, V, scale=2.0).requires_grad_(True)
    s_hid = s_ref.detach().clone().requires_grad_(True)
    ref = kl_divergence(F.linear(hidden, weight, b), s_ref, m, temperature=1.7, direction=direction)
    got = kl_divergence_from_hidden(hidden, weight, s_hid, m, temperature=1.7, direction=direction,
                                    chunk_size=chunk, lm_head_bias=b)
    (2.0 * ref).backward()
    (2.0 * got).backward()
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(s_hid.grad, s_ref.grad, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("direction", KL_DIRECTIONS)
def test_gradcheck(direction: str) -> None:
    hidden, weight, m = _rand(4, B, L, H), _rand(5, V, H), _mask()
    s = _rand(6, B, L, V).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: kl_divergence_from_hidden(hidden, weight, x, m, direction=direction, chunk_size=3), (s,))


def test_teacher_side_gets_no_gradient_and_unmasked_rows_do_not_matter() -> None:
    hidden, weight, m = _rand(7, B, L, H).requires_grad_(True), _rand(8, V, H).requires_grad_(True), _mask()
    s = _rand(9, B, L, V).requires_grad_(True)
    clean = kl_divergence_from_hidden(hidden, weight, s, m, chunk_size=3)
    clean.backward()
    assert hidden.grad is None and weight.grad is None
    dirty = hidden.detach().clone()
    dirty[~m] = float("nan")
    torch.testing.assert_close(kl_divergence_from_hidden(dirty, weight, s, m, chunk_size=3), clean)
    assert (s.grad[~m] == 0).all()


def test_zero_for_the_teacher_own_logits_and_empty_mask() -> None:
    hidden, weight = _rand(10, B, L, H), _rand(11, V, H)
    same = F.linear(hidden, weight)
    assert kl_divergence_from_hidden(hidden, weight, same, _mask()).item() == pytest.approx(0.0, abs=1e-12)
    s = torch.full((B, L, V), float("nan"), dtype=F64, requires_grad=True)
    v = kl_divergence_from_hidden(hidden, weight, s, torch.zeros(B, L, dtype=torch.bool))
    v.backward()
    assert v.item() == 0.0 and (s.grad == 0).all()


def test_bf16_head_matches_bf16_logits() -> None:
    hidden, weight = _rand(12, B, L, H), _rand(13, V, H, dtype=torch.bfloat16)
    s = _rand(14, B, L, V, dtype=torch.float32)
    ref = kl_divergence(F.linear(hidden.to(torch.bfloat16), weight), s, _mask(), temperature=2.0)
    got = kl_divergence_from_hidden(hidden.float(), weight, s, _mask(), temperature=2.0, chunk_size=3)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref)


def test_invalid_arguments() -> None:
    hidden, weight, s, m = _rand(0, B, L, H), _rand(1, V, H), _rand(2, B, L, V), _mask()
    with pytest.raises(ValueError, match="lm_head_weight"):
        kl_divergence_from_hidden(hidden, weight[:, :3], s, m)
    with pytest.raises(ValueError, match="teacher_hidden"):
        kl_divergence_from_hidden(hidden[:, :3], weight, s, m)
    with pytest.raises(ValueError, match="chunk_size"):
        kl_divergence_from_hidden(hidden, weight, s, m, chunk_size=0)
    with pytest.raises(ValueError, match="forward, reverse, jsd"):
        kl_divergence_from_hidden(hidden, weight, s, m, direction="up")


def test_objective_reads_hidden_when_no_teacher_logits() -> None:
    """A DistillBatch with (teacher_hidden, teacher_lm_head) gives the same KL terms as with logits."""
    hidden, weight, m = _rand(15, B, L, H), _rand(16, V, H), _mask()
    s = _rand(17, B, L, V, scale=2.0)
    labels = torch.full((B, L), -100)
    labels[m] = torch.randint(0, V, (int(m.sum()),), generator=torch.Generator().manual_seed(0))
    common = dict(student_logits=s, labels=labels, response_mask=m, audio_mask=~m)
    obj = objective("ldist", kl_chunk_size=2)
    with_logits = obj(DistillBatch(teacher_logits=F.linear(hidden, weight), **common))
    with_hidden = obj(DistillBatch(teacher_hidden=hidden, teacher_lm_head=weight, **common))
    for name, value in with_logits.terms.items():
        torch.testing.assert_close(with_hidden.terms[name], value)
    with pytest.raises(ValueError, match="teacher_logits"):
        obj(DistillBatch(teacher_hidden=hidden, **common))
