"""Samples per second of one distillation training step on CPU, and where its time goes.

The smoke sweep's trial (``sweeps/smoke.yaml``: synthetic data, tiny teacher and student, batch 8)
is built through the real code path (``prepare_fold``, ``ensure_teacher``, ``ensure_student_llm``,
``load_student_llm``, ``build_student``). For each batch, for each torch thread setting (1 and 2)
and each objective, two versions of the same step run one after the other, so that all variants
see the same load on a noisy machine:

* *plain*: ``distill_step(models, batch).total.backward()``, exactly what the training loop runs;
* *parts*: the sequence of ``pldistill/train/step.py`` re-done here with a timer around each part:
  encoder (no grad), student LLM forward (projector + LLM + logits), teacher LLM forward (projector,
  LLM, logits and the attention capture hook; no grad), ``audio_token_weights``, objective forward,
  objective backward, student backward. To split the backward, the objective is applied to detached
  copies of the student outputs: its backward stops at them, and their gradients are then pushed
  through the student graph with ``torch.autograd.backward``; the arithmetic is the same as one
  ``backward()``.

Figures are medians over the measured steps (after a warm-up); the parts' sum is checked against
the plain step (their ratio is printed). Outside the step, collating a batch and the optimizer step
(gradient clipping + AdamW) are timed too, for a training-loop estimate. The first run builds the
corpus, fine-tunes the tiny teacher and pre-trains the student prior into the cache (a minute on an
idle machine, several on a busy one); later runs reuse them.

    .venv/bin/python bench/step_breakdown.py                 # about 1 minute once the cache is warm
    .venv/bin/python bench/step_breakdown.py --steps 60 --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _util import DEFAULT_CACHE, median, quiet, smoke_trial_config, table

OBJECTIVES = ("pl_distill", "sft")
#: (row label, part keys summed into it); indented rows are the sub-parts of the row above them.
ROWS = (
    ("encoder (no grad)", ("encoder",)),
    ("teacher LLM (+projector, attention capture)", ("teacher",)),
    ("  forward (projector, LLM, logits)", ("teacher_fwd",)),
    ("  attention capture hook (q.k softmax)", ("attn_capture",)),
    ("student LLM fwd+bwd (+projector)", ("student_fwd", "student_bwd")),
    ("  forward", ("student_fwd",)),
    ("  backward", ("student_bwd",)),
    ("losses (objective + audio_token_weights)", ("weights", "loss_fwd", "loss_bwd")),
    ("  audio_token_weights", ("weights",)),
    ("  objective forward", ("loss_fwd",)),
    ("  objective backward", ("loss_bwd",)),
)
#: Parts that add up to the step; ``teacher`` includes the sub-parts ``teacher_fwd`` and ``attn_capture``.
PARTS = ("encoder", "teacher", "student_fwd", "student_bwd", "weights", "loss_fwd", "loss_bwd")
SUBPARTS = ("teacher_fwd", "attn_capture")


@dataclass
class Timings:
    """Per-step seconds of one objective: the plain step, each part, and the extras outside the step."""

    plain: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    collate: list[float] = field(default_factory=list)
    optimizer: list[float] = field(default_factory=list)


@contextmanager
def _timer(sink: dict[str, float], key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        sink[key] = sink.get(key, 0.0) + time.perf_counter() - t0


@contextmanager
def _timed_attention_probs(sink: dict[str, float]) -> Iterator[None]:
    """Time the attention capture hook's work (``audiolm._attention_probs``) while inside."""
    import pldistill.models.audiolm as audiolm

    original = audiolm._attention_probs

    def timed(*args, **kwargs):
        with _timer(sink, "attn_capture"):
            return original(*args, **kwargs)

    audiolm._attention_probs = timed
    try:
        yield
    finally:
        audiolm._attention_probs = original


def _build(cache_dir: Path):
    """The fold's data, the teacher and one student, as ``_fold_epochs`` in trial.py builds them."""
    from pldistill.models.audiolm import AudioLMHead
    from pldistill.models.loading import build_student, load_student_llm
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.student_prior import ensure_student_llm
    from pldistill.train.teacher import ensure_teacher

    def log(msg: str) -> None:
        print(f"  [setup] {msg}", flush=True)

    cfg = smoke_trial_config(cache_dir, cache_dir / "runs")
    hp = cfg.hparams
    torch.manual_seed(cfg.train.seeds[0])
    clock: dict[str, float] = {}
    with _timer(clock, "data"):
        data = prepare_fold(cfg, cfg.data.folds[0])
    with _timer(clock, "teacher"):
        teacher, _ = ensure_teacher(cfg, data, log=log)
    tok = teacher.tokenizer
    with _timer(clock, "student"):
        llm = load_student_llm(ensure_student_llm(cfg, tok, log=log), tok, seed=cfg.model.init_seed)
        student = build_student(teacher, llm, lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha,
                                lora_dropout=hp.lora_dropout, seed=cfg.train.seeds[0])
    head = AudioLMHead(student.base_model.model).train()
    print(f"setup (cache {cache_dir}): data {clock['data']:.1f} s, teacher {clock['teacher']:.1f} s, "
          f"student prior + build {clock['student']:.1f} s (first run: corpus, teacher fine-tune, prior)")
    return cfg, data, teacher, head


def _models(cfg, teacher, head, objective: str):
    from pldistill.losses import build_objective
    from pldistill.models.audiolm import AudioLMHead
    from pldistill.train.step import DistillModels

    hp = cfg.hparams
    obj = build_objective(objective, hp.model_dump(), kl_chunk_size=cfg.train.kl_chunk_size)
    return DistillModels(audio_tower=teacher.audio_tower, teacher=AudioLMHead(teacher.model), student=head,
                         vocab=len(teacher.tokenizer), objective=obj, weighting=hp.weighting,
                         sharpen_p=hp.sharpen_p)


def timed_step(m, inputs, t: dict[str, float]) -> None:
    """``distill_step`` + backward of ``pldistill/train/step.py``, part by part, seconds into ``t``."""
    from pldistill.losses import DistillBatch, attention_layers_for, audio_token_weights
    from pldistill.models.audiolm import capture_attention, encode_audio

    with _timer(t, "encoder"), torch.no_grad():
        enc = encode_audio(m.audio_tower, inputs.input_features, inputs.feature_attention_mask)
    n_audio = int(enc.num_tokens.max())
    feats, ntok = enc.features[:, :n_audio], enc.num_tokens
    with _timer(t, "student_fwd"):
        student_audio, _, student_logits = m.student(feats, ntok, inputs.input_ids, inputs.attention_mask,
                                                     m.vocab)
    # The objective sees detached copies, so its backward ends at them (timed apart from the student's).
    leaves = [student_logits.detach().requires_grad_(True), student_audio.detach().requires_grad_(True)]
    batch = DistillBatch(student_logits=leaves[0], labels=inputs.labels, response_mask=inputs.response_mask,
                         audio_mask=inputs.audio_mask, student_audio=leaves[1],
                         audio_token_mask=enc.token_mask[:, :n_audio])
    if m.objective.needs_teacher:
        layers = attention_layers_for(m.weighting) if m.objective.needs_audio_weights else None
        attn: list[torch.Tensor] = []
        with _timer(t, "teacher"), torch.no_grad(), _timed_attention_probs(t):
            if layers is None:
                teacher_audio, _, teacher_logits = m.teacher(feats, ntok, inputs.input_ids,
                                                             inputs.attention_mask, m.vocab)
            else:
                lm = m.teacher.core.language_model
                with capture_attention(lm, inputs.attention_mask, layers) as attn:
                    teacher_audio, _, teacher_logits = m.teacher(feats, ntok, inputs.input_ids,
                                                                 inputs.attention_mask, m.vocab)
        with _timer(t, "weights"), torch.no_grad():
            weights = None if layers is None else audio_token_weights(
                attn if layers == "all" else attn[-1], inputs.audio_mask, inputs.response_token_mask,
                m.weighting, p=m.sharpen_p)
            batch.teacher_logits = teacher_logits
            batch.teacher_audio = teacher_audio
            if "cka" in m.objective.weights:
                batch.audio_weights = weights if weights is not None else audio_token_weights(
                    None, inputs.audio_mask, inputs.response_token_mask, "uniform")
    with _timer(t, "loss_fwd"):
        out = m.objective(batch)
    with _timer(t, "loss_bwd"):
        out.total.backward()
    with _timer(t, "student_bwd"):
        pairs = [(out_, leaf.grad) for out_, leaf in zip((student_logits, student_audio), leaves)
                 if leaf.grad is not None]
        torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])
    t["teacher_fwd"] = t.get("teacher", 0.0) - t.get("attn_capture", 0.0)


def _one(m, batch_of, optimizer, params, max_grad_norm, rec: Timings, record: bool) -> None:
    """Collate, the plain step, the timed parts and the optimizer step of one objective on one batch."""
    from pldistill.train.step import distill_step

    t0 = time.perf_counter()
    batch = batch_of()
    t1 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    t2 = time.perf_counter()
    distill_step(m, batch).total.backward()
    t3 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    parts: dict[str, float] = {}
    timed_step(m, batch, parts)
    t4 = time.perf_counter()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    t5 = time.perf_counter()
    if record:
        rec.collate.append(t1 - t0)
        rec.plain.append(t3 - t2)
        rec.optimizer.append(t5 - t4)
        for key in PARTS + SUBPARTS:
            rec.parts[key].append(parts.get(key, 0.0))


def measure(cfg, data, teacher, head, *, threads: list[int], steps: int,
            warmup: int) -> dict[tuple[int, str], Timings]:
    """Interleaved per batch: for each thread setting and each objective, the plain step, the timed
    parts and the optimizer step, so every variant sees the same load on a noisy machine."""
    from pldistill.models.inputs import collate

    models = {name: _models(cfg, teacher, head, name) for name in OBJECTIVES}
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.hparams.lr, weight_decay=cfg.hparams.weight_decay)
    bs, tok = cfg.train.batch_size, teacher.tokenizer
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0)).tolist()
    per_epoch = len(order) // bs
    out = {(t, name): Timings() for t in threads for name in OBJECTIVES}
    for i in range(warmup + steps):
        idx = order[(i % per_epoch) * bs:(i % per_epoch + 1) * bs]
        for t in threads:
            torch.set_num_threads(t)
            for name, m in models.items():
                _one(m, lambda idx=idx: collate([data.train[k] for k in idx], tok, data.labels), optimizer,
                     params, cfg.train.max_grad_norm, out[(t, name)], record=i >= warmup)
    return out


def report(res: dict[str, Timings], *, threads: int, steps: int, warmup: int,
           batch_size: int) -> dict[str, float]:
    """Print the table of one thread setting; returns samples/s of the plain step per objective."""
    med = {n: {k: median(v) * 1e3 for k, v in r.parts.items()} for n, r in res.items()}
    total = {n: sum(med[n][k] for k in PARTS) for n in res}
    plain = {n: median(r.plain) * 1e3 for n, r in res.items()}
    rows: list[list[object]] = []
    for label, keys in ROWS:
        row: list[object] = [label]
        for n in OBJECTIVES:
            ms = sum(med[n][k] for k in keys)
            row += [ms, 100 * ms / total[n]]
        rows.append(row)

    def line(label: str, values: dict[str, float], fmt: str = "{:.1f}") -> list[object]:
        return [label, *(x for n in OBJECTIVES for x in (fmt.format(values[n]), ""))]

    extras = {n: (median(r.collate) + median(r.optimizer)) * 1e3 for n, r in res.items()}
    rows += [
        line("sum of parts", total),
        line("plain distill_step + backward", plain),
        line("sum of parts / plain", {n: total[n] / plain[n] for n in OBJECTIVES}, "{:.2f}"),
        line("samples/s (plain step)", {n: batch_size * 1e3 / plain[n] for n in OBJECTIVES}),
        line("outside the step: collate", {n: median(r.collate) * 1e3 for n, r in res.items()}),
        line("outside the step: clip + AdamW step", {n: median(r.optimizer) * 1e3 for n, r in res.items()}),
        line("samples/s (step + collate + optimizer)",
             {n: batch_size * 1e3 / (plain[n] + extras[n]) for n in OBJECTIVES}),
    ]
    header = ["part", *(x for n in OBJECTIVES for x in (f"{n} ms", "share %"))]
    print(f"\n== torch threads: {threads} | batch {batch_size} | median of {steps} steps after {warmup} "
          "warm-up | share % of the sum of parts ==")
    print(table(header, rows))
    print(f"pl_distill / sft step time: {plain['pl_distill'] / plain['sft']:.2f}x")
    off = [n for n in OBJECTIVES if abs(total[n] / plain[n] - 1) > 0.1]
    if off:
        print(f"warning: sum of parts is more than 10% off the plain step for {', '.join(off)} "
              "(machine busy?)")
    return {n: batch_size * 1e3 / plain[n] for n in OBJECTIVES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--steps", type=int, default=30, help="measured steps (batches)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    quiet()
    started = time.perf_counter()
    cfg, data, teacher, head = _build(args.cache_dir)
    hp = cfg.hparams
    print(f"fold {data.fold}: {len(data.train)} train clips, window {data.window_s:g} s | pl_distill: "
          f"weighting {hp.weighting}, alpha {hp.alpha}, beta {hp.beta}, gamma {hp.gamma}, "
          f"t {hp.temperature}, LoRA rank {hp.lora_rank}")
    res = measure(cfg, data, teacher, head, threads=args.threads, steps=args.steps, warmup=args.warmup)
    sps = {t: report({n: res[(t, n)] for n in OBJECTIVES}, threads=t, steps=args.steps, warmup=args.warmup,
                     batch_size=cfg.train.batch_size) for t in args.threads}
    if len(sps) > 1:
        base = min(sps)
        print("\nthread scaling (samples/s of the plain step, relative to "
              f"{base} thread{'s' if base > 1 else ''}): "
              + "; ".join(f"{n}: " + ", ".join(f"{t} -> {sps[t][n] / sps[base][n]:.2f}x" for t in sorted(sps))
                          for n in OBJECTIVES))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
