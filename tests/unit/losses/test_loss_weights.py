"""audio_token_weights: normalisation, padding, and hand-built attentions with one known row/layer."""

from __future__ import annotations

import pytest
import torch

from pldistill.losses import WEIGHTING_VARIANTS, audio_token_weights, audio_weights_from_rows

B, H, L = 2, 3, 10
AUDIO = ([1, 2, 3, 4, 5], [2, 3, 4])  # sample 1 has fewer audio tokens: L_a = 5, padded
RESPONSE = ([8], [7, 8])


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    audio, response = torch.zeros(B, L, dtype=torch.bool), torch.zeros(B, L, dtype=torch.bool)
    for b in range(B):
        audio[b, AUDIO[b]] = True
        response[b, RESPONSE[b]] = True
    return audio, response


def _random_attention(seed: int, layers: int | None = None) -> torch.Tensor:
    shape = (B, H, L, L) if layers is None else (layers, B, H, L, L)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).softmax(-1)


def _known_rows(seed: int) -> torch.Tensor:
    """(B, L) positive scores for the response rows' attention over all columns."""
    return torch.rand(B, L, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1


def _expected(scores: torch.Tensor) -> torch.Tensor:
    """Scores of the audio columns, normalised per sample, zero-padded to (B, 5)."""
    out = torch.zeros(B, 5, dtype=torch.float64)
    for b in range(B):
        a = scores[b, AUDIO[b]]
        out[b, : len(a)] = a / a.sum()
    return out


@pytest.mark.parametrize("variant", WEIGHTING_VARIANTS)
def test_non_negative_sums_to_one_and_padding_is_zero(variant: str) -> None:
    audio, response = _masks()
    w = audio_token_weights(_random_attention(0, layers=3), audio, response, variant, p=3.0)
    assert w.shape == (B, 5)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, dtype=w.dtype))
    assert (w[1, 3:] == 0).all()


def test_uniform_is_one_over_n_and_needs_no_attention() -> None:
    audio, response = _masks()
    w = audio_token_weights(None, audio, response, "uniform")
    torch.testing.assert_close(w, torch.tensor([[0.2] * 5, [1 / 3] * 3 + [0.0] * 2]))


def test_attention_last_reads_the_response_rows_of_the_last_layer() -> None:
    audio, response = _masks()
    attn = _random_attention(1, layers=3)
    wanted = _known_rows(2)
    # Response rows of the last layer: head h gets wanted * (h + 1), so the head mean is wanted * 2;
    # a sample with two response rows splits its target between them (0.25 and 1.75 of it).
    last = attn[-1]
    for b in range(B):
        rows = RESPONSE[b]
        shares = [1.0] if len(rows) == 1 else [0.25, 1.75]
        for row, share in zip(rows, shares, strict=True):
            for h in range(H):
                last[b, h, row] = wanted[b] * (h + 1) * share
    got = audio_token_weights(attn, audio, response, "attention_last")
    torch.testing.assert_close(got, _expected(wanted))


def test_attention_layers_averages_the_layers() -> None:
    audio, response = _masks()
    attn = torch.zeros(2, B, H, L, L, dtype=torch.float64)
    first, second = _known_rows(3), _known_rows(4)
    for b in range(B):
        for row in RESPONSE[b]:
            attn[0, b, :, row] = first[b]
            attn[1, b, :, row] = second[b]
    got = audio_token_weights(attn, audio, response, "attention_layers")
    torch.testing.assert_close(got, _expected(first + second))
    torch.testing.assert_close(
        audio_token_weights(attn, audio, response, "attention_last"), _expected(second)
    )


def test_sharpened() -> None:
    audio, response = _masks()
    attn = _random_attention(5)
    last = audio_token_weights(attn, audio, response, "attention_last")
    torch.testing.assert_close(audio_token_weights(attn, audio, response, "attention_sharpened", p=1.0), last)
    squared = audio_token_weights(attn, audio, response, "attention_sharpened", p=2.0)
    torch.testing.assert_close(squared, (last**2) / (last**2).sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="p must be > 0"):
        audio_token_weights(attn, audio, response, "attention_sharpened", p=0.0)


def test_layer_containers_agree() -> None:
    audio, response = _masks()
    stacked = _random_attention(6, layers=3)
    as_list = list(stacked.unbind(0))
    for variant in ("attention_last", "attention_layers"):
        ref = audio_token_weights(stacked, audio, response, variant)
        torch.testing.assert_close(audio_token_weights(as_list, audio, response, variant), ref)
        torch.testing.assert_close(audio_token_weights(tuple(as_list), audio, response, variant), ref)
    torch.testing.assert_close(
        audio_token_weights(stacked[-1], audio, response, "attention_last"),
        audio_token_weights(stacked, audio, response, "attention_last"),
    )


def test_non_response_rows_and_non_audio_columns_are_ignored() -> None:
    audio, response = _masks()
    attn = _random_attention(7)
    ref = audio_token_weights(attn, audio, response, "attention_last")
    dirty = attn.clone()
    dirty[:, :, 0] = float("nan")  # a non-response row
    dirty[:, :, :, 9] = float("inf")  # a non-audio column
    torch.testing.assert_close(audio_token_weights(dirty, audio, response, "attention_last"), ref)


def test_no_gradient_and_bf16_in() -> None:
    audio, response = _masks()
    attn = _random_attention(8).requires_grad_(True)
    w = audio_token_weights(attn, audio, response, "attention_last")
    assert not w.requires_grad
    w16 = audio_token_weights(attn.detach().bfloat16(), audio, response, "attention_last")
    assert w16.dtype == torch.float32
    torch.testing.assert_close(w16, w.float(), atol=1e-2, rtol=0)


def test_falls_back_to_uniform_without_response_rows() -> None:
    audio, response = _masks()
    response[0] = False
    w = audio_token_weights(_random_attention(9), audio, response, "attention_last")
    torch.testing.assert_close(w[0], torch.full((5,), 0.2, dtype=w.dtype))


def test_unknown_variant_and_bad_shapes() -> None:
    audio, response = _masks()
    with pytest.raises(ValueError, match="uniform, attention_last, attention_layers, attention_sharpened"):
        audio_token_weights(None, audio, response, "attention_first")
    with pytest.raises(ValueError, match="needs the teacher's attentions"):
        audio_token_weights(None, audio, response, "attention_last")
    with pytest.raises(ValueError, match="attention layer"):
        audio_token_weights(torch.zeros(B, H, L, L - 1), audio, response, "attention_last")


def test_config_accepts_exactly_the_registered_variants() -> None:
    from pldistill.config import Hyperparameters

    for variant in WEIGHTING_VARIANTS:
        assert Hyperparameters(weighting=variant).weighting == variant
    with pytest.raises(ValueError, match=", ".join(WEIGHTING_VARIANTS)):
        Hyperparameters(weighting="attention_first")


@pytest.mark.parametrize("variant", WEIGHTING_VARIANTS)
def test_weights_from_cached_rows_equal_weights_from_full_attention(variant):
    """The teacher cache keeps only response rows x audio columns, heads averaged: same eq. 1."""
    g = torch.Generator().manual_seed(0)
    b, layers, heads, length = 2, 3, 2, 12
    audio = torch.zeros(b, length, dtype=torch.bool)
    audio[0, 1:7], audio[1, 1:5] = True, True
    rows = torch.zeros(b, length, dtype=torch.bool)
    rows[0, 9:11], rows[1, 8] = True, True
    attn = torch.randn(layers, b, heads, length, length, generator=g).softmax(-1)
    expected = audio_token_weights(attn, audio, rows, variant, p=2.5)
    per_clip = [attn[:, i].mean(1)[:, rows[i]][:, :, audio[i]] for i in range(b)]
    torch.testing.assert_close(audio_weights_from_rows(per_clip, variant, p=2.5), expected)
    # without each clip's last (closing) row: the weights of the label rows alone
    label_rows = rows.clone()
    label_rows[0, 10], label_rows[1, 8] = False, True  # clip 1 has one row: it is kept
    expected = audio_token_weights(attn, audio, label_rows, variant, p=2.5)
    torch.testing.assert_close(audio_weights_from_rows(per_clip, variant, p=2.5, end_row=False), expected)
