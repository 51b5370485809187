"""FLOPs of one PL-Distill training step at the real sizes: teacher online vs. teacher outputs cached.

Counted from model configs (transformers config objects; no weights, nothing downloaded), batch 1
(the paper's micro-batch), matmul FLOPs only (``2 * m * k * n``; convolutions likewise), which is
what ``torch.utils.flop_counter.FlopCounterMode`` counts; ``tests/unit/test_bench_flops.py`` checks
the counting functions against it on tiny models. Norms, activations, rotary embeddings, softmax
and pooling are not counted. Loss rows are estimates of elementwise work, stated where they are made.

Models (the numbers used are printed with the table):

* Encoder: Whisper-large-v3 as in ``Qwen2AudioConfig``'s ``audio_config`` defaults (d_model 1280,
  32 layers, 20 heads, ffn 5120, 128 mels, two k=3 convolutions, the second with stride 2). It
  runs over the whole clip window, padding included.
* Teacher LLM: ``Qwen2AudioConfig(text_config=...)`` with the fields Qwen/Qwen2-Audio-7B's
  config.json sets (intermediate 11008, vocab 156032, 8192 positions); everything else is a
  ``Qwen2Config`` default: hidden 4096, 32 layers, 32 heads, 32 KV heads. The checkpoint's LLM is
  thus Qwen-7B-shaped, not Qwen2-7B (3584 hidden, 28 layers, GQA) as the paper says; with it the
  whole teacher has 8.40B parameters, the paper's 8.4B. ``--teacher-llm qwen2-7b`` counts the
  paper's Qwen2-7B shape instead.
* Student: Qwen2-0.5B (hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate 4864, vocab
  151936, tied embeddings), the new projector (Linear 1280 -> 896) and LoRA rank r on the seven
  linear layers of every decoder layer (``pldistill.models.loading.LORA_TARGETS``).

The step, as ``pldistill/train/step.py`` runs it (sequence = prompt + N audio tokens + response):

* online: encoder forward (no grad); teacher projector, LLM and ``lm_head`` forward (no grad) with
  the last layer's attention recomputed for the AwCKA weights (``capture_attention``: q, k and the
  score matmul again); student forward and backward; losses. Both ``lm_head`` s produce logits at
  every position over the shared vocabulary (``AudioLMHead.logits`` slices the rows to
  ``len(tokenizer)``; ``--vocab``, default the smaller of the two heads).
* cached: the encoder output, the teacher's projector output, its attention weights and its final
  hidden states at the audio and response positions were computed once and stored; a step runs
  the student forward and backward, the teacher ``lm_head`` again at those positions only (storing
  150k-wide logits per token is what the cache avoids), and the losses.

Student backward, explicitly. The base weights are frozen but the projector below them is trained,
so gradients flow through every layer: each frozen linear (q/k/v/o, gate/up/down, the tied
``lm_head``) costs its input gradient only, i.e. 1x its forward; the attention score and value
matmuls need gradients of both operands, 2x; LoRA adapters need input and weight gradients, 2x; the
projector needs its weight gradient only (its input, the frozen encoder's output, needs none), 1x.
So the student backward is about 1x its forward here, not the 2x of full fine-tuning.

The clip window follows ``pldistill.data.features``: ``choose_window`` (a whole number of seconds
covering the clips) and ``audio_token_count`` (audio tokens from the clip's own valid frames, so N
does not depend on the window; only the encoder's cost does). IEMOCAP's mean clip is 4.55 s:
a 5 s window, 250 encoder positions, 114 audio tokens. The stock processor pads to 30 s (1500
positions). Note that ``prepare_fold`` picks one window per fold, covering its longest clip; for
IEMOCAP (longest 34.14 s) that is the 30 s cap, so today's runs pay the 30 s column's encoder.

    .venv/bin/python bench/flops.py
    .venv/bin/python bench/flops.py --clip-s 11.06 --lora-rank 32 --teacher-llm qwen2-7b
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

#: The text_config fields Qwen/Qwen2-Audio-7B(-Instruct)'s config.json sets; the rest are Qwen2Config defaults.
QWEN2_AUDIO_7B_TEXT: dict[str, Any] = {"model_type": "qwen2", "intermediate_size": 11008, "vocab_size": 156032,
                                       "max_position_embeddings": 8192}
#: The paper's "Qwen2-7B" (Qwen/Qwen2-7B config.json shape) with Qwen2-Audio's vocabulary.
QWEN2_7B_TEXT: dict[str, Any] = {"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28,
                                 "num_attention_heads": 28, "num_key_value_heads": 4, "intermediate_size": 18944,
                                 "vocab_size": 156032, "max_position_embeddings": 32768}
TEACHER_TEXT = {"checkpoint": QWEN2_AUDIO_7B_TEXT, "qwen2-7b": QWEN2_7B_TEXT}
#: Qwen/Qwen2-0.5B(-Instruct) config.json.
QWEN2_05B: dict[str, Any] = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
                             "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
                             "tie_word_embeddings": True, "max_position_embeddings": 32768}
#: The linear layers LoRA adapts in every decoder layer (pldistill.models.loading.LORA_TARGETS).
LORA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Whisper's convolutions: kernel 3; conv2 has stride 2.
CONV_KERNEL = 3
#: Elementwise work per (position, vocabulary entry) of the temperature KL, forward: two
#: log-softmaxes (max, subtract, exp, sum, log: ~5 each), two temperature divisions, exp of the
#: teacher side, p * (log p - log q) and the sum (~4). The backward (chunked: recompute + gradient) ~2x.
KL_FLOPS_PER_LOGIT = 16
#: Cross-entropy per (response position, vocabulary entry): one log-softmax and the pick.
CE_FLOPS_PER_LOGIT = 6

__all__ = ["LLMShape", "EncoderShape", "matmul", "llm_linears", "llm_attention", "llm_forward", "lora_forward",
           "student_llm_backward", "encoder_positions", "encoder_forward", "cka_flops", "RealShapes", "real_shapes",
           "StepSizes", "step_parts", "main"]


@dataclass(frozen=True)
class LLMShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int  # rows of lm_head
    tied: bool

    @classmethod
    def from_config(cls, cfg: Any) -> LLMShape:
        """From a ``Qwen2Config``."""
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls(hidden=cfg.hidden_size, layers=cfg.num_hidden_layers, heads=cfg.num_attention_heads,
                   kv_heads=cfg.num_key_value_heads, head_dim=head_dim, intermediate=cfg.intermediate_size,
                   vocab=cfg.vocab_size, tied=bool(cfg.tie_word_embeddings))

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"q_proj": (self.hidden, q), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv),
                "o_proj": (q, self.hidden), "gate_proj": (self.hidden, self.intermediate),
                "up_proj": (self.hidden, self.intermediate), "down_proj": (self.intermediate, self.hidden)}


@dataclass(frozen=True)
class EncoderShape:
    d_model: int
    layers: int
    heads: int
    ffn: int
    n_mels: int
    max_positions: int

    @classmethod
    def from_config(cls, cfg: Any) -> EncoderShape:
        """From a ``Qwen2AudioEncoderConfig``."""
        return cls(d_model=cfg.d_model, layers=cfg.encoder_layers, heads=cfg.encoder_attention_heads,
                   ffn=cfg.encoder_ffn_dim, n_mels=cfg.num_mel_bins, max_positions=cfg.max_source_positions)


def matmul(m: int, k: int, n: int) -> int:
    """FLOPs of an ``(m, k) @ (k, n)`` product."""
    return 2 * m * k * n


def llm_linears(s: LLMShape, seq: int) -> dict[str, int]:
    """Forward FLOPs of each kind of decoder linear layer, summed over all layers, for ``seq`` tokens."""
    return {name: s.layers * matmul(seq, k, n) for name, (k, n) in s.linear_shapes().items()}


def llm_attention(s: LLMShape, seq: int) -> int:
    """Forward FLOPs of the score (``QK^T``) and value (``PV``) matmuls of all layers. Dense: the
    causal half is counted too, as eager and SDPA math kernels compute it (flash kernels skip it)."""
    return s.layers * s.heads * 2 * matmul(seq, s.head_dim, seq)


def llm_forward(s: LLMShape, seq: int, logit_positions: int, vocab: int | None = None) -> dict[str, int]:
    """``{"layers": ..., "lm_head": ...}``: decoder layers over ``seq`` tokens, logits at
    ``logit_positions`` over ``vocab`` rows (default: all of ``lm_head``)."""
    return {"layers": sum(llm_linears(s, seq).values()) + llm_attention(s, seq),
            "lm_head": matmul(logit_positions, s.hidden, vocab or s.vocab)}


def lora_forward(s: LLMShape, seq: int, rank: int, targets: tuple[str, ...] = LORA_LINEARS) -> int:
    """Forward FLOPs of the LoRA adapters (``x @ A`` then ``@ B``) of all layers."""
    shapes = s.linear_shapes()
    return s.layers * sum(matmul(seq, shapes[t][0], rank) + matmul(seq, rank, shapes[t][1]) for t in targets)


def student_llm_backward(s: LLMShape, seq: int, rank: int, logit_positions: int, vocab: int | None = None,
                         targets: tuple[str, ...] = LORA_LINEARS) -> dict[str, int]:
    """Backward FLOPs of a LoRA student whose input embeddings need gradients (a trained projector
    feeds them). Frozen linears and the frozen (tied) ``lm_head``: input gradients only, 1x forward.
    Attention matmuls: gradients of both operands, 2x. LoRA adapters: input and weight gradients, 2x."""
    fwd = llm_forward(s, seq, logit_positions, vocab)
    frozen_linears = sum(llm_linears(s, seq).values())
    return {"layers": frozen_linears + 2 * llm_attention(s, seq) + 2 * lora_forward(s, seq, rank, targets),
            "lm_head": fwd["lm_head"]}


def encoder_positions(frames: int) -> int:
    """Positions after conv2 (kernel 3, stride 2, padding 1): ``(frames - 1) // 2 + 1``."""
    return (frames - 1) // 2 + 1


def encoder_forward(e: EncoderShape, frames: int) -> dict[str, int]:
    """Forward FLOPs of the Whisper-style encoder on ``frames`` mel frames (the whole window)."""
    pos = encoder_positions(frames)
    d = e.d_model
    conv = matmul(frames, e.n_mels * CONV_KERNEL, d) + matmul(pos, d * CONV_KERNEL, d)
    per_layer = 4 * matmul(pos, d, d) + 2 * matmul(pos, d, pos) + matmul(pos, d, e.ffn) + matmul(pos, e.ffn, d)
    return {"conv": conv, "layers": e.layers * per_layer}


def cka_flops(tokens: int, e_teacher: int, e_student: int) -> dict[str, int]:
    """Biased linear CKA in its Gram form (``N x N``, the cheaper one for N ~ 100 and E in the
    thousands; ``pldistill.losses.cka``): forward Gram matrices of both sides (matmuls; the
    elementwise rest is O(N^2 + N*E)), backward through the student's Gram ``Y Y^T`` (two matmuls)."""
    n = tokens
    elementwise = 6 * n * n + 8 * n * (e_teacher + e_student)  # weighting, centring, norms, <K, L>
    return {"forward": matmul(n, e_teacher, n) + matmul(n, e_student, n) + elementwise,
            "backward": 2 * matmul(n, n, e_student) + 8 * n * e_student}


@dataclass(frozen=True)
class RealShapes:
    encoder: EncoderShape
    teacher: LLMShape
    student: LLMShape
    teacher_params: int
    student_params: int


def _param_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def real_shapes(teacher_llm: str = "checkpoint") -> RealShapes:
    """Shapes read from transformers config objects; parameter counts from models built on the
    ``meta`` device (no memory, no weights)."""
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    teacher_cfg = Qwen2AudioConfig(text_config=dict(TEACHER_TEXT[teacher_llm]))  # audio_config: its defaults
    student_cfg = Qwen2Config(**QWEN2_05B)
    encoder = EncoderShape.from_config(teacher_cfg.audio_config)
    student = LLMShape.from_config(student_cfg)
    with torch.device("meta"):
        teacher_model = Qwen2AudioForConditionalGeneration(teacher_cfg)
        student_llm = Qwen2ForCausalLM(student_cfg)
    tower = _param_count(teacher_model.model.audio_tower)
    projector = encoder.d_model * student.hidden + student.hidden  # the student's new Linear, with bias
    return RealShapes(encoder=encoder, teacher=LLMShape.from_config(teacher_cfg.text_config), student=student,
                      teacher_params=_param_count(teacher_model),
                      student_params=tower + projector + _param_count(student_llm))


@dataclass(frozen=True)
class StepSizes:
    frames: int  # mel frames of the window
    audio_tokens: int  # N
    prompt_tokens: int
    response_tokens: int
    lora_rank: int
    vocab: int  # logit rows compared (shared vocabulary)

    @property
    def seq(self) -> int:
        return self.audio_tokens + self.prompt_tokens + self.response_tokens

    @property
    def kl_positions(self) -> int:
        """Audio positions (eq. 5) plus the positions that predict response tokens (eq. 6)."""
        return self.audio_tokens + self.response_tokens


def step_parts(m: RealShapes, z: StepSizes, mode: str) -> dict[str, int]:
    """FLOPs per part of one micro-step, ``mode`` ``"online"`` or ``"cached"``."""
    if mode not in ("online", "cached"):
        raise ValueError(f"mode must be 'online' or 'cached', got {mode!r}")
    t, s, e = m.teacher, m.student, m.encoder
    parts: dict[str, int] = {}
    if mode == "online":
        parts["encoder fwd"] = sum(encoder_forward(e, z.frames).values())
        parts["teacher projector fwd"] = matmul(z.audio_tokens, e.d_model, t.hidden)
        teacher = llm_forward(t, z.seq, z.seq, z.vocab)
        parts["teacher LLM layers fwd"] = teacher["layers"]
        q, kv = t.heads * t.head_dim, t.kv_heads * t.head_dim  # last layer's attention, recomputed
        parts["teacher attention capture"] = (matmul(z.seq, t.hidden, q + kv)
                                              + t.heads * matmul(z.seq, t.head_dim, z.seq))
        parts["teacher lm_head fwd"] = teacher["lm_head"]
    else:
        parts["teacher lm_head fwd"] = matmul(z.kl_positions, t.hidden, z.vocab)
    proj = matmul(z.audio_tokens, e.d_model, s.hidden)
    student = llm_forward(s, z.seq, z.seq, z.vocab)
    back = student_llm_backward(s, z.seq, z.lora_rank, z.seq, z.vocab)
    parts["student projector fwd+bwd"] = proj + proj  # backward: weight gradient only
    parts["student LLM layers fwd"] = student["layers"] + lora_forward(s, z.seq, z.lora_rank)
    parts["student LLM layers bwd"] = back["layers"]
    parts["student lm_head fwd+bwd"] = student["lm_head"] + back["lm_head"]
    cka = cka_flops(z.audio_tokens, t.hidden, s.hidden)
    kl = KL_FLOPS_PER_LOGIT * z.kl_positions * z.vocab
    parts["losses: KL (est.)"] = kl + 2 * kl
    parts["losses: CE + CKA (est.)"] = 2 * CE_FLOPS_PER_LOGIT * z.response_tokens * z.vocab + sum(cka.values())
    return parts


def _sizes(args: argparse.Namespace, m: RealShapes) -> tuple[list[tuple[str, StepSizes]], float]:
    from pldistill.data.features import FRAMES_PER_SECOND, audio_token_count, choose_window

    window = args.window_s or choose_window([args.clip_s])
    valid = int(round(min(args.clip_s, window) * FRAMES_PER_SECOND))
    vocab = args.vocab or min(m.teacher.vocab, m.student.vocab)
    common = dict(audio_tokens=audio_token_count(valid), prompt_tokens=args.prompt_tokens,
                  response_tokens=args.response_tokens, lora_rank=args.lora_rank, vocab=vocab)
    stock = 2 * m.encoder.max_positions  # 3000 frames: the stock processor's 30 s
    columns = [(f"online {window:g} s", StepSizes(frames=int(round(window * FRAMES_PER_SECOND)), **common)),
               (f"online {stock // FRAMES_PER_SECOND} s", StepSizes(frames=stock, **common))]
    return columns, window


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def _describe(m: RealShapes, z: StepSizes, window: float, teacher_llm: str) -> str:
    e, t, s = m.encoder, m.teacher, m.student
    return "\n".join([
        f"encoder  d_model {e.d_model}, {e.layers} layers, {e.heads} heads, ffn {e.ffn}, {e.n_mels} mels, "
        f"{e.max_positions} positions max (30 s)",
        f"teacher  [{teacher_llm}] hidden {t.hidden}, {t.layers} layers, {t.heads} heads, {t.kv_heads} KV heads, "
        f"intermediate {t.intermediate}, lm_head {t.vocab} rows; {m.teacher_params / 1e9:.2f}B parameters in all",
        f"student  hidden {s.hidden}, {s.layers} layers, {s.heads} heads, {s.kv_heads} KV heads, intermediate "
        f"{s.intermediate}, lm_head {s.vocab} rows{' (tied)' if s.tied else ''}, LoRA r={z.lora_rank} on "
        f"{len(LORA_LINEARS)} linears/layer; {m.student_params / 1e9:.2f}B parameters with encoder and projector",
        f"sequence {z.audio_tokens} audio + {z.prompt_tokens} prompt + {z.response_tokens} response = {z.seq} "
        f"tokens; KL at {z.kl_positions} positions over {z.vocab} logits; window {window:g} s",
    ])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip-s", type=float, default=4.55, help="clip length (IEMOCAP mean: 4.55 s)")
    p.add_argument("--window-s", type=float, default=None, help="encoder window (default: covers the clip)")
    p.add_argument("--prompt-tokens", type=int, default=40)
    p.add_argument("--response-tokens", type=int, default=3)
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--vocab", type=int, default=None, help="logit rows compared (default: the smaller head)")
    p.add_argument("--teacher-llm", choices=sorted(TEACHER_TEXT), default="checkpoint")
    args = p.parse_args(argv)
    m = real_shapes(args.teacher_llm)
    columns, window = _sizes(args, m)
    cached = step_parts(m, columns[0][1], "cached")
    online = [step_parts(m, z, "online") for _, z in columns]
    names = list(dict.fromkeys([*online[0], *cached]))
    g = lambda v: f"{v / 1e9:,.1f}" if v else "-"  # noqa: E731
    rows = [[n, *(g(o.get(n, 0)) for o in online), g(cached.get(n, 0))] for n in names]
    totals = [sum(o.values()) for o in online] + [sum(cached.values())]
    rows.append(["total (GFLOP per sample)", *(g(v) for v in totals)])
    rows.append(["ratio to cached", *(f"{v / totals[-1]:.1f}x" for v in totals)])
    print(_describe(m, columns[0][1], window, args.teacher_llm), end="\n\n")
    print(_table(rows, ["part (GFLOP)", *(c for c, _ in columns), "cached"]))


if __name__ == "__main__":
    main()
