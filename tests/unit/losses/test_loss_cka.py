"""linear_cka / awcka: properties, an independent float64 NumPy reference of eq. 1-3, and the
debiased estimator against Song et al. (2012)'s unbiased HSIC written out in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pldistill.losses import awcka, linear_cka
from pldistill.losses.cka import _biased_cka, _masked_center, _pick_form

F64 = torch.float64


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(_rand(n, n, seed=seed))
    return q


# ---- independent NumPy references (no library code) -------------------------------------------


def _np_awcka(t: np.ndarray, s: np.ndarray, w: np.ndarray) -> float:
    """Eq. 1-3 for one sample's valid tokens: normalise w, weight, centre, Frobenius form."""
    w = w / w.sum()  # eq. 1
    ht, hs = w[:, None] * t, w[:, None] * s  # eq. 2
    ht, hs = ht - ht.mean(0), hs - hs.mean(0)
    num = np.linalg.norm(ht.T @ hs, "fro") ** 2  # eq. 3
    return float(num / (np.linalg.norm(ht.T @ ht, "fro") * np.linalg.norm(hs.T @ hs, "fro")))


def _np_hsic_song(k: np.ndarray, l_: np.ndarray) -> float:
    """Unbiased HSIC, Song et al. 2012 eq. 5, written term by term."""
    n = k.shape[0]
    kt, lt = k.copy(), l_.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def _np_debiased(t: np.ndarray, s: np.ndarray, w: np.ndarray) -> float:
    ht, hs = w[:, None] * t, w[:, None] * s  # uncentred: the estimator removes the mean itself
    k, l_ = ht @ ht.T, hs @ hs.T
    return _np_hsic_song(k, l_) / np.sqrt(_np_hsic_song(k, k) * _np_hsic_song(l_, l_))


def _np_ucenter(k: np.ndarray) -> np.ndarray:
    """Székely-Rizzo U-centering (Kornblith et al.'s ``center_gram(unbiased=True)``)."""
    n = k.shape[0]
    k = k.copy()
    np.fill_diagonal(k, 0.0)
    means = k.sum(0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    k -= means[:, None] + means[None, :]
    np.fill_diagonal(k, 0.0)
    return k


# ---- properties ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_value_in_unit_interval(seed: int) -> None:
    x, y, w = _rand(3, 9, 5, seed=seed), _rand(3, 9, 11, seed=seed + 100), _rand(3, 9, seed=seed + 200).abs()
    for v in (linear_cka(x, y), awcka(x, y, w)):
        assert ((v >= 0) & (v <= 1 + 1e-12)).all()


def test_identical_inputs_give_one() -> None:
    x, w = _rand(2, 12, 6), _rand(2, 12, seed=1).abs()
    torch.testing.assert_close(linear_cka(x, x), torch.ones(2, dtype=F64))
    torch.testing.assert_close(awcka(x, x, w), torch.ones(2, dtype=F64))


@pytest.mark.parametrize("estimator", ["biased", "debiased"])
def test_invariant_to_orthogonal_transform_and_isotropic_scaling(estimator: str) -> None:
    t, s, w = _rand(2, 10, 7), _rand(2, 10, 4, seed=1), _rand(2, 10, seed=2).abs()
    base = awcka(t, s, w, estimator=estimator)
    torch.testing.assert_close(awcka(t @ _orthogonal(7, 3), s, w, estimator=estimator), base)
    torch.testing.assert_close(awcka(t, s @ _orthogonal(4, 4), w, estimator=estimator), base)
    torch.testing.assert_close(awcka(3.7 * t, 0.01 * s, w, estimator=estimator), base)
    torch.testing.assert_close(awcka(t, s, 5.0 * w, estimator=estimator), base)  # eq. 1 normalises
    plain = linear_cka(t, s)
    torch.testing.assert_close(linear_cka(t @ _orthogonal(7, 5), 1e3 * s), plain)


def test_uniform_weights_equal_linear_cka() -> None:
    t, s = _rand(3, 8, 6), _rand(3, 8, 5, seed=1)
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[1, 6:] = False
    torch.testing.assert_close(awcka(t, s, torch.ones(3, 8), mask), linear_cka(t, s, mask))
    torch.testing.assert_close(awcka(t[0], s[0], torch.full((8,), 0.125)), linear_cka(t[0], s[0]))


def test_padded_tokens_change_nothing() -> None:
    t, s, w = _rand(2, 10, 6), _rand(2, 10, 3, seed=1), _rand(2, 10, seed=2).abs()
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 7:] = False
    mask[1, 5:] = False
    ref = torch.stack([awcka(t[b, :n], s[b, :n], w[b, :n]) for b, n in ((0, 7), (1, 5))])
    garbage_t, garbage_s, garbage_w = t.clone(), s.clone(), w.clone()
    garbage_t[~mask] = float("nan")
    garbage_s[~mask] = 1e30
    garbage_w[~mask] = float("inf")
    for estimator in ("biased", "debiased"):
        expected = torch.stack(
            [awcka(t[b, :n], s[b, :n], w[b, :n], estimator=estimator) for b, n in ((0, 7), (1, 5))]
        )
        torch.testing.assert_close(
            awcka(garbage_t, garbage_s, garbage_w, mask, estimator=estimator), expected
        )
    torch.testing.assert_close(awcka(garbage_t, garbage_s, garbage_w, mask), ref)
    s_leaf = garbage_s.clone().requires_grad_(True)
    awcka(garbage_t, s_leaf, garbage_w, mask).sum().backward()
    assert s_leaf.grad is not None and torch.isfinite(s_leaf.grad).all()
    assert (s_leaf.grad[~mask] == 0).all()
    torch.testing.assert_close(
        linear_cka(garbage_t, garbage_s, mask),
        torch.stack([linear_cka(t[0, :7], s[0, :7]), linear_cka(t[1, :5], s[1, :5])]),
    )


def test_batched_equals_per_sample() -> None:
    t, s, w = _rand(4, 9, 5), _rand(4, 9, 8, seed=1), _rand(4, 9, seed=2).abs()
    batched = awcka(t, s, w)
    torch.testing.assert_close(batched, torch.stack([awcka(t[b], s[b], w[b]) for b in range(4)]))
    assert awcka(t[0], s[0], w[0]).shape == ()
    torch.testing.assert_close(linear_cka(t, s), torch.stack([linear_cka(t[b], s[b]) for b in range(4)]))


def test_feature_and_gram_forms_agree_and_cheaper_one_is_picked() -> None:
    for length, ex, ey in ((6, 40, 30), (50, 4, 3)):
        xc = _masked_center(_rand(2, length, ex), torch.ones(2, length, dtype=torch.bool))
        yc = _masked_center(_rand(2, length, ey, seed=1), torch.ones(2, length, dtype=torch.bool))
        torch.testing.assert_close(_biased_cka(xc, yc, "feature"), _biased_cka(xc, yc, "gram"))
    assert _pick_form(100, 4096, 896) == "gram"
    assert _pick_form(800, 16, 8) == "feature"


@pytest.mark.parametrize(("length", "ex", "ey"), [(6, 9, 7), (9, 3, 2)])  # gram form, feature form
def test_agrees_with_numpy_reference(length: int, ex: int, ey: int) -> None:
    t, s, w = _rand(3, length, ex), _rand(3, length, ey, seed=1), _rand(3, length, seed=2).abs() + 0.05
    mask = torch.ones(3, length, dtype=torch.bool)
    mask[2, length - 2 :] = False
    got = awcka(t, s, w, mask)
    for b in range(3):
        n = int(mask[b].sum())
        expected = _np_awcka(t[b, :n].numpy(), s[b, :n].numpy(), w[b, :n].numpy())
        assert got[b].item() == pytest.approx(expected, rel=1e-10)


def test_debiased_agrees_with_song_unbiased_hsic() -> None:
    t, s, w = _rand(3, 10, 6), _rand(3, 10, 4, seed=1), _rand(3, 10, seed=2).abs() + 0.05
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 5:] = False  # 5 valid tokens
    got = awcka(t, s, w, mask, estimator="debiased")
    for b in range(3):
        n = int(mask[b].sum())
        tb, sb, wb = t[b, :n].numpy(), s[b, :n].numpy(), w[b, :n].numpy()
        expected = _np_debiased(tb, sb, wb / wb.sum())
        assert got[b].item() == pytest.approx(expected, rel=1e-9)
        # Cross-check the written-out formula against U-centering (Nguyen et al.'s code path).
        k, l_ = (
            _np_ucenter((wb[:, None] * tb) @ (wb[:, None] * tb).T),
            _np_ucenter((wb[:, None] * sb) @ (wb[:, None] * sb).T),
        )
        assert expected == pytest.approx(
            float((k * l_).sum() / np.sqrt((k * k).sum() * (l_ * l_).sum())), rel=1e-9
        )


def test_debiased_needs_four_tokens() -> None:
    mask = torch.tensor([[True, True, True, False, False]])
    with pytest.raises(ValueError, match="at least 4 valid tokens"):
        awcka(_rand(1, 5, 3), _rand(1, 5, 2), torch.ones(1, 5), mask, estimator="debiased")


def test_unknown_estimator_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="biased, debiased"):
        awcka(_rand(5, 3), _rand(5, 2), torch.ones(5), estimator="rbf")


@pytest.mark.parametrize("estimator", ["biased", "debiased"])
@pytest.mark.parametrize(("length", "et"), [(6, 7), (7, 2)])
def test_gradcheck(estimator: str, length: int, et: int) -> None:
    t = _rand(2, length, et).requires_grad_(True)
    s = _rand(2, length, 3, seed=1).requires_grad_(True)
    w = (_rand(2, length, seed=2).abs() + 0.1).requires_grad_(True)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, -1] = False
    assert torch.autograd.gradcheck(lambda a, b, c: awcka(a, b, c, mask, estimator=estimator), (t, s, w))
    assert torch.autograd.gradcheck(lambda a, b: linear_cka(a, b, mask), (t, s))


def test_degenerate_input_is_finite() -> None:
    x = torch.zeros(6, 4, requires_grad=True)
    y = torch.ones(6, 3, requires_grad=True)  # constant over tokens: zero after centring
    for v in (linear_cka(x, y), awcka(x, y, torch.zeros(6))):
        v.backward()
        assert torch.isfinite(v)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bf16_is_finite_and_close_to_fp32() -> None:
    t, s, w = _rand(2, 20, 64).float(), _rand(2, 20, 16, seed=1).float(), _rand(2, 20, seed=2).abs().float()
    ref = awcka(t, s, w)
    got = awcka(t.bfloat16(), s.bfloat16(), w.bfloat16())
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, atol=1e-2, rtol=0)
    assert linear_cka(t.bfloat16(), s.half()).dtype == torch.float32
