"""Audio-token weights for AwCKA from the teacher's attention (paper section 2.2, eq. 1).

The paper takes the last self-attention layer of the teacher LLM, reads the attention scores
from the response token (e.g. 'Happy') to the audio tokens, and normalises them to sum to 1.
The other variants exist for ablations: ``uniform`` is plain CKA (paper table 2, "PDist (CKA)"),
``attention_layers`` averages several layers, ``attention_sharpened`` raises the scores to a
power before normalising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor

__all__ = ["WEIGHTINGS", "WEIGHTING_VARIANTS", "attention_layers_for", "audio_token_weights", "audio_weights_from_rows"]

#: Weighting variant -> its label in reports (the paper's Table 2 calls uniform weights "CKA").
WEIGHTINGS: Mapping[str, str] = MappingProxyType({
    "uniform": "CKA",
    "attention_last": "AwCKA",
    "attention_layers": "AwCKA, all layers",
    "attention_sharpened": "AwCKA, sharpened",
})
#: The variants accepted by :func:`audio_token_weights` (the source of the config's valid names).
WEIGHTING_VARIANTS = tuple(WEIGHTINGS)


def attention_layers_for(variant: str) -> str | None:
    """Which teacher layers' attention ``variant`` reads: None (uniform), ``"last"`` or ``"all"``."""
    _check_variant(variant)
    return {"uniform": None, "attention_layers": "all"}.get(variant, "last")


def _check_variant(variant: str) -> None:
    if variant not in WEIGHTINGS:
        raise ValueError(f"unknown weighting variant {variant!r}; valid: {', '.join(WEIGHTINGS)}")


def audio_token_weights(
    attentions: Tensor | Sequence[Tensor] | None,
    audio_mask: Tensor,
    response_mask: Tensor,
    variant: str,
    *,
    p: float = 2.0,
) -> Tensor:
    """Per-audio-token weights ``w`` of eq. 1, computed without gradient (teacher quantities).

    Args:
        attentions: attention probabilities of one layer ``(B, heads, L, L)`` (rows attend to
            columns), or several layers as a sequence of such tensors (e.g. Hugging Face's
            ``outputs.attentions``) or a stacked ``(n_layers, B, heads, L, L)`` tensor, last =
            deepest. May be None for ``uniform``. Any float dtype; read in float32 (float64 stays
            float64).
        audio_mask: ``(B, L)`` bool, the audio token columns in the full sequence.
        response_mask: ``(B, L)`` bool, the response token rows whose attention is read.
        variant: one of :data:`WEIGHTING_VARIANTS`:

            - ``uniform``: ``1/n`` over the valid audio tokens (plain CKA);
            - ``attention_last``: the paper: last layer, heads averaged, the response rows'
              attention to the audio columns averaged over the response rows, normalised;
            - ``attention_layers``: the same, averaged over all given layers;
            - ``attention_sharpened``: proportional to ``A**p``, ``A`` as in ``attention_last``.
        p: exponent of ``attention_sharpened`` (``p=1`` is ``attention_last``); ignored otherwise.

    Returns:
        ``(B, L_a)`` float32 (float64 for float64 attentions) with ``L_a`` the largest number of
        audio tokens in the batch: the audio tokens in sequence order, zero-padded for samples
        with fewer. Each row is >= 0 and sums to 1 over its audio tokens (a row with no audio
        token is all zero). A sample whose attention gives no usable mass (no response row, or
        all scores zero) falls back to uniform weights rather than dividing by zero.
    """
    _check_variant(variant)
    if audio_mask.dtype != torch.bool or response_mask.dtype != torch.bool or audio_mask.dim() != 2:
        raise ValueError("audio_mask and response_mask must be (B, L) bool tensors")
    if audio_mask.shape != response_mask.shape:
        raise ValueError(f"mask shapes differ: {tuple(audio_mask.shape)} vs {tuple(response_mask.shape)}")
    if variant == "attention_sharpened" and not p > 0:
        raise ValueError(f"p must be > 0, got {p}")
    with torch.no_grad():
        if variant == "uniform":
            scores = audio_mask.to(torch.float32)
        else:
            layers = _as_layers(attentions, audio_mask.shape)
            if variant != "attention_layers":
                layers = layers[-1:]  # only the layers the variant reads are reduced
            scores = _combine_layers(torch.stack([_response_to_columns(a, response_mask) for a in layers]),
                                     variant, p)
        return _normalise(*_gather_audio(scores, audio_mask))


def audio_weights_from_rows(attention: Sequence[Tensor], variant: str, *, p: float = 2.0,
                            end_row: bool = True) -> Tensor:
    """Eq. 1 from the rows the teacher cache stores; equals :func:`audio_token_weights` on the full
    attention of the same clips.

    ``attention``: per clip ``(n_layers, n_response, n_audio)``: the response rows' attention to the
    audio columns (the label's tokens, then the closing ``<|im_end|>``), heads already averaged, last
    layer last. ``end_row=False`` leaves the closing row out (AwCKA's default: the label tokens).
    Returns ``(B, max n_audio)`` float32, zero-padded, each row summing to 1 over its audio tokens
    (uniform when no usable mass).
    """
    _check_variant(variant)
    with torch.no_grad():
        scores = []
        for a in attention:
            if not end_row and a.shape[1] > 1:
                a = a[:, :-1]
            if variant == "uniform":
                scores.append(torch.ones(a.shape[2], device=a.device))
            else:
                per_layer = a.sum(1) / max(a.shape[1], 1)  # mean over response rows: (n_layers, n_audio)
                scores.append(_combine_layers(per_layer, variant, p))
        pad = torch.nn.utils.rnn.pad_sequence
        valid = pad([torch.ones(s.shape[0], dtype=torch.bool, device=s.device) for s in scores], batch_first=True)
        return _normalise(pad(scores, batch_first=True), valid)


def _combine_layers(per_layer: Tensor, variant: str, p: float) -> Tensor:
    """``(n_layers, ..., n)`` scores -> ``(..., n)``: the last layer, or the mean over all for
    ``attention_layers``; ``attention_sharpened`` raises them to ``p``."""
    scores = per_layer.mean(0) if variant == "attention_layers" else per_layer[-1]
    return scores.pow(p) if variant == "attention_sharpened" else scores


def _as_layers(attentions: Tensor | Sequence[Tensor] | None, mask_shape: torch.Size) -> list[Tensor]:
    """The layers as a list of ``(B, heads, L, L)`` tensors, shapes checked against the masks."""
    if attentions is None:
        raise ValueError("attention-based weighting needs the teacher's attentions, got None")
    if isinstance(attentions, Tensor):
        if attentions.dim() == 4:
            layers = [attentions]
        elif attentions.dim() == 5:
            layers = list(attentions.unbind(0))
        else:
            raise ValueError(
                f"attentions must be (B, heads, L, L) or (n_layers, B, heads, L, L), got {tuple(attentions.shape)}"
            )
    else:
        layers = list(attentions)
    if not layers:
        raise ValueError("attentions is empty")
    b, length = mask_shape
    for a in layers:
        if a.dim() != 4 or a.shape[0] != b or a.shape[2:] != (length, length):
            raise ValueError(
                f"each attention layer must be ({b}, heads, {length}, {length}), got {tuple(a.shape)}"
            )
    return layers


def _response_to_columns(attn: Tensor, response_mask: Tensor) -> Tensor:
    """Mean over heads and over the response rows of one layer: ``(B, H, L, L) -> (B, L)``."""
    dtype = torch.float64 if attn.dtype == torch.float64 else torch.float32
    per_row = attn.detach().sum(dim=1, dtype=dtype) / attn.shape[1]  # (B, L, L), heads averaged
    # where(), not a multiply: rows outside the response may hold anything (even NaN).
    rows = torch.where(response_mask.unsqueeze(-1), per_row, 0.0).sum(1)
    return rows / response_mask.sum(-1, keepdim=True).clamp_min(1).to(rows.dtype)


def _gather_audio(scores: Tensor, audio_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Audio columns of ``(B, L)`` scores in sequence order, zero-padded: ``(B, L_a)`` and its mask."""
    counts = audio_mask.sum(-1)
    la = int(counts.max()) if counts.numel() else 0  # the output shape needs it on the host
    # A stable sort of "not audio" puts the audio positions first, in their original order.
    order = torch.argsort((~audio_mask).to(torch.int8), dim=-1, stable=True)[:, :la]
    valid = torch.arange(la, device=audio_mask.device) < counts.unsqueeze(-1)
    return torch.where(valid, scores.gather(-1, order), 0.0), valid


def _normalise(scores: Tensor, valid: Tensor) -> Tensor:
    """Eq. 1 over the valid tokens; uniform where the scores have no finite positive mass."""
    total = scores.sum(-1, keepdim=True)
    uniform = valid.to(scores.dtype) / valid.sum(-1, keepdim=True).clamp_min(1)
    usable = torch.isfinite(total) & (total > 0)
    return torch.where(usable, scores / torch.where(usable, total, 1.0), uniform)
