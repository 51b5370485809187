"""Several cached trials on one GPU: aggregate samples/s per GPU and memory per trial, 1 to 8 trials.

A ``teacher_mode: cached`` trial holds the student (Qwen2-0.5B + projector + LoRA), the encoder it
does not run, and the teacher's ``lm_head`` (recomputed at the KL positions); not the teacher LLM.
At batch 1 its step is launch-bound (``bench/RESULTS.md``, H200 table), so k trials in k processes
on one GPU may get more than one trial's samples/s out of it. This bench measures that:

1. a ``prepare`` child builds the real-size teacher and student (``bench/gpu_step.py``'s shapes,
   random bf16 weights) once, computes the teacher-cache rows of one batch (``teacher_rows``, as a
   sweep's cache build does) and writes them, with the teacher's ``lm_head`` rows, to a work folder;
2. for each k in ``--trials``, k ``trial`` children start together on the same device. Each builds
   the student with the teacher's LLM left on ``meta`` (as a cached trial loads it), reads the cache,
   takes ``--warmup`` cached steps (PL-Distill, ``attention_last``, backward, clip, AdamW), reports
   ready and waits; when all are ready the parent says go and each runs steps for ``--seconds``;
3. one table: per-trial samples/s, their sum (the GPU's aggregate) and its ratio to one trial alone,
   the peak memory each trial allocated and reserved (``torch.cuda.max_memory_*``; the CUDA context,
   ~0.5 GiB a process, is not in them), the device's used memory seen by the trials while all ran
   (``torch.cuda.mem_get_info``), and the peak RSS of each trial process.

Each k has its own ``--timeout`` (start-up included); children that exceed it are killed and the row
says so. Processes share the GPU by time-slicing (no MPS is started here; with an MPS daemon running,
kernels of different trials may overlap, and the figures would differ).

    python bench/gpu_pack.py                                # real sizes, k = 1, 2, 4, 8 on cuda
    python bench/gpu_pack.py --trials 1,4 --batch 8 --seconds 60
    .venv/bin/python bench/gpu_pack.py --dry-run            # tiny models on CPU: checks the wiring only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_step  # noqa: E402
from _util import quiet, table  # noqa: E402

__all__ = ["parse_trials", "summarize", "run_pack", "main"]

_GIB = 2**30
#: Building the 8.4B teacher with random weights and one batch of cache rows; not part of any row.
PREPARE_TIMEOUT_S = 600.0


def parse_trials(text: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]`` (positive, without repeats)."""
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--trials: expected comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1 or len(set(ks)) != len(ks):
        raise argparse.ArgumentTypeError(f"--trials: expected distinct positive integers, got {text!r}")
    return ks


def _device(args: argparse.Namespace):
    import torch

    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _peak_rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / _GIB
    return float("nan")


# --- children --------------------------------------------------------------------------------------

def _prepare(args: argparse.Namespace, work: Path) -> None:
    """The full teacher, once: the batch's cache rows and the teacher's lm_head rows, to ``work``."""
    import pyarrow.feather as feather
    import torch
    from safetensors.torch import save_file

    from pldistill.train.teacher_cache import teacher_dims, teacher_rows

    device = _device(args)
    sizes = gpu_step.scaled_sizes(args.scale)
    torch.manual_seed(0)
    teacher, _ = gpu_step.build_models(sizes, device, torch.bfloat16, lora_rank=args.lora_rank,
                                       window_s=args.window_s)
    vocab = min(sizes.teacher["vocab_size"], sizes.student["vocab_size"])
    examples = gpu_step.make_examples(args.batch, args.clip_s, args.window_s)
    feather.write_feather(teacher_rows(teacher, examples, gpu_step.LABELS), str(work / "rows.arrow"))
    save_file({"weight": teacher.model.lm_head.weight[:vocab].detach().contiguous().cpu()},
              str(work / "lm_head.safetensors"))
    (work / "dims.json").write_text(json.dumps({"dims": teacher_dims(teacher), "vocab": vocab}))


def _trial(args: argparse.Namespace, work: Path) -> None:
    """One cached trial: build, warm up, say ready, wait for go, run steps for ``args.seconds``."""
    import pyarrow.feather as feather
    import torch
    from safetensors.torch import load_file

    from pldistill.config import Hyperparameters
    from pldistill.losses import build_objective
    from pldistill.models.audiolm import AudioLMHead
    from pldistill.train.step import DistillModels, distill_step
    from pldistill.train.teacher_cache import TeacherCache

    device = _device(args)
    torch.set_num_threads(1)  # k trials share the machine's cores too
    meta = json.loads((work / "dims.json").read_text())
    torch.manual_seed(0)
    teacher, student = gpu_step.build_models(gpu_step.scaled_sizes(args.scale), device, torch.bfloat16,
                                             lora_rank=args.lora_rank, window_s=args.window_s, teacher_llm=False)
    cache = TeacherCache.from_table(feather.read_table(str(work / "rows.arrow")), meta["dims"])
    cache.lm_head_weight = load_file(str(work / "lm_head.safetensors"))["weight"].to(device)
    head = AudioLMHead(student.base_model.model).train()
    models = DistillModels(audio_tower=None, teacher=None, student=head, vocab=meta["vocab"], cache=cache,
                           objective=build_objective("pl_distill", Hyperparameters().model_dump(),
                                                     kl_chunk_size=args.kl_chunk), weighting="attention_last")
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    inputs = gpu_step.make_batch(teacher.tokenizer, args.batch, args.clip_s, args.window_s, device, torch.bfloat16)

    def step() -> float:
        gpu_step._sync(device)
        t = time.perf_counter()
        distill_step(models, inputs).total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        gpu_step._sync(device)
        return time.perf_counter() - t

    for _ in range(args.warmup):
        step()
    Path(args.ready).write_text("ready")
    while not Path(args.go).exists():
        time.sleep(0.02)
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds or not times:
        times.append(step())
    elapsed = time.perf_counter() - start
    cuda = device.type == "cuda"
    free, total = torch.cuda.mem_get_info(device) if cuda else (0, 0)  # while the others still run
    Path(args.out).write_text(json.dumps({
        "steps": len(times), "elapsed_s": elapsed, "samples_per_s": len(times) * args.batch / elapsed,
        "step_s_median": statistics.median(times),
        "peak_alloc_gib": torch.cuda.max_memory_allocated(device) / _GIB if cuda else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / _GIB if cuda else None,
        "device_used_gib": (total - free) / _GIB if cuda else None, "peak_rss_gib": _peak_rss_gib()}))


# --- parent ----------------------------------------------------------------------------------------

def _child_argv(args: argparse.Namespace, role: str, work: Path, **extra: Any) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--role", role, "--work", str(work),
            "--scale", repr(args.scale), "--batch", str(args.batch), "--clip-s", repr(args.clip_s),
            "--window-s", repr(args.window_s), "--lora-rank", str(args.lora_rank), "--kl-chunk", str(args.kl_chunk),
            "--warmup", str(args.warmup), "--seconds", repr(args.seconds)]
    if args.device:
        argv += ["--device", args.device]
    for k, v in extra.items():
        argv += [f"--{k}", str(v)]
    return argv


def _run_k(args: argparse.Namespace, work: Path, k: int) -> dict[str, Any]:
    """k trial children at once; their reports, or the reason there are none."""
    go = work / f"go_{k}"
    procs, outs, readies = [], [], []
    logs = []
    deadline = time.monotonic() + args.timeout
    for i in range(k):
        out, ready = work / f"out_{k}_{i}.json", work / f"ready_{k}_{i}"
        log = open(work / f"log_{k}_{i}.txt", "w")  # noqa: SIM115 (closed below, after the child ends)
        logs.append(log)
        procs.append(subprocess.Popen(_child_argv(args, "trial", work, out=out, ready=ready, go=go),
                                      stdout=log, stderr=subprocess.STDOUT))
        outs.append(out)
        readies.append(ready)
    status = "ok"
    try:
        while not all(r.exists() for r in readies):
            if any(p.poll() not in (None, 0) for p in procs):
                status = "a trial failed before its steps"
                break
            if time.monotonic() > deadline:
                status = f"timeout ({args.timeout:g} s) before all were ready"
                break
            time.sleep(0.05)
        if status == "ok":
            go.write_text("go")
            for p in procs:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        status = f"timeout ({args.timeout:g} s) while stepping"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # only the children this call started
                p.wait()
        for log in logs:
            log.close()
    if status == "ok" and any(p.returncode != 0 for p in procs):
        status = "a trial failed"
    reports = [json.loads(o.read_text()) for o in outs if o.exists()] if status == "ok" else []
    if status != "ok":
        tail = (work / f"log_{k}_0.txt").read_text()[-2000:]
        print(f"k={k}: {status}; first trial's log ends with:\n{tail}", file=sys.stderr)
    return {"k": k, "status": status, "reports": reports}


def summarize(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Table rows: one per k, from the children's reports (aggregate = sum of the trials' samples/s)."""
    base = next((sum(r["samples_per_s"] for r in row["reports"]) for row in rows
                 if row["k"] == 1 and row["status"] == "ok"), None)

    def rng(xs: list[float | None], fmt: str) -> str:
        vals = [x for x in xs if x is not None]
        return "-" if not vals else (fmt.format(min(vals)) if min(vals) == max(vals) else
                                     f"{fmt.format(min(vals))}-{fmt.format(max(vals))}")

    out = []
    for row in rows:
        reps = row["reports"]
        if row["status"] != "ok":
            out.append([str(row["k"]), *["-"] * 8, row["status"]])
            continue
        agg = sum(r["samples_per_s"] for r in reps)
        out.append([str(row["k"]), rng([r["samples_per_s"] for r in reps], "{:.2f}"),
                    rng([r["step_s_median"] for r in reps], "{:.3f}"), f"{agg:.2f}",
                    f"{agg / base:.2f}" if base else "-", rng([r["peak_alloc_gib"] for r in reps], "{:.1f}"),
                    rng([r["peak_reserved_gib"] for r in reps], "{:.1f}"),
                    rng([r["device_used_gib"] for r in reps], "{:.1f}"), rng([r["peak_rss_gib"] for r in reps], "{:.1f}"),
                    f"ok, {sum(r['steps'] for r in reps)} steps"])
    return out


HEADER = ["trials", "per-trial samples/s", "step s (median)", "aggregate samples/s", "x 1 trial", "alloc GiB/trial",
          "reserved GiB/trial", "device used GiB", "RSS GiB/trial", "status"]


def run_pack(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Prepare once, then every k of ``args.trials``; the per-k results (also printed as one table)."""
    with tempfile.TemporaryDirectory(prefix="pldistill-gpu-pack-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        prep = subprocess.run(_child_argv(args, "prepare", work), capture_output=True, text=True,
                              timeout=PREPARE_TIMEOUT_S)
        if prep.returncode != 0:
            raise SystemExit(f"prepare failed:\n{prep.stdout[-2000:]}{prep.stderr[-3000:]}")
        print(f"prepare (teacher build + cache rows of one batch): {time.perf_counter() - t0:.0f} s")
        rows = [_run_k(args, work, k) for k in args.trials]
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=parse_trials, default=[1, 2, 4, 8], help="comma-separated trial counts")
    p.add_argument("--scale", type=float, default=1.0, help="bench/gpu_step.py's shrink factor")
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--batch", type=int, default=1, help="clips per step of each trial")
    p.add_argument("--clip-s", type=float, default=4.55)
    p.add_argument("--window-s", type=float, default=5.0)
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--kl-chunk", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3, help="steps before the timed window")
    p.add_argument("--seconds", type=float, default=30.0, help="timed window of every trial")
    p.add_argument("--timeout", type=float, default=240.0, help="seconds allowed for each k, start-up included")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny models on CPU, k = 1 and 2, 1 s windows: checks the wiring, measures nothing")
    p.add_argument("--role", choices=("parent", "prepare", "trial"), default="parent", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    for name in ("out", "ready", "go"):
        p.add_argument(f"--{name}", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = _parser().parse_args(argv)
    if args.role != "parent":
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        quiet()
        (_prepare if args.role == "prepare" else _trial)(args, args.work)
        return []
    if args.dry_run:
        args.scale, args.device, args.seconds, args.warmup = 1 / 32, "cpu", 1.0, 1
        if args.trials == [1, 2, 4, 8]:
            args.trials = [1, 2]
    print(f"cached trials sharing one {'device ' + args.device if args.device else 'GPU'}: scale {args.scale:g}, "
          f"batch {args.batch}, {args.clip_s:g} s clips in a {args.window_s:g} s window, bf16, {args.warmup} warm-up "
          f"steps, {args.seconds:g} s timed window, timeout {args.timeout:g} s per row")
    rows = run_pack(args)
    print(table(HEADER, summarize(rows)))
    return rows


if __name__ == "__main__":
    main()
