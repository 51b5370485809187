"""The Qwen2-Audio forward split into its parts, so teacher and student share one encoder pass.

Teacher and student both are ``Qwen2AudioForConditionalGeneration`` models; the student's audio
tower *is* the teacher's (same frozen module). A distillation step therefore runs the encoder
once, then each model's projector and language model on the merged embeddings. This mirrors
``Qwen2AudioModel.forward`` (transformers 5.23) step by step; a unit test checks that
:func:`audio_lm_logits` equals the stock forward.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "EncodedAudio",
    "encode_audio",
    "merge_audio_embeddings",
    "AudioLMHead",
    "capture_attention",
]


@dataclass
class EncodedAudio:
    """Encoder output for a batch: ``features (B, T, D_enc)`` and ``num_tokens (B,)`` valid rows."""

    features: Tensor
    num_tokens: Tensor

    @property
    def token_mask(self) -> Tensor:
        """``(B, T)`` bool: valid audio tokens."""
        t = self.features.shape[1]
        return torch.arange(t, device=self.features.device)[None, :] < self.num_tokens[:, None]


def encode_audio(audio_tower: nn.Module, input_features: Tensor, feature_attention_mask: Tensor) -> EncodedAudio:
    """Run the (frozen) Whisper-style encoder with its own padding mask, as Qwen2AudioModel does.

    input_features: ``(B, n_mels, 2 * max_source_positions)``; feature_attention_mask ``(B, frames)``.
    """
    from transformers.masking_utils import create_bidirectional_mask

    lengths = feature_attention_mask.sum(-1)
    conv_lengths, out_lengths = audio_tower._get_feat_extract_output_lengths(lengths)
    batch, _, n_frames = input_features.shape
    max_len = (n_frames - 2) // 2 + 1
    seq = torch.arange(max_len, device=conv_lengths.device)[None, :].expand(batch, max_len)
    mask_2d = (seq < conv_lengths[:, None]).long()
    dummy = torch.zeros((batch, max_len, 1), dtype=audio_tower.conv1.weight.dtype, device=input_features.device)
    mask = create_bidirectional_mask(config=audio_tower.config, inputs_embeds=dummy, attention_mask=mask_2d)
    hidden = audio_tower(input_features, attention_mask=mask).last_hidden_state
    return EncodedAudio(features=hidden, num_tokens=out_lengths.to(hidden.device))


def merge_audio_embeddings(
    embed_tokens: nn.Module, input_ids: Tensor, audio_embeds: Tensor, num_tokens: Tensor, audio_token_id: int
) -> Tensor:
    """Text embeddings with the ``<|AUDIO|>`` placeholders replaced by projector rows, in order."""
    inputs_embeds = embed_tokens(input_ids)
    valid = torch.arange(audio_embeds.shape[1], device=audio_embeds.device)[None, :] < num_tokens[:, None]
    rows = audio_embeds[valid]
    slots = input_ids == audio_token_id
    if int(slots.sum()) != rows.shape[0]:
        raise ValueError(f"{int(slots.sum())} audio placeholders but {rows.shape[0]} audio tokens")
    return inputs_embeds.masked_scatter(slots.unsqueeze(-1), rows.to(inputs_embeds.dtype))


class AudioLMHead(nn.Module):
    """Projector + language model + lm_head of a Qwen2-Audio model, fed with encoder output.

    Wrapping these parts in one module gives DDP/FSDP a single forward to hook. Returns the
    projector rows ``(B, T, E)``, and the final hidden states ``(B, L, H)``; logits come from
    :meth:`logits` so callers can slice to the real vocabulary or chunk over positions.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model  # a Qwen2AudioForConditionalGeneration (possibly with LoRA layers injected)

    @property
    def core(self) -> nn.Module:
        return self.model.model

    @property
    def audio_token_id(self) -> int:
        return int(self.model.config.audio_token_id)

    def _project(self, encoded: Tensor) -> Tensor:
        """Projector rows of encoder output in the projector's own dtype: the encoder is the teacher's
        (e.g. bfloat16) or a float32 cache, while the student's projector may be float32."""
        projector = self.core.multi_modal_projector
        return projector(encoded.to(next(projector.parameters()).dtype))

    def forward(self, encoded: Tensor | None, num_tokens: Tensor | None, input_ids: Tensor, attention_mask: Tensor,
                vocab: int | None = None) -> tuple[Tensor | None, Tensor, Tensor | None]:
        """Projector rows ``(B, T, E)``, final hidden ``(B, L, H)`` and, when ``vocab`` is given,
        logits ``(B, L, vocab)`` (inside forward so DDP/FSDP see the whole computation).

        ``encoded`` None: a text-only forward (CAAD's second teacher path, ``text_only_inputs``):
        no projector, plain token embeddings, and None for the projector rows."""
        lm = self.core.language_model
        if encoded is None:
            if bool((input_ids == self.audio_token_id).any()):
                raise ValueError("a text-only forward got audio placeholders in input_ids")
            audio, inputs_embeds = None, lm.embed_tokens(input_ids)
        else:
            assert num_tokens is not None
            audio = self._project(encoded)
            inputs_embeds = merge_audio_embeddings(lm.embed_tokens, input_ids, audio, num_tokens, self.audio_token_id)
        hidden = lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state
        logits = self.logits(hidden, vocab) if vocab is not None else None
        return audio, hidden, logits

    def score_responses(self, encoded: Tensor, num_tokens: Tensor, prompt_ids: Tensor, prompt_mask: Tensor,
                        responses: Tensor, response_lengths: Tensor, vocab: int | None = None) -> Tensor:
        """Log-likelihood ``(B, C)`` fp32 of each of ``C`` responses after each of ``B`` prompts.

        ``prompt_ids``/``prompt_mask``: ``(B, P)`` right-padded prompts (audio placeholders included);
        ``responses``: ``(C, R)`` token ids, right-padded, ``response_lengths (C,)`` >= 1.

        One forward per clip row: the prompt, then the C candidates packed after it (each one's
        first ``R - 1`` tokens; the last one is only predicted). A 4-D mask lets every candidate see
        the prompt and its own earlier tokens only, and its position ids restart at ``len(prompt)``,
        so each candidate's numbers are those of its own full sequence, while the prompt's keys and
        values exist once per clip (not C copies of a KV cache, ~26 GB for the teacher at batch 16
        and 30 s windows) and the prompt runs once.
        """
        audio = self._project(encoded)
        lm = self.core.language_model
        embeds = merge_audio_embeddings(lm.embed_tokens, prompt_ids, audio, num_tokens, self.audio_token_id)
        (b, p), (c, r) = prompt_ids.shape, responses.shape
        lengths = prompt_mask.sum(-1)
        steps = r - 1  # continuation inputs per candidate
        if steps == 0:
            hidden = lm(inputs_embeds=embeds, attention_mask=prompt_mask, use_cache=False).last_hidden_state
        else:
            j = torch.arange(steps, device=responses.device)
            valid = (j[None, :] < (response_lengths - 1)[:, None]).reshape(-1)  # (C * steps,) real inputs
            packed = lm.embed_tokens(responses[:, :-1].reshape(1, -1)).expand(b, -1, -1)
            embeds = torch.cat([embeds, packed.to(embeds.dtype)], 1)
            positions = torch.cat([torch.arange(p, device=lengths.device).expand(b, p),
                                   lengths[:, None] + j.repeat(c)[None, :]], 1)
            mask_2d = torch.cat([prompt_mask.bool(), valid.expand(b, -1)], 1)
            block = torch.cat([torch.full((p,), -1, device=j.device), torch.arange(c, device=j.device)
                               .repeat_interleave(steps)])
            hidden = lm(inputs_embeds=embeds, position_ids=positions, use_cache=False,
                        attention_mask=_candidate_masks(lm, embeds, mask_2d, positions, block)).last_hidden_state
        last = hidden[torch.arange(b, device=lengths.device), lengths - 1]  # predicts each response's token 0
        scores = torch.log_softmax(self.logits(last, vocab).float(), -1)[:, responses[:, 0]]  # (B, C)
        if steps == 0:
            return scores
        logp = torch.log_softmax(self.logits(hidden[:, p:], vocab).float(), -1)  # input j predicts token j + 1
        targets = responses[:, 1:].reshape(1, -1, 1).expand(b, -1, 1)
        nxt = logp.gather(-1, targets).squeeze(-1) * valid  # (B, C * steps)
        return scores + nxt.view(b, c, steps).sum(-1)

    def logits(self, hidden: Tensor, vocab: int | None = None) -> Tensor:
        """``lm_head`` over the first ``vocab`` rows only (padding rows never computed)."""
        head = self.model.lm_head
        if vocab is None or vocab >= head.weight.shape[0]:
            return head(hidden)
        bias = head.bias[:vocab] if getattr(head, "bias", None) is not None else None
        return nn.functional.linear(hidden, head.weight[:vocab], bias)


def _candidate_masks(lm: nn.Module, embeds: Tensor, mask_2d: Tensor, positions: Tensor,
                     block: Tensor) -> dict[str, Tensor | None]:
    """The decoder's attention masks for a prompt followed by packed candidates, built by transformers
    for the model's attention implementation: causal and padding as usual, and a query of candidate
    ``block[q] >= 0`` sees only prompt keys (``block == -1``) and keys of its own candidate."""
    from transformers.masking_utils import create_causal_mask

    impl = lm.config._attn_implementation
    if impl not in ("sdpa", "eager", "flex_attention") or getattr(lm, "has_sliding_layers", False):
        # flash-attention kernels take no 4-D mask and a sliding window counts packed indices, not
        # positions: either would silently let candidates see each other
        raise ValueError(f"packed candidate scoring needs full attention with sdpa, eager or flex_attention; "
                         f"this model uses {impl!r}" + (" with sliding windows" if impl in
                                                         ("sdpa", "eager", "flex_attention") else ""))

    def same_candidate(batch_idx: Tensor, head_idx: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (block[kv_idx] < 0) | (block[kv_idx] == block[q_idx])

    mask = create_causal_mask(config=lm.config, inputs_embeds=embeds, attention_mask=mask_2d,
                              past_key_values=None, position_ids=positions, and_mask_function=same_candidate)
    return {"full_attention": mask}


def _attention_probs(attn: nn.Module, hidden: Tensor, position_embeddings: tuple[Tensor, Tensor],
                     key_mask: Tensor) -> Tensor:
    """Softmax attention probabilities ``(B, heads, L, L)`` of one Qwen2 attention layer, fp32.

    Recomputes q and k from the layer's input, exactly as the eager path does, so the model
    itself can keep its fast SDPA kernels (which return no weights).
    """
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb, repeat_kv

    b, n, _ = hidden.shape
    q = attn.q_proj(hidden).view(b, n, -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(hidden).view(b, n, -1, attn.head_dim).transpose(1, 2)
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    k = repeat_kv(k, attn.num_key_value_groups)
    scores = torch.matmul(q.float(), k.float().transpose(2, 3)) * attn.scaling
    causal = torch.ones(n, n, dtype=torch.bool, device=hidden.device).tril()
    allowed = causal[None, None] & key_mask[:, None, None, :].bool()
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(probs, nan=0.0)  # fully masked rows (padding queries) -> 0


@contextmanager
def capture_attention(language_model: nn.Module, attention_mask: Tensor, layers: Sequence[int] | str = "last",
                      ) -> Iterator[list[Tensor]]:
    """Collect attention probabilities of chosen decoder layers during one forward.

    Yields a list that, after the forward, holds one ``(B, heads, L, L)`` fp32 tensor per layer in
    layer order. ``layers``: ``"last"``, ``"all"`` or explicit indices.
    """
    decoder_layers = language_model.layers
    n = len(decoder_layers)
    idx = [n - 1] if layers == "last" else list(range(n)) if layers == "all" else [i % n for i in layers]
    found: dict[int, Tensor] = {}
    handles = []

    def make_hook(i: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            with torch.no_grad():
                found[i] = _attention_probs(module, hidden, kwargs["position_embeddings"], attention_mask)

        return hook

    for i in idx:
        handles.append(decoder_layers[i].self_attn.register_forward_pre_hook(make_hook(i), with_kwargs=True))
    out: list[Tensor] = []
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
    out.extend(found[i] for i in sorted(found))
