"""Peak memory of closed-set scoring: C expanded copies of the prompt's KV cache vs one shared copy.

"expanded" is ``AudioLMHead.score_responses`` as it was until this bench was written (a verbatim
copy below, :func:`score_expanded`): the prompt runs once with ``use_cache=True``, its KV cache is
repeated C times (``batch_repeat_interleave``) and the C continuations run as ``B * C`` rows on it.
"shared" is today's method: one forward of ``B`` rows, each the prompt followed by the C candidates
packed behind it under a 4-D mask (no KV cache at all; each layer's keys and values exist once, for
the duration of that layer).

Each measurement runs in a freshly spawned process (as ``bench/kl_memory.py``): the child builds the
model, the prompts, the encoder output (random, of the encoder's shape: the encoder itself is not
what is compared) and the candidates, records VmRSS, resets VmHWM (``/proc/self/clear_refs``), scores
once under ``torch.no_grad()`` and reports ``VmHWM - VmRSS``: what scoring added on top of the model
and its inputs. ``MALLOC_MMAP_THRESHOLD_=65536`` makes glibc return freed buffers, so VmHWM is the peak
of live memory. Both methods' scores are compared. Linux only (``/proc``).

The models are ``bench/gpu_step.py``'s real shapes shrunk by ``--scale`` (default 1/8: the teacher
is 4 layers of width 512, its KV cache 8 KiB per token in bf16), at the evaluation's real batch (16),
label count (4, IEMOCAP) and a full 30 s window (750 audio tokens). The KV cache's size at the real
shapes is printed too, computed from the configs.

    PYTHONPATH=$PWD .venv/bin/python bench/scoring_memory.py
    PYTHONPATH=$PWD .venv/bin/python bench/scoring_memory.py --model student --scale 0.25 --batch 8
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops  # noqa: E402  (bench/flops.py, next to this file)
import gpu_step  # noqa: E402
from _util import quiet, status_kib, table  # noqa: E402

__all__ = ["score_expanded", "kv_cache_bytes", "Measurement", "measure", "main"]

METHODS = ("expanded", "shared")


@torch.no_grad()
def score_expanded(head, encoded: Tensor, num_tokens: Tensor, prompt_ids: Tensor, prompt_mask: Tensor,
                   responses: Tensor, response_lengths: Tensor, vocab: int | None = None) -> Tensor:
    """``AudioLMHead.score_responses`` at commit c786ea4 (C copies of the prompt's KV cache), verbatim."""
    from pldistill.models.audiolm import merge_audio_embeddings

    audio = head._project(encoded)
    lm = head.core.language_model
    embeds = merge_audio_embeddings(lm.embed_tokens, prompt_ids, audio, num_tokens, head.audio_token_id)
    out = lm(inputs_embeds=embeds, attention_mask=prompt_mask, use_cache=True)
    b, c, r = prompt_ids.shape[0], responses.shape[0], responses.shape[1]
    lengths = prompt_mask.sum(-1)
    last = out.last_hidden_state[torch.arange(b, device=lengths.device), lengths - 1]  # predicts token 0
    scores = torch.log_softmax(head.logits(last, vocab).float(), -1)[:, responses[:, 0]]  # (B, C)
    if r == 1:
        return scores
    cache = out.past_key_values
    cache.batch_repeat_interleave(c)  # clip-major: row b * C + c continues prompt b
    steps = torch.arange(r - 1, device=responses.device)
    cont_mask = (steps[None, :] < (response_lengths - 1)[:, None]).long().repeat(b, 1)  # (B*C, R-1)
    hidden = lm(inputs_embeds=lm.embed_tokens(responses[:, :-1].repeat(b, 1)),
                attention_mask=torch.cat([prompt_mask.repeat_interleave(c, 0), cont_mask], 1),
                position_ids=lengths.repeat_interleave(c)[:, None] + steps[None, :],
                past_key_values=cache, use_cache=True).last_hidden_state
    logp = torch.log_softmax(head.logits(hidden, vocab).float(), -1)  # position j predicts token j + 1
    nxt = logp.gather(-1, responses[:, 1:].repeat(b, 1).unsqueeze(-1)).squeeze(-1) * cont_mask
    return scores + nxt.sum(-1).view(b, c)


def kv_cache_bytes(shape: flops.LLMShape, batch: int, tokens: int, copies: int, bytes_per_value: int = 2) -> int:
    """Bytes of a KV cache of all layers for ``batch`` sequences of ``tokens``, ``copies`` times over."""
    return shape.layers * 2 * shape.kv_heads * shape.head_dim * batch * tokens * copies * bytes_per_value


@dataclass
class Measurement:
    method: str
    peak_mib: float
    seconds: float
    scores: list[list[float]]
    prompt_tokens: int
    response_tokens: int



def _inputs(args: argparse.Namespace, tok, encoder_dim: int, labels: tuple[str, ...]):
    from pldistill.models.inputs import prompt_inputs, response_ids

    examples = gpu_step.make_examples(args.batch, args.clip_s, args.window_s)
    prompt = prompt_inputs(examples, tok, labels)
    ids = response_ids(tok, labels)
    responses = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in ids], batch_first=True)
    lengths = torch.tensor([len(r) for r in ids])
    num_tokens = torch.tensor([ex.num_audio_tokens for ex in examples])
    g = torch.Generator().manual_seed(1)
    encoded = torch.randn(args.batch, int(num_tokens.max()), encoder_dim, generator=g).to(torch.bfloat16)
    return encoded, num_tokens, prompt.input_ids, prompt.attention_mask, responses, lengths


def _child(method: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    from pldistill.models.audiolm import AudioLMHead

    quiet()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = gpu_step.scaled_sizes(args.scale)
    teacher, student = gpu_step.build_models(sizes, torch.device("cpu"), torch.bfloat16, lora_rank=8,
                                             window_s=args.window_s)
    model = teacher.model if args.model == "teacher" else student.base_model.model
    head = AudioLMHead(model).eval()
    labels = gpu_step.LABELS[:args.labels] if args.labels <= len(gpu_step.LABELS) else tuple(
        f"Label{i}" for i in range(args.labels))
    enc, ntok, ids, mask, responses, lengths = _inputs(args, teacher.tokenizer, sizes.encoder["d_model"], labels)
    vocab = len(teacher.tokenizer)
    del teacher, student  # the head keeps its model; the other one's weights go
    baseline = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    with torch.no_grad():
        if method == "expanded":
            scores = score_expanded(head, enc, ntok, ids, mask, responses, lengths, vocab)
        else:
            scores = head.score_responses(enc, ntok, ids, mask, responses, lengths, vocab)
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    queue.put(Measurement(method, (peak - baseline) / 1024, seconds, scores.tolist(), int(ids.shape[1]),
                          int(responses.shape[1])))


def measure(method: str, args: argparse.Namespace) -> Measurement:
    """One scoring call with ``method`` in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"measurement {method} failed with exit code {proc.exitcode}")
    return result


def _shape(cfg: dict) -> flops.LLMShape:
    from transformers import Qwen2Config

    return flops.LLMShape.from_config(Qwen2Config(**{k: v for k, v in cfg.items() if k != "model_type"}))


def _real_kv_table(batch: int, labels: int, tokens: int) -> str:
    """KV cache of the real shapes: C expanded copies (held through the continuation) vs none kept."""
    configs = {"teacher (Qwen2-Audio-7B checkpoint LLM)": {**flops.QWEN2_AUDIO_7B_TEXT, "hidden_size": 4096,
                                                          "num_hidden_layers": 32, "num_attention_heads": 32,
                                                          "num_key_value_heads": 32},
               "teacher (paper's Qwen2-7B shape)": flops.QWEN2_7B_TEXT, "student (Qwen2-0.5B)": flops.QWEN2_05B}
    shapes = {name: _shape(cfg) for name, cfg in configs.items()}
    rows = []
    for name, s in shapes.items():
        one = kv_cache_bytes(s, batch, tokens, 1)
        rows.append([name, f"{one / 2**30:.2f}", f"{kv_cache_bytes(s, batch, tokens, labels) / 2**30:.2f}",
                     f"{one / s.layers / 2**30:.3f}"])
    return table(["model, bf16", "1 copy GiB", f"{labels} copies GiB", "shared: 1 layer GiB"], rows)


def main(argv: list[str] | None = None) -> list[Measurement]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("teacher", "student"), default="teacher")
    p.add_argument("--scale", type=float, default=0.125, help="bench/gpu_step.py's shrink factor")
    p.add_argument("--batch", type=int, default=16, help="clips per scoring call (train.eval_batch_size)")
    p.add_argument("--labels", type=int, default=4, help="candidates per clip (IEMOCAP: 4)")
    p.add_argument("--clip-s", type=float, default=30.0, help="clip length (30: a full window)")
    p.add_argument("--window-s", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")  # read by glibc when each child starts
    quiet()
    results = [measure(m, args) for m in METHODS]
    old, new = results
    s = gpu_step.scaled_sizes(args.scale)
    shape = s.teacher if args.model == "teacher" else s.student
    llm = _shape(shape)
    kv = kv_cache_bytes(llm, args.batch, old.prompt_tokens, 1) / 2**20
    diff = max(abs(a - b) for ra, rb in zip(old.scores, new.scores) for a, b in zip(ra, rb))
    scale = max(abs(a) for ra in old.scores for a in ra)
    same = [r.index(max(r)) for r in old.scores] == [r.index(max(r)) for r in new.scores]
    print(f"closed-set scoring, {args.model} at scale {args.scale:g} ({llm.layers} layers, hidden {llm.hidden}, "
          f"{llm.kv_heads} KV heads x {llm.head_dim}), bf16, batch {args.batch}, {args.labels} candidates "
          f"(responses padded to {old.response_tokens} tokens), prompt {old.prompt_tokens} tokens "
          f"({args.clip_s:g} s clips), {args.threads} threads; one prompt KV cache = {kv:.0f} MiB")
    rows = [[m.method, f"{m.peak_mib:.0f}", f"{m.peak_mib / old.peak_mib:.2f}", f"{m.seconds:.2f}"] for m in results]
    print(table(["method", "peak MiB", "x expanded", "time s"], rows))
    print(f"max |score difference| {diff:.2e} ({diff / scale:.1e} of the largest |score|; bf16 model), "
          f"same predictions: {'yes' if same else 'NO'}; saved {old.peak_mib - new.peak_mib:.0f} MiB "
          f"= {(old.peak_mib - new.peak_mib) / kv:.2f} prompt KV caches")
    print(f"\nKV cache of the prompts at the real shapes, batch {args.batch}, {old.prompt_tokens} tokens "
          f"(the expanded method holds C copies through the continuation; the shared one keeps none):")
    print(_real_kv_table(args.batch, args.labels, old.prompt_tokens))
    return results


if __name__ == "__main__":
    main()
