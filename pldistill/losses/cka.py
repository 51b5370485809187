"""Linear CKA and attention-weighted CKA (AwCKA), paper section 2.2, eq. 1-4.

Paper: ``../shared/papers/pl-distill-awcka.txt``. CKA itself: Kornblith et al. 2019, "Similarity of
Neural Network Representations Revisited". The debiased estimator: Song et al. 2012, "Feature
Selection via Dependence Maximization" (unbiased HSIC), as used for CKA by Nguyen et al. 2021,
"Do Wide and Deep Networks Learn the Same Things?".

All functions are per sample: a batch ``(B, L, E)`` gives ``(B,)`` values, a single sample
``(L, E)`` gives a scalar. Token masks select the valid (non-padding) tokens; padded tokens are
replaced by zeros with ``torch.where`` before anything is computed, so garbage there (even NaN)
affects neither the value nor the gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["CKA_ESTIMATORS", "linear_cka", "awcka"]

#: Estimators of HSIC accepted by :func:`awcka`.
CKA_ESTIMATORS = ("biased", "debiased")

_EPS = 1e-12
_Form = Literal["auto", "feature", "gram"]


def linear_cka(x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """Linear CKA of two representations of the same tokens (paper eq. 3 without weights).

    Args:
        x: ``(L, Ex)`` or ``(B, L, Ex)``.
        y: ``(L, Ey)`` or ``(B, L, Ey)``; ``Ey`` may differ from ``Ex``.
        mask: ``(L,)`` or ``(B, L)`` bool, True for valid tokens; None means all valid.

    Returns:
        Scalar for 2-D input, ``(B,)`` for 3-D input, in ``[0, 1]``. Computed in float32 (float64
        when an input is float64) whatever the input dtype. Degenerate input (a side that is
        constant over the valid tokens) gives 0, with a finite gradient.
    """
    x3, y3, m2, squeeze = _as_batch(x, y, mask)
    cka = _biased_cka(_masked_center(x3, m2), _masked_center(y3, m2))
    return cka[0] if squeeze else cka


def awcka(
    teacher: Tensor,
    student: Tensor,
    weights: Tensor,
    mask: Tensor | None = None,
    estimator: str = "biased",
) -> Tensor:
    """Attention-weighted CKA between teacher and student audio embeddings (paper eq. 1-3).

    The weights are normalised to sum to 1 over the valid tokens (eq. 1) and scale every feature
    of their token on both sides (eq. 2); each weighted embedding is then centred by subtracting
    its per-feature mean over the valid tokens and compared with linear CKA (eq. 3,
    ``||Ĥ_Tᵀ Ĥ_S||²_F / (||Ĥ_Tᵀ Ĥ_T||_F ||Ĥ_Sᵀ Ĥ_S||_F)``). CKA is invariant to isotropic
    scaling, so eq. 1 changes the value only through rounding; it is kept to follow the paper.
    Uniform weights give plain :func:`linear_cka`. ``1 - awcka`` is the loss ``L_DP`` of eq. 4.

    The biased estimator picks, per call, the cheaper of two equal forms: the feature form
    (``E x E`` cross-covariances) or the Gram form (``L x L`` linear Gram matrices ``K = H Hᵀ``,
    using ``||HᵀH||_F = ||H Hᵀ||_F`` and ``||H_Tᵀ H_S||²_F = <K_T, K_S>_F``). With ``E_T = 4096``
    and ``L ~ 100`` the Gram form is the cheap one.

    ``estimator="debiased"`` replaces the biased HSIC by the unbiased estimator of Song et al.
    (2012) on the linear Gram matrices of the centred weighted embeddings (Nguyen et al. 2021). It
    needs at least 4 valid tokens per sample and can be slightly negative.

    Args:
        teacher: ``(L, E_T)`` or ``(B, L, E_T)``, teacher projector outputs.
        student: ``(L, E_S)`` or ``(B, L, E_S)``, student projector outputs.
        weights: ``(L,)`` or ``(B, L)``, non-negative token weights (e.g. from
            :func:`pldistill.losses.audio_token_weights`); need not be normalised. Gradients flow
            through them as through everything else; pass detached weights for the paper's use.
        mask: ``(L,)`` or ``(B, L)`` bool, valid tokens; None means all valid.
        estimator: ``"biased"`` (the paper) or ``"debiased"``.

    Returns:
        Scalar for 2-D input, ``(B,)`` for 3-D input. A sample whose weights are all zero gives 0.
    """
    if estimator not in CKA_ESTIMATORS:
        raise ValueError(f"unknown CKA estimator {estimator!r}; valid: {', '.join(CKA_ESTIMATORS)}")
    t3, s3, m2, squeeze = _as_batch(teacher, student, mask)
    w2 = weights.unsqueeze(0) if squeeze else weights
    if w2.shape != m2.shape:
        raise ValueError(f"weights must have shape {tuple(m2.shape)}, got {tuple(weights.shape)}")
    w2 = torch.where(m2, w2.to(t3.dtype), 0.0)
    w2 = w2 / w2.sum(-1, keepdim=True).clamp_min(_EPS)  # eq. 1
    ht = w2.unsqueeze(-1) * torch.where(m2.unsqueeze(-1), t3, 0.0)  # eq. 2
    hs = w2.unsqueeze(-1) * torch.where(m2.unsqueeze(-1), s3, 0.0)
    ht, hs = _masked_center(ht, m2), _masked_center(hs, m2)
    cka = _biased_cka(ht, hs) if estimator == "biased" else _debiased_cka(ht, hs, m2)
    return cka[0] if squeeze else cka


def _as_batch(x: Tensor, y: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Checks shapes; returns ``(B, L, Ex)``, ``(B, L, Ey)`` in the compute dtype, a ``(B, L)`` mask."""
    if x.dim() != y.dim() or x.dim() not in (2, 3):
        raise ValueError(
            f"expected two (L, E) or two (B, L, E) tensors, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[:-1] != y.shape[:-1]:
        raise ValueError(f"token dimensions differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    squeeze = x.dim() == 2
    dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    x3, y3 = (x.unsqueeze(0), y.unsqueeze(0)) if squeeze else (x, y)
    if mask is None:
        m2 = torch.ones(x3.shape[:2], dtype=torch.bool, device=x.device)
    else:
        if mask.dtype != torch.bool or mask.shape != x.shape[:-1]:
            raise ValueError(
                f"mask must be bool with shape {tuple(x.shape[:-1])}, got {mask.dtype} {tuple(mask.shape)}"
            )
        m2 = mask.unsqueeze(0) if squeeze else mask
    return x3.to(dtype), y3.to(dtype), m2, squeeze


def _masked_center(x: Tensor, mask: Tensor) -> Tensor:
    """Zeroes padded tokens and subtracts the per-feature mean over the valid tokens. ``(B, L, E)``."""
    m = mask.unsqueeze(-1)
    x = torch.where(m, x, 0.0)
    n = mask.sum(-1).clamp_min(1).to(x.dtype)
    mean = x.sum(1, keepdim=True) / n[:, None, None]
    return torch.where(m, x - mean, 0.0)


def _unit(x: Tensor) -> Tensor:
    """Scales each sample to unit Frobenius norm: CKA is scale invariant, fp32 then neither
    under- nor overflows in the fourth powers below."""
    return x / (torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True) + _EPS)


def _pick_form(length: int, ex: int, ey: int) -> Literal["feature", "gram"]:
    """The cheaper of the two biased forms by multiply-adds (cross term + both self terms)."""
    feature = length * (ex * ey + ex * ex + ey * ey)
    gram = length * length * (ex + ey)
    return "gram" if gram < feature else "feature"


def _biased_cka(xc: Tensor, yc: Tensor, form: _Form = "auto") -> Tensor:
    """Biased linear CKA of centred ``(B, L, Ex)``, ``(B, L, Ey)`` (padded rows zero); ``(B,)``."""
    x, y = _unit(xc), _unit(yc)
    if form == "auto":
        form = _pick_form(x.shape[1], x.shape[2], y.shape[2])
    if form == "feature":
        xy = x.transpose(1, 2) @ y
        num = xy.square().sum((-2, -1))
        den = torch.linalg.matrix_norm(x.transpose(1, 2) @ x) * torch.linalg.matrix_norm(
            y.transpose(1, 2) @ y
        )
    else:
        k, l_ = x @ x.transpose(1, 2), y @ y.transpose(1, 2)
        num = (k * l_).sum((-2, -1))
        den = torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(l_)
    return num / den.clamp_min(_EPS)


def _debiased_cka(xc: Tensor, yc: Tensor, mask: Tensor) -> Tensor:
    """CKA from the unbiased HSIC estimator (Song et al. 2012) on linear Gram matrices; ``(B,)``."""
    n = mask.sum(-1)
    # One host sync, only on this opt-in path: the estimator divides by n - 3.
    if int(n.min()) < 4:
        raise ValueError(
            f"the debiased CKA estimator needs at least 4 valid tokens per sample, got {int(n.min())}"
        )
    x, y = _unit(xc), _unit(yc)
    k, l_ = x @ x.transpose(1, 2), y @ y.transpose(1, 2)
    nf = n.to(x.dtype)
    hsic_kl = _unbiased_hsic(k, l_, nf)
    hsic_kk = _unbiased_hsic(k, k, nf)
    hsic_ll = _unbiased_hsic(l_, l_, nf)
    return hsic_kl / (hsic_kk * hsic_ll).clamp_min(_EPS * _EPS).sqrt()


def _unbiased_hsic(k: Tensor, l_: Tensor, n: Tensor) -> Tensor:
    """Song et al. (2012), eq. 5, for ``(B, L, L)`` Gram matrices whose padded rows/columns are zero.

    ``HSIC_1 = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2)·1ᵀK̃L̃1] / (n(n-3))`` with ``K̃`` the
    Gram matrix with its diagonal set to zero.
    """
    eye = torch.eye(k.shape[-1], dtype=torch.bool, device=k.device)
    k = k.masked_fill(eye, 0.0)
    l_ = l_.masked_fill(eye, 0.0)
    trace = (k * l_).sum((-2, -1))  # both symmetric
    sum_k, sum_l = k.sum((-2, -1)), l_.sum((-2, -1))
    cross = (k.sum(-1) * l_.sum(-1)).sum(-1)  # 1ᵀ K̃ L̃ 1
    return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))
