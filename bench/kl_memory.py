"""Peak memory and time of ``kl_divergence`` forward + backward, naive vs chunked, at real sizes.

Sizes default to the student's vocabulary (151,936) and 800 compared positions at batch size 1,
with fp32 and bf16 logits. Every measurement runs in its own freshly spawned process so that
peaks cannot mix: the child creates the inputs (row by row, so creating them leaves no
temporary peak), records its resident set size (VmRSS), resets the high-water mark
(``/proc/self/clear_refs``), runs the loss forward and backward once and reads VmHWM. The figure
reported is ``VmHWM - VmRSS`` at the start, i.e. what the loss added on top of its inputs, which
includes the unavoidable gradient of the student logits. Linux only (it reads ``/proc``).

    .venv/bin/python bench/kl_memory.py                       # the table below, about 1-2 minutes
    .venv/bin/python bench/kl_memory.py --vocab 32000 --positions 200 --chunks 32
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from dataclasses import dataclass

DTYPES = ("float32", "bfloat16")


@dataclass
class Measurement:
    dtype: str
    chunk: int | None
    peak_mib: float
    seconds: float
    value: float
    grad_sum: float


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


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

    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    loss = kl_divergence(teacher, student, mask, temperature=2.0, chunk_size=chunk)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    assert student.grad is not None
    grad_sum = float(student.grad[0, ::8].double().abs().sum())  # a sample of rows: cheap to compare
    queue.put(
        Measurement(dtype_name, chunk, (peak - baseline) / 1024, seconds, float(loss.detach()), grad_sum)
    )


def _run_in_fresh_process(*args: object) -> Measurement:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(*args, queue))
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
    args = parser.parse_args()

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
