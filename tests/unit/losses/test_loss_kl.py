"""kl_divergence: properties, masking, independent formulas, and chunked == unchunked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pldistill.losses import KL_DIRECTIONS, kl_divergence

F64 = torch.float64
B, L, V = 2, 7, 11


def _logits(
    seed: int, scale: float = 2.0, dtype: torch.dtype = F64, shape: tuple[int, ...] = (B, L, V)
) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def _mask() -> torch.Tensor:
    m = torch.zeros(B, L, dtype=torch.bool)
    m[0, [1, 2, 3, 5]] = True
    m[1, [0, 4, 5, 6]] = True
    return m  # 8 positions, not contiguous


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_divergence(t: np.ndarray, s: np.ndarray, temperature: float, direction: str) -> float:
    """Mean over rows, written from the definitions with probabilities (not log-space tricks)."""
    pt, ps = np.exp(_np_log_softmax(t / temperature)), np.exp(_np_log_softmax(s / temperature))

    def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return (p * np.log(p / q)).sum(-1)

    if direction == "forward":
        rows = kl(pt, ps)
    elif direction == "reverse":
        rows = kl(ps, pt)
    else:
        m = 0.5 * (pt + ps)
        rows = 0.5 * kl(pt, m) + 0.5 * kl(ps, m)
    return float(rows.mean())


@pytest.mark.parametrize("direction", KL_DIRECTIONS)
def test_zero_for_identical_inputs(direction: str) -> None:
    z = _logits(0)
    for chunk in (None, 3):
        v = kl_divergence(z, z.clone(), _mask(), temperature=2.0, direction=direction, chunk_size=chunk)
        assert v.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("direction", KL_DIRECTIONS)
@pytest.mark.parametrize("seed", range(3))
def test_non_negative(direction: str, seed: int) -> None:
    assert kl_divergence(_logits(seed), _logits(seed + 10), _mask(), direction=direction).item() >= 0.0


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_forward_equals_torch_kl_div(temperature: float) -> None:
    t, s, m = _logits(0), _logits(1), _mask()
    expected = F.kl_div(
        F.log_softmax(s[m] / temperature, -1),
        F.log_softmax(t[m] / temperature, -1),
        reduction="batchmean",
        log_target=True,
    )
    torch.testing.assert_close(kl_divergence(t, s, m, temperature=temperature), expected)


@pytest.mark.parametrize("direction", KL_DIRECTIONS)
def test_matches_independent_formulas(direction: str) -> None:
    t, s, m = _logits(2), _logits(3), _mask()
    expected = _np_divergence(t[m].numpy(), s[m].numpy(), 2.0, direction)
    assert kl_divergence(t, s, m, temperature=2.0, direction=direction).item() == pytest.approx(
        expected, rel=1e-10
    )


@pytest.mark.parametrize("direction", KL_DIRECTIONS)
@pytest.mark.parametrize("chunk", [1, 3, 5, 7, 8, 64])  # 8 masked positions: divisors and not
def test_chunked_equals_unchunked(direction: str, chunk: int) -> None:
    t, m = _logits(4), _mask()
    s_full = _logits(5).requires_grad_(True)
    s_chunk = s_full.detach().clone().requires_grad_(True)
    full = kl_divergence(t, s_full, m, temperature=2.0, direction=direction)
    chunked = kl_divergence(t, s_chunk, m, temperature=2.0, direction=direction, chunk_size=chunk)
    (3.0 * full).backward()
    (3.0 * chunked).backward()
    torch.testing.assert_close(chunked, full, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(s_chunk.grad, s_full.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("direction", KL_DIRECTIONS)
def test_chunked_gradcheck(direction: str) -> None:
    t, s = _logits(6, shape=(2, 3, 5)), _logits(7, shape=(2, 3, 5)).requires_grad_(True)
    m = torch.tensor([[True, False, True], [True, True, False]])
    assert torch.autograd.gradcheck(
        lambda x: kl_divergence(t, x, m, temperature=1.5, direction=direction, chunk_size=3), (s,)
    )


@pytest.mark.parametrize("direction", KL_DIRECTIONS)
@pytest.mark.parametrize("chunk", [None, 3])
def test_unmasked_positions_have_no_influence(direction: str, chunk: int | None) -> None:
    t, s, m = _logits(8), _logits(9), _mask()
    clean_s = s.clone().requires_grad_(True)
    clean = kl_divergence(t, clean_s, m, direction=direction, chunk_size=chunk)
    clean.backward()
    dirty_t, dirty_s = t.clone(), s.clone()
    dirty_t[~m] = float("nan")
    dirty_s[~m] = 1e38
    dirty_s[0, 0, 0] = float("inf")
    dirty_s.requires_grad_(True)
    dirty = kl_divergence(dirty_t, dirty_s, m, direction=direction, chunk_size=chunk)
    dirty.backward()
    torch.testing.assert_close(dirty, clean)
    assert dirty_s.grad is not None and clean_s.grad is not None
    torch.testing.assert_close(dirty_s.grad, clean_s.grad)
    assert (dirty_s.grad[~m] == 0).all()


@pytest.mark.parametrize("chunk", [None, 3])
def test_empty_mask_gives_zero_with_finite_gradient(chunk: int | None) -> None:
    s = torch.full((B, L, V), float("nan"), dtype=F64, requires_grad=True)
    v = kl_divergence(_logits(0), s, torch.zeros(B, L, dtype=torch.bool), chunk_size=chunk)
    v.backward()
    assert v.item() == 0.0
    assert s.grad is not None and (s.grad == 0).all()


@pytest.mark.parametrize("chunk", [None, 3])
def test_teacher_gets_no_gradient(chunk: int | None) -> None:
    t = _logits(0).requires_grad_(True)
    s = _logits(1).requires_grad_(True)
    kl_divergence(t, s, _mask(), chunk_size=chunk).backward()
    assert t.grad is None and s.grad is not None


@pytest.mark.parametrize("chunk", [None, 3])
def test_bf16_input_gives_fp32_result(chunk: int | None) -> None:
    t, s = _logits(0, dtype=torch.bfloat16), _logits(1, dtype=torch.bfloat16).requires_grad_(True)
    v = kl_divergence(t, s, _mask(), temperature=2.0, chunk_size=chunk)
    v.backward()
    assert v.dtype == torch.float32
    assert s.grad is not None and s.grad.dtype == torch.bfloat16
    ref = kl_divergence(t.float(), s.detach().float(), _mask(), temperature=2.0)
    torch.testing.assert_close(v, ref)


def test_non_contiguous_student_view() -> None:
    padded = _logits(1, shape=(B, L, V + 5)).requires_grad_(True)  # a padded vocabulary, sliced
    t, m = _logits(0), _mask()
    chunked = kl_divergence(t, padded[..., :V], m, chunk_size=3)
    chunked.backward()
    grad_chunked = padded.grad.clone()
    padded.grad = None
    kl_divergence(t, padded[..., :V], m).backward()
    torch.testing.assert_close(padded.grad, grad_chunked)
    assert (grad_chunked[..., V:] == 0).all()


def test_invalid_arguments() -> None:
    t, s, m = _logits(0), _logits(1), _mask()
    with pytest.raises(ValueError, match="forward, reverse, jsd"):
        kl_divergence(t, s, m, direction="sideways")
    with pytest.raises(ValueError, match="temperature"):
        kl_divergence(t, s, m, temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        kl_divergence(t, s, m, chunk_size=0)
    with pytest.raises(ValueError, match="mask"):
        kl_divergence(t, s, m.long())
    with pytest.raises(ValueError, match="logits"):
        kl_divergence(t[..., :5], s, m)
