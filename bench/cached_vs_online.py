"""Wall time of the same small sweep with ``teacher_mode: online`` and ``cached``, side by side (issue #5).

The smoke sweep's trial (``sweeps/smoke.yaml``: synthetic fold 1, 120 train clips, batch 8,
``pl_distill``) with tiny models in the parameter ratio of Qwen2-Audio's encoder : Qwen2-7B :
Qwen2-0.5B (~1.3 : 15 : 1; the counts are printed) and the real 4 : 1 teacher : student width.
``--width`` picks the student's width (the rest follows):

- 384 (default): student LLM 384 x 2 layers (4.5M), teacher LLM 1536 x 2 (69M), encoder 384 x 3 (5.9M);
- 256: student 256 x 2 (2.1M), teacher 1024 x 2 (31M), encoder 256 x 3 (2.7M); the size of the
  session 2-3 runs in ``bench/RESULTS.md``.

Width matters on a CPU beyond the FLOPs: a step's elementwise work (LoRA scaling and adds, SiLU,
RoPE, norms) and LoRA's rank-8 matmuls grow with width, its matrix multiplies with width squared,
and the former run far below the machine's matmul rate. At width 256 they are ~30% of the
student's step, inflating the cached/online ratio over what the FLOPs say; the real widths (896
and 3584) are wider still than either set. Sequences are the tiny defaults' (2 s window: 100
encoder positions, <= 50 audio tokens, 128 LLM tokens per batch row).

Three measurements, in one run, on the same machine load:

1. one training step (forward, backward, AdamW) on the same batches with the same student,
   online and cached alternating: where a step's time goes, with no trial overhead;
2. the one-off cache build (encoder + teacher forward over all 192 clips, in process; a sweep
   does it once with ``pldistill-sweep cache``, shared by every trial);
3. a small sweep, the smoke sweep's shape: ``--trials`` (6, its ``num_samples``) hyperparameter
   sets (each weighting variant, the rest spread over its search space) x ``--epochs`` (3, its
   ``base.train.epochs``; no ASHA stopping), each run in both modes with the same seeds through
   :func:`pldistill.train.trial.run_trial` (a Ray sweep adds ~16 s of process start per trial,
   the same in both modes), online and cached alternating. The headline ratio is
   (cached trials + cache build) / online trials; the metrics of both modes are compared.

Not timed, as in a sweep's ``prepare_sweep`` for both modes: corpus, features, teacher fine-tune
(``--teacher-epochs``, fewer than the default 20: the bigger teacher costs ~15x the student per
step), student prior. They are cached under ``--cache`` (per size set), so a second run skips them.

    .venv/bin/python bench/cached_vs_online.py   # ~20 min on 2 cores (+~8 min once: teacher, prior)
    .venv/bin/python bench/cached_vs_online.py --width 256   # ~8 min (+5 min once)
    .venv/bin/python bench/cached_vs_online.py --trials 2 --epochs 1
    .venv/bin/python bench/cached_vs_online.py --quick --cache /tmp/x   # default tiny models, ~30 s
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from _util import quiet, smoke_trial_config, table

#: Per student width: (student LLM, teacher LLM, encoder). Student: Qwen2-0.5B's role (hidden 896 x
#: 24 layers), reduced. Teacher: ~15x the student's parameters (Qwen2-7B / Qwen2-0.5B), 4x wider and
#: untied like the real one. Encoder: ~1.3x the student LLM (Qwen2-Audio's encoder / Qwen2-0.5B).
SIZE_SETS: dict[int, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    384: (dict(hidden=384, layers=2, heads=6, kv_heads=2, intermediate=1536, vocab_pad=16, tie_embeddings=True),
          dict(hidden=1536, layers=2, heads=12, kv_heads=2, intermediate=6144, vocab_pad=64, tie_embeddings=False),
          dict(d_model=384, encoder_layers=3, encoder_attention_heads=6, encoder_ffn_dim=1536)),
    256: (dict(hidden=256, layers=2, heads=4, kv_heads=2, intermediate=1024, vocab_pad=16, tie_embeddings=True),
          dict(hidden=1024, layers=2, heads=8, kv_heads=2, intermediate=4096, vocab_pad=64, tie_embeddings=False),
          dict(d_model=256, encoder_layers=3, encoder_attention_heads=4, encoder_ffn_dim=1024)),
}
DEFAULT_WIDTH = 384
STUDENT, TEACHER, ENCODER = SIZE_SETS[DEFAULT_WIDTH]
#: One per weighting variant first; the rest spread over sweeps/smoke.yaml's space.
TRIALS = (
    dict(weighting="attention_last", alpha=1.0, beta=0.8, gamma=1.0, temperature=2.0, lora_rank=8),
    dict(weighting="uniform", alpha=0.5, beta=1.5, gamma=0.5, temperature=4.0, lora_rank=4),
    dict(weighting="attention_layers", alpha=1.5, beta=0.3, gamma=1.5, temperature=1.0, lora_rank=16),
    dict(weighting="attention_sharpened", alpha=0.8, beta=1.2, gamma=0.8, temperature=3.0, lora_rank=2),
    dict(weighting="attention_last", alpha=0.3, beta=1.8, gamma=0.6, temperature=6.0, lora_rank=4),
    dict(weighting="uniform", alpha=1.8, beta=0.5, gamma=1.2, temperature=1.5, lora_rank=8),
    dict(weighting="attention_layers", alpha=0.7, beta=1.0, gamma=1.8, temperature=0.7, lora_rank=2),
    dict(weighting="attention_sharpened", alpha=1.2, beta=0.2, gamma=0.3, temperature=5.0, lora_rank=16),
)


@contextlib.contextmanager
def bench_sizes(enabled: bool = True, width: int = DEFAULT_WIDTH) -> Iterator[None]:
    """Build the tiny teacher, encoder and student prior at the bench's sizes (restored on exit)."""
    from pldistill.models import loading
    from pldistill.train import student_prior

    if not enabled:
        yield
        return
    saved = (dict(loading.TINY_ENCODER), loading.build_tiny_teacher, student_prior.TINY_STUDENT,
             student_prior.load_student_llm)
    student_sizes, teacher_sizes, encoder = SIZE_SETS[width]
    student = loading.TinySizes(**student_sizes)
    loading.TINY_ENCODER.update(encoder)
    loading.build_tiny_teacher = functools.partial(saved[1], sizes=loading.TinySizes(**teacher_sizes))
    student_prior.TINY_STUDENT = student  # its cache key
    student_prior.load_student_llm = functools.partial(saved[3], sizes=student)
    try:
        yield
    finally:
        loading.TINY_ENCODER.clear()
        loading.TINY_ENCODER.update(saved[0])
        loading.build_tiny_teacher, student_prior.TINY_STUDENT, student_prior.load_student_llm = saved[1:]


def default_cache(quick: bool, width: int = DEFAULT_WIDTH) -> Path:
    """Its own cache per size set: the teacher cache key names the teacher ``tiny``, not its sizes."""
    tag = "default" if quick else hashlib.sha256(repr(SIZE_SETS[width]).encode()).hexdigest()[:8]
    return Path(f"/tmp/pldistill-bench-cvo-{tag}")


def _param_counts(teacher, student_llm) -> dict[str, int]:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    tower = teacher.model.model.audio_tower
    return {"encoder": count(tower) - tower.embed_positions.weight.numel(),  # position table: no compute
            "teacher LLM": count(teacher.model.model.language_model) + teacher.model.lm_head.weight.numel(),
            "student LLM": count(student_llm)}


def _student(cfg, teacher):
    """A fresh student (prior LLM + LoRA + projector) as a trial builds it, with its params counted."""
    from pldistill.models.audiolm import AudioLMHead
    from pldistill.models.loading import build_student, load_student_llm
    from pldistill.train.student_prior import ensure_student_llm

    tok, hp = teacher.tokenizer, cfg.hparams
    llm = load_student_llm(ensure_student_llm(cfg, tok, log=print), tok, seed=cfg.model.init_seed)
    params = _param_counts(teacher, llm)
    student = build_student(teacher, llm, lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha, seed=cfg.train.seeds[0])
    return AudioLMHead(student.base_model.model).train(), params


def step_times(cfg, data, teacher, cache, n_batches: int) -> dict[str, Any]:
    """Median wall of one step (forward, backward, AdamW) per mode: same student, same batches,
    online and cached alternating (which goes first alternates too). Also the first batch's loss
    in both modes, before any update."""
    from pldistill.losses import build_objective
    from pldistill.models.audiolm import AudioLMHead
    from pldistill.models.inputs import collate
    from pldistill.train.step import DistillModels, distill_step

    hp = cfg.hparams
    head, params = _student(cfg, teacher)
    objective = build_objective(hp.objective, hp.model_dump(), kl_chunk_size=cfg.train.kl_chunk_size)
    common = dict(student=head, vocab=len(teacher.tokenizer), objective=objective, weighting=hp.weighting,
                  sharpen_p=hp.sharpen_p)
    models = {"online": DistillModels(audio_tower=teacher.audio_tower, teacher=AudioLMHead(teacher.model), **common),
              "cached": DistillModels(audio_tower=None, teacher=None, cache=cache, **common)}
    trainable = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=hp.lr)
    batches = [collate(data.train[i * 8:(i + 1) * 8], teacher.tokenizer, data.labels) for i in range(n_batches + 1)]
    with torch.no_grad():
        first = {mode: float(distill_step(m, batches[0]).total) for mode, m in models.items()}
    times: dict[str, list[float]] = {"online": [], "cached": []}
    for i, batch in enumerate(batches):  # batch 0: warm-up, not counted
        for mode in (("online", "cached") if i % 2 else ("cached", "online")):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            distill_step(models[mode], batch).total.backward()
            torch.nn.utils.clip_grad_norm_(trainable, cfg.train.max_grad_norm or float("inf"))
            opt.step()
            if i:
                times[mode].append(time.perf_counter() - t0)
    return {"params": params, "first_loss": first, **{m: statistics.median(t) for m, t in times.items()}}


def run_sweep(base, out: Path, trials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every trial in both modes (alternating which goes first); walls, training-loop walls, metrics."""
    from pldistill.prepare import prepare_trial
    from pldistill.train.trial import run_trial

    walls = {"online": 0.0, "cached": 0.0}
    loops = {"online": 0.0, "cached": 0.0}  # the epochs' training loops (steps only, no evaluation)
    rows = []
    for i, hp in enumerate(trials):
        result = {}
        for mode in (("online", "cached") if i % 2 == 0 else ("cached", "online")):
            cfg = base.model_copy(deep=True)
            cfg.model.teacher_mode = mode
            cfg.output_dir = out / f"{mode}-{i}"
            cfg.hparams = cfg.hparams.model_copy(update=hp)
            t0 = time.perf_counter()
            result[mode] = run_trial(prepare_trial(cfg))
            walls[mode] += time.perf_counter() - t0
            loops[mode] += sum(row["wall_s"] for f in result[mode].folds for row in f.epochs)
        on, ca = result["online"].metrics, result["cached"].metrics
        rows.append([hp["weighting"], on["val_ua"], ca["val_ua"], on["test_ua"], ca["test_ua"],
                     f"{on['loss_total']:.5f}", f"{ca['loss_total']:.5f}",
                     f"{max(abs(on[k] - ca[k]) for k in on):.1e}"])
    return {"walls": walls, "loops": loops, "rows": rows,
            "max_diff": max(float(r[-1]) for r in rows)}


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=6, choices=range(1, len(TRIALS) + 1))
    ap.add_argument("--epochs", type=int, default=None, help="default: sweeps/smoke.yaml's (3)")
    ap.add_argument("--steps", type=int, default=6, help="timed batches of the step measurement")
    ap.add_argument("--teacher-epochs", type=int, default=4, help="teacher fine-tune epochs (not timed)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=DEFAULT_WIDTH, choices=sorted(SIZE_SETS),
                    help="the student LLM's width; sets every model's size (see above)")
    ap.add_argument("--test-once", action="store_true",
                    help="train.eval_test_each_epoch: false (both modes): test only the best epoch, at the end")
    ap.add_argument("--cache", type=Path, default=None, help="default: /tmp/pldistill-bench-cvo-<sizes>")
    ap.add_argument("--quick", action="store_true",
                    help="the library's default tiny models, 1 trial x 1 epoch of 2 steps (a smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.steps, args.teacher_epochs = 1, 1, 1, 1
    args.cache = args.cache or default_cache(args.quick, args.width)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    with bench_sizes(not args.quick, args.width):
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.teacher import ensure_teacher
    from pldistill.train.teacher_cache import TeacherCache, ensure_teacher_cache, teacher_cache_dir

    out = Path(tempfile.mkdtemp(prefix="bench-cvo-"))
    base = smoke_trial_config(args.cache, out, objective="pl_distill", **TRIALS[0])
    base.train.num_threads = args.threads
    base.train.epochs = args.epochs = args.epochs or base.train.epochs
    base.train.max_steps_per_epoch = 2 if args.quick else None
    base.train.eval_test_each_epoch = not args.test_once
    base.model.teacher_finetune.epochs = args.teacher_epochs
    data = prepare_fold(base, base.data.folds[0])
    teacher, teacher_metrics = ensure_teacher(base, data, log=print)
    t0 = time.perf_counter()
    ensure_teacher(base, data, log=print)  # what every trial does first, in both modes: load it from disk
    load_s = time.perf_counter() - t0
    shutil.rmtree(teacher_cache_dir(base, data), ignore_errors=True)  # time a real build
    t0 = time.perf_counter()
    path = ensure_teacher_cache(base, data, teacher, log=lambda m: None, batch_size=base.train.eval_batch_size)
    build_s = time.perf_counter() - t0
    steps = step_times(base, data, teacher, TeacherCache(path), args.steps)
    sweep = run_sweep(base, out, TRIALS[:args.trials])
    shutil.rmtree(out, ignore_errors=True)
    n_clips = len(data.train) + len(data.val) + len(data.test)
    report = {**sweep, "steps": steps, "build_s": build_s, "load_s": load_s, "teacher": teacher_metrics,
              "clips": n_clips,
              "ratio": (sweep["walls"]["cached"] + build_s) / sweep["walls"]["online"],
              "step_ratio": steps["cached"] / steps["online"]}
    _print(args, report)
    return report


def _print(args: argparse.Namespace, r: dict[str, Any]) -> None:
    p, s, walls, loops = r["steps"]["params"], r["steps"], r["walls"], r["loops"]
    student = p["student LLM"]
    print("\nparameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in p.items())
          + f"  (ratio {p['encoder'] / student:.2f} : {p['teacher LLM'] / student:.1f} : 1)")
    print(f"teacher (fine-tuned {args.teacher_epochs} epochs, shared by both modes): "
          f"val UA {r['teacher']['val_ua']:.3f}, test UA {r['teacher']['test_ua']:.3f}")
    print(f"{args.threads} thread(s); {args.trials} trials x {args.epochs} epochs; test set scored "
          + ("once, best epoch" if args.test_once else "every epoch") + "\n")
    print(f"one step (median of {args.steps}, same batches):  online {s['online'] * 1e3:6.0f} ms   "
          f"cached {s['cached'] * 1e3:6.0f} ms   ratio {r['step_ratio']:.3f}")
    fl = s["first_loss"]
    print(f"  first batch loss, same weights:           online {fl['online']:.6f}  cached {fl['cached']:.6f}"
          f"  |diff| {abs(fl['online'] - fl['cached']):.1e}")
    print(f"cache build ({r['clips']} clips, in process):     {r['build_s']:6.1f} s")
    print(f"teacher load from disk (every trial, both modes): {r['load_s']:.1f} s\n")
    fmt = [[row[0], *(f"{v:.3f}" if isinstance(v, float) else v for v in row[1:])] for row in r["rows"]]
    print(table(["trial (weighting)", "val UA online", "cached", "test UA online", "cached",
                 "loss online", "cached", "max |diff|"], fmt))
    other = {m: walls[m] - loops[m] for m in walls}
    print("\n" + table(["sweep wall (s)", "online", "cached", "cached / online"], [
        ["training loops", loops["online"], loops["cached"], f"{loops['cached'] / loops['online']:.3f}"],
        ["setup + evaluation", other["online"], other["cached"], f"{other['cached'] / other['online']:.3f}"],
        ["trials", walls["online"], walls["cached"], f"{walls['cached'] / walls['online']:.3f}"],
        ["cache build", 0.0, r["build_s"], ""],
        ["total", walls["online"], walls["cached"] + r["build_s"], f"{r['ratio']:.3f}"],
    ]))


if __name__ == "__main__":
    main()
