"""Peak memory and time of ``kl_divergence`` forward + backward, naive vs chunked, at real sizes;
then of the whole logit loss (student ``lm_head`` + CE + KL terms), naive vs fused.

Sizes default to the student's vocabulary (151,936) and 800 compared positions at batch size 1,
with fp32 and bf16 logits. The whole-loss section starts from the student's final hidden states
(hidden size 896) and its frozen ``lm_head`` weight (LoRA leaves it frozen) with the teacher's
logits, and computes the ``ldist`` terms (CE + 0.8 KL over 700 audio positions + KL over 100
response positions, t=2): "naive" materialises the student logits and runs the objective
(KL unchunked), "today" the same with ``kl_chunk_size``, "fused" the objective on the student's
hidden states and ``lm_head`` instead of its logits (the path ``distill_step`` takes: every logit
term through ``fused_distill_terms``), which never holds more than one chunk of student logits or
of their gradient (with the frozen head it computes the hidden-state gradients in the forward
pass; "fused-rc" calls ``fused_distill_terms`` with the logits recomputed in the backward pass
instead, as it is for a head that needs a gradient). Every measurement runs in its own freshly spawned process so that
peaks cannot mix: the child creates the inputs (row by row, so creating them leaves no
temporary peak), records its resident set size (VmRSS), resets the high-water mark
(``/proc/self/clear_refs``), runs the loss forward and backward once and reads VmHWM. The figure
reported is ``VmHWM - VmRSS`` at the start, i.e. what the loss added on top of its inputs, which
includes the unavoidable gradient of the student logits. Linux only (it reads ``/proc``).

    .venv/bin/python bench/kl_memory.py                       # both tables, about 8-12 minutes
    .venv/bin/python bench/kl_memory.py --vocab 32000 --positions 200 --chunks 32
    .venv/bin/python bench/kl_memory.py --sections whole     # only the whole-loss table
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import status_kib  # noqa: E402  (bench/_util.py, next to this file)

DTYPES = ("float32", "bfloat16")


@dataclass
class Measurement:
    dtype: str
    chunk: int | None
    peak_mib: float
    seconds: float
    value: float
    grad_sum: float



def _measure(
    dtype_name: str, chunk: int | None, vocab: int, positions: int, threads: int, queue: mp.Queue
) -> None:
    import torch

    from pldistill.losses import kl_divergence

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    teacher = torch.empty(1, positions, vocab, dtype=dtype)
    student = torch.empty(1, positions, vocab, dtype=dtype)
    for i in range(0, positions, 64):  # in blocks: no full-size fp32 temporary, same values for both dtypes
        t = 3.0 * torch.randn(min(64, positions - i), vocab)
        teacher[0, i : i + 64] = t
        student[0, i : i + 64] = t + 2.0 * torch.randn_like(t)
    student.requires_grad_(True)
    mask = torch.ones(1, positions, dtype=torch.bool)

    baseline = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    loss = kl_divergence(teacher, student, mask, temperature=2.0, chunk_size=chunk)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    assert student.grad is not None
    grad_sum = float(student.grad[0, ::8].double().abs().sum())  # a sample of rows: cheap to compare
    queue.put(
        Measurement(dtype_name, chunk, (peak - baseline) / 1024, seconds, float(loss.detach()), grad_sum)
    )


def _measure_whole(mode: str, chunk: int | None, vocab: int, positions: int, hidden_size: int, response: int,
                   threads: int, queue: mp.Queue) -> None:
    """Like :func:`_measure`, for the whole logit loss; ``mode`` is naive, today, fused or fused-rc."""
    import torch
    import torch.nn.functional as F

    from pldistill.config import Hyperparameters
    from pldistill.losses import DistillBatch, build_objective
    from pldistill.losses.fused import fused_distill_terms

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    weight = torch.randn(vocab, hidden_size).mul_(0.05)  # frozen lm_head: no gradient, as under LoRA
    hidden = torch.randn(1, positions, hidden_size).requires_grad_(True)
    teacher = torch.empty(1, positions, vocab)
    for i in range(0, positions, 64):  # teacher = student logits + noise, block by block (no big temporary)
        with torch.no_grad():
            z = F.linear(hidden[0, i : i + 64], weight)
        teacher[0, i : i + 64] = z + 2.0 * torch.randn_like(z)
    del z
    response_mask = torch.zeros(1, positions, dtype=torch.bool)
    response_mask[0, positions - response :] = True
    audio_mask = ~response_mask
    labels = torch.randint(0, vocab, (1, positions))
    objective = build_objective("ldist", Hyperparameters(objective="ldist").model_dump(),
                                kl_chunk_size=chunk if mode != "naive" else None)

    baseline = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    if mode == "fused-rc":
        terms = fused_distill_terms(hidden, weight, labels, response_mask, audio_mask,
                                    terms=tuple(objective.weights), teacher_logits=teacher, temperature=2.0,
                                    chunk_size=chunk, grad_in_forward=False, reduction=objective.reductions)
        loss = sum(w * terms[t] for t, w in objective.weights.items())
    else:
        fused = mode == "fused"  # the objective's fused path: hidden states and lm_head for the logits
        batch = DistillBatch(student_logits=None if fused else F.linear(hidden, weight), labels=labels,
                             response_mask=response_mask, audio_mask=audio_mask, teacher_logits=teacher,
                             student_hidden=hidden if fused else None, student_lm_head=weight if fused else None)
        loss = objective(batch).total
    loss.backward()
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    assert hidden.grad is not None
    grad_sum = float(hidden.grad.double().abs().sum())
    queue.put(Measurement(mode, chunk, (peak - baseline) / 1024, seconds, float(loss.detach()), grad_sum))


def _run_in_fresh_process(*args: object, target=_measure) -> Measurement:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"measurement {args} failed with exit code {proc.exitcode}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--positions", type=int, default=800)
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sections", nargs="+", choices=("kl", "whole"), default=["kl", "whole"])
    parser.add_argument("--hidden", type=int, default=896, help="student hidden size (whole-loss section)")
    parser.add_argument("--response", type=int, default=100, help="response positions of --positions")
    parser.add_argument("--fused-chunks", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--recompute-chunks", type=int, nargs="*", default=[128],
                        help="fused chunks measured again with grad_in_forward=False")
    args = parser.parse_args()
    if "kl" in args.sections:
        _kl_table(args)
    if "whole" in args.sections:
        _whole_table(args)


def _whole_table(args: argparse.Namespace) -> None:
    print(f"\nwhole logit loss (ldist: CE + KL audio + KL response) forward+backward, batch 1, {args.positions} "
          f"positions ({args.positions - args.response} audio + {args.response} response), vocab {args.vocab}, "
          f"student hidden {args.hidden}, frozen fp32 lm_head, fp32 teacher logits, t=2, {args.threads} threads")
    print(f"{'path':<8} {'chunk':>6} {'peak MiB':>9} {'x naive':>8} {'time s':>7} {'value':>12}  agrees")
    # The fused path allocates many chunk-sized buffers, the forward on the main thread and the backward
    # on autograd's worker thread; glibc keeps freed heap blocks below its (growing) mmap threshold in
    # per-thread arenas, so RSS would count dead buffers twice. With the threshold fixed at 64 KiB every
    # large buffer is mmapped and returned when freed: VmHWM is then the peak of live memory, for every
    # path alike (set before the children start: glibc reads it at start-up).
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    common = (args.vocab, args.positions, args.hidden, args.response, args.threads)
    naive = _run_in_fresh_process("naive", None, *common, target=_measure_whole)
    print(f"{'naive':<8} {'none':>6} {naive.peak_mib:9.0f} {1.0:8.2f} {naive.seconds:7.2f} {naive.value:12.6f}  -")
    runs = [("today", c) for c in args.chunks] + [("fused", c) for c in args.fused_chunks] \
        + [("fused-rc", c) for c in args.recompute_chunks]
    at_default = None
    for mode, chunk in runs:
        m = _run_in_fresh_process(mode, chunk, *common, target=_measure_whole)
        ratio = m.peak_mib / naive.peak_mib
        if mode == "fused" and chunk == 128:
            at_default = ratio
        agrees = abs(m.value - naive.value) <= 1e-5 * abs(naive.value) and abs(
            m.grad_sum - naive.grad_sum) <= 1e-4 * abs(naive.grad_sum)
        print(f"{mode:<8} {chunk:>6} {m.peak_mib:9.0f} {ratio:8.2f} {m.seconds:7.2f} {m.value:12.6f}  "
              f"{'yes' if agrees else 'NO'} (value and gradient)")
    if at_default is not None:
        print(f"fused/naive peak ratio at chunk 128 (the step's default, FUSED_CHUNK): {at_default:.3f} "
              f"(target <= 0.1)")


def _kl_table(args: argparse.Namespace) -> None:
    input_mib = 2 * args.positions * args.vocab * 4 / 2**20
    print(
        f"kl_divergence forward+backward, batch 1, {args.positions} positions, vocab {args.vocab}, "
        f"t=2, {args.threads} threads; fp32 inputs are {input_mib:.0f} MiB (teacher + student)"
    )
    print(f"{'input':<9} {'chunk':>6} {'peak MiB':>9} {'x naive':>8} {'time s':>7} {'value':>12}  agrees")
    worst = 0.0
    for dtype in args.dtypes:
        naive = _run_in_fresh_process(dtype, None, args.vocab, args.positions, args.threads)
        print(
            f"{dtype:<9} {'none':>6} {naive.peak_mib:9.0f} {1.0:8.2f} {naive.seconds:7.2f} {naive.value:12.6f}  -"
        )
        for chunk in args.chunks:
            m = _run_in_fresh_process(dtype, chunk, args.vocab, args.positions, args.threads)
            ratio = m.peak_mib / naive.peak_mib
            worst = max(worst, ratio)
            agrees = abs(m.value - naive.value) <= 1e-5 * abs(naive.value) and abs(
                m.grad_sum - naive.grad_sum
            ) <= 1e-4 * abs(naive.grad_sum)
            print(
                f"{dtype:<9} {chunk:>6} {m.peak_mib:9.0f} {ratio:8.2f} {m.seconds:7.2f} {m.value:12.6f}  "
                f"{'yes' if agrees else 'NO'} (value and gradient)"
            )
    print(f"worst chunked/naive peak ratio: {worst:.2f} (target <= 0.35)")


if __name__ == "__main__":
    main()
