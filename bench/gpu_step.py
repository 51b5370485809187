"""One PL-Distill training step at the real model sizes (random weights, nothing downloaded): samples/s and MFU.

Teacher: Qwen2-Audio-7B's shape (Whisper-large-v3 encoder: d_model 1280, 32 layers, 20 heads, ffn 5120,
128 mels; text config as ``bench/flops.py`` reads it from the checkpoint's config.json: hidden 4096,
32 layers, 32 heads, intermediate 11008, vocab 156032). Student: Qwen2-0.5B (hidden 896, 24 layers,
14 heads, 2 KV heads, intermediate 4864, vocab 151936, tied) with the new projector and LoRA, built by
``pldistill.models.loading.build_student`` exactly as trials build it. Weights in bf16 (LoRA adapters
fp32, as peft keeps them), SDPA attention; the step is ``pldistill.train.step.distill_step`` with the
PL-Distill objective and ``attention_last`` weighting, then backward, gradient clipping and AdamW.

Model FLOPs per sample come from ``bench/flops.py`` (``step_parts(..., "online")``, the same
accounting that file documents) for the sizes actually built; MFU = FLOPs/s / the device's peak dense
bf16 FLOP/s (table below, or ``--peak-tflops``). Then the same student, batch and optimizer take the
same step reading a teacher cache of the batch built in memory (``teacher_mode: cached``: no encoder
and no teacher forward), and the cached / online step time is printed too (these figures are for the
online step).

``--scale s`` shrinks every model for a CPU run: layers, attention heads (head size kept), FFN widths
and vocabularies times ``s`` (at least 1 layer and 1 head); ``--tiny`` is ``--scale 1/32``.

    .venv/bin/python bench/gpu_step.py                       # real sizes, on the GPU
    .venv/bin/python bench/gpu_step.py --tiny --device cpu   # smallest, on CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops  # noqa: E402  (bench/flops.py, next to this file)
from _util import quiet, table  # noqa: E402

__all__ = ["PEAK_BF16_TFLOPS", "Sizes", "scaled_sizes", "build_models", "make_batch", "run", "main"]

#: Dense bf16 tensor-core peak, TFLOP/s (vendor datasheets, SXM parts); matched against the device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0}
LABELS = ("Neutral", "Happy", "Angry", "Sad")


@dataclasses.dataclass(frozen=True)
class Sizes:
    encoder: dict[str, Any]  # Qwen2AudioEncoderConfig fields
    teacher: dict[str, Any]  # Qwen2Config fields
    student: dict[str, Any]


def _shrink(n: int, s: float) -> int:
    return max(1, round(n * s))


def _llm(cfg: dict[str, Any], s: float) -> dict[str, Any]:
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    heads = _shrink(cfg["num_attention_heads"], s)
    kv = _shrink(cfg["num_key_value_heads"], s)
    kv = kv if heads % kv == 0 else 1
    return {**cfg, "hidden_size": heads * head_dim, "num_attention_heads": heads, "num_key_value_heads": kv,
            "num_hidden_layers": _shrink(cfg["num_hidden_layers"], s),
            "intermediate_size": _shrink(cfg["intermediate_size"], s), "vocab_size": _shrink(cfg["vocab_size"], s)}


def scaled_sizes(s: float = 1.0) -> Sizes:
    """The real shapes (``s = 1``) or every model shrunk by ``s``."""
    if not 0 < s <= 1:
        raise ValueError(f"scale must be in (0, 1], got {s}")
    teacher = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
               **flops.QWEN2_AUDIO_7B_TEXT}
    teacher.pop("model_type")
    enc_heads = _shrink(20, s)
    encoder = {"d_model": enc_heads * 64, "encoder_layers": _shrink(32, s), "encoder_attention_heads": enc_heads,
               "encoder_ffn_dim": _shrink(5120, s), "num_mel_bins": 128, "max_source_positions": 1500}
    return Sizes(encoder=encoder, teacher=_llm(teacher, s), student=_llm(dict(flops.QWEN2_05B), s))


def build_models(sizes: Sizes, device: torch.device, dtype: torch.dtype, *, lora_rank: int, window_s: float,
                 teacher_llm: bool = True):
    """(teacher, student) as ``pldistill.models.loading`` builds them, random weights, on ``device``.

    ``teacher_llm=False``: the teacher's LLM stays on ``meta`` and only its encoder is built, as a
    ``teacher_mode: cached`` trial loads it (``loading._encoder_only_teacher``)."""
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2Config,
        Qwen2ForCausalLM,
    )
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    from pldistill.models.loading import Teacher, build_student, freeze, set_encoder_window
    from pldistill.models.tokenizer import AUDIO_TOKEN, build_tiny_tokenizer

    tok = build_tiny_tokenizer()  # ids far below either vocabulary; only the sequence layout matters
    cfg = Qwen2AudioConfig(audio_config=sizes.encoder, text_config={"model_type": "qwen2", **sizes.teacher},
                           audio_token_index=tok.convert_tokens_to_ids(AUDIO_TOKEN))
    cfg.text_config._attn_implementation = "sdpa"
    cfg.audio_config._attn_implementation = "sdpa"
    student_cfg = Qwen2Config(**sizes.student, use_sliding_window=False)
    student_cfg._attn_implementation = "sdpa"
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device if teacher_llm else "meta"):
            teacher_model = Qwen2AudioForConditionalGeneration(cfg)
        with torch.device(device):
            if not teacher_llm:
                teacher_model.model.audio_tower = Qwen2AudioEncoder(cfg.audio_config)
            teacher_model = freeze(teacher_model)
            llm = Qwen2ForCausalLM(student_cfg)
    finally:
        torch.set_default_dtype(old)
    teacher = Teacher(model=teacher_model, tokenizer=tok, source="random")
    set_encoder_window(teacher.audio_tower, window_s)
    student = build_student(teacher, llm, lora_rank=lora_rank, lora_alpha=256.0).to(device)
    return teacher, student


def make_examples(batch: int, clip_s: float, window_s: float) -> list:
    """``batch`` clips of ``clip_s`` seconds of random log-mel in a ``window_s`` window."""
    from pldistill.data.features import FRAMES_PER_SECOND, audio_token_count
    from pldistill.models.inputs import Example

    frames, valid = int(window_s * FRAMES_PER_SECOND), int(clip_s * FRAMES_PER_SECOND)
    rng = np.random.default_rng(0)
    return [Example(key=f"b{i}", features=rng.standard_normal((128, frames)).astype(np.float32),
                    valid_frames=valid, label=i % len(LABELS), num_audio_tokens=audio_token_count(valid))
            for i in range(batch)]


def make_batch(tok, batch: int, clip_s: float, window_s: float, device: torch.device, dtype: torch.dtype):
    from pldistill.models.inputs import collate

    inputs = collate(make_examples(batch, clip_s, window_s), tok, LABELS).to(device)
    return dataclasses.replace(inputs, input_features=inputs.input_features.to(dtype))


def cached_models(models, teacher, examples: list, vocab: int):
    """``models`` reading a teacher cache of ``examples`` built in memory (float32 rows, as a sweep's
    cache stores them), as a ``teacher_mode: cached`` trial does: no encoder, no teacher forward."""
    from pldistill.train.teacher_cache import TeacherCache, teacher_dims, teacher_rows

    cache = TeacherCache.from_table(teacher_rows(teacher, examples, LABELS), teacher_dims(teacher))
    cache.lm_head_weight = teacher.model.lm_head.weight[:vocab].detach()
    return dataclasses.replace(models, audio_tower=None, teacher=None, cache=cache)


def _time_steps(models, inputs, params, optimizer, device, warmup: int, steps: int) -> tuple[float, Any]:
    from pldistill.train.step import distill_step

    times = []
    for i in range(warmup + steps):
        _sync(device)
        t = time.perf_counter()
        out = distill_step(models, inputs)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def _flops_per_sample(teacher, student, inputs, lora_rank: int, vocab: int) -> float:
    m = flops.RealShapes(encoder=flops.EncoderShape.from_config(teacher.model.config.audio_config),
                         teacher=flops.LLMShape.from_config(teacher.model.config.text_config),
                         student=flops.LLMShape.from_config(student.base_model.model.config.text_config),
                         teacher_params=0, student_params=0)
    n_audio = int(inputs.audio_mask[0].sum())
    response = int(inputs.response_mask[0].sum())
    z = flops.StepSizes(frames=inputs.input_features.shape[-1], audio_tokens=n_audio,
                        prompt_tokens=int(inputs.attention_mask[0].sum()) - n_audio - response,
                        response_tokens=response, lora_rank=lora_rank, vocab=vocab)
    return float(sum(flops.step_parts(m, z, "online").values()))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, warm up, time ``args.steps`` steps; returns the figures :func:`main` prints."""
    from pldistill.config import Hyperparameters
    from pldistill.losses import build_objective
    from pldistill.models.audiolm import AudioLMHead
    from pldistill.train.step import DistillModels

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16
    sizes = scaled_sizes(args.scale)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    teacher, student = build_models(sizes, device, dtype, lora_rank=args.lora_rank, window_s=args.window_s)
    build_s = time.perf_counter() - t0
    head = AudioLMHead(student.base_model.model).train()
    vocab = min(sizes.teacher["vocab_size"], sizes.student["vocab_size"])  # the shared vocabulary
    models = DistillModels(audio_tower=teacher.audio_tower, teacher=AudioLMHead(teacher.model), student=head,
                           vocab=vocab, objective=build_objective("pl_distill", Hyperparameters().model_dump(),
                                                                 kl_chunk_size=args.kl_chunk),
                           weighting="attention_last")
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    inputs = make_batch(teacher.tokenizer, args.batch, args.clip_s, args.window_s, device, dtype)
    step_s, out = _time_steps(models, inputs, params, optimizer, device, args.warmup, args.steps)
    # the same student, batch and optimizer reading the teacher cache instead (issue #5's comparison)
    cached = cached_models(models, teacher, make_examples(args.batch, args.clip_s, args.window_s), vocab)
    cached_s, _ = _time_steps(cached, inputs, params, optimizer, device, args.warmup, args.steps)
    per_sample = _flops_per_sample(teacher, student, inputs, args.lora_rank, vocab)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    achieved = per_sample * args.batch / step_s
    return {"device": name, "scale": args.scale, "build_s": build_s, "step_s": step_s, "cached_step_s": cached_s,
            "samples_per_s": args.batch / step_s, "gflop_per_sample": per_sample / 1e9,
            "tflops": achieved / 1e12, "mfu": achieved / (peak * 1e12) if peak else None,
            "loss": float(out.total.detach()), "seq": int(inputs.attention_mask.shape[1]),
            "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "sizes": sizes}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="shrink every model by this factor (CPU runs)")
    p.add_argument("--tiny", action="store_true", help="--scale 1/32")
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--batch", type=int, default=1, help="clips per step (paper: 1, with 16 accumulation)")
    p.add_argument("--clip-s", type=float, default=4.55, help="clip length (IEMOCAP mean)")
    p.add_argument("--window-s", type=float, default=5.0, help="encoder window")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--kl-chunk", type=int, default=128, help="KL positions per chunk (train.kl_chunk_size)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak dense bf16 TFLOP/s")
    args = p.parse_args(argv)
    if args.tiny:
        args.scale = 1 / 32
    quiet()
    r = run(args)
    s = r["sizes"]
    print(f"device {r['device']}, scale {r['scale']:g}, batch {args.batch}, sequence {r['seq']} tokens, "
          f"window {args.window_s:g} s, bf16")
    for who in ("encoder", "teacher", "student"):
        print(f"  {who}: " + ", ".join(f"{k} {v}" for k, v in getattr(s, who).items()
                                      if k not in ("model_type", "max_position_embeddings")))
    mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "n/a (give --peak-tflops)"
    rows = [["build (s)", f"{r['build_s']:.1f}"], ["step, median (s)", f"{r['step_s']:.3f}"],
            ["samples/s", f"{r['samples_per_s']:.2f}"], ["model GFLOP per sample", f"{r['gflop_per_sample']:,.1f}"],
            ["achieved TFLOP/s", f"{r['tflops']:.3f}"], ["MFU", mfu], ["loss", f"{r['loss']:.3f}"],
            ["cached step, median (s)", f"{r['cached_step_s']:.3f}"],
            ["cached / online step", f"{r['cached_step_s'] / r['step_s']:.3f}"]]
    if r["peak_mem_gib"] is not None:
        rows.append(["peak GPU memory (GiB)", f"{r['peak_mem_gib']:.1f}"])
    print(table(["figure", "value"], rows))
    return r


if __name__ == "__main__":
    main()
