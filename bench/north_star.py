"""The north star, projected: wall time of the paper's Table 1 and Table 2 grids on one 8-GPU node.

Nothing runs on a GPU here. The projection multiplies the real EmoBox clip counts (every fold of
IEMOCAP, RAVDESS and SAVEE, read from the manifests, with the validation set carved from train
exactly as pldistill does it: ``pldistill.data.emobox.load_fold`` with ``val_fraction`` 0.15) by the
per-step figures measured on an H200 with ``bench/gpu_step.py`` (``MEASURED_H200`` below), for
5 epochs and 3 seeds per (method, dataset, fold), and schedules the work on ``--gpus`` GPUs:

1. per fold, the teacher cache is built once (one teacher forward per training clip, the encoder on
   the validation and test clips; counted at the teacher's rate, an upper bound) and, for Table 1's
   "Qwen2-Audio" row, the teacher scores the test set once; each such job takes one GPU;
2. then the trials, ``--trials-per-gpu`` to a GPU: each trial trains every epoch on the fold's
   training clips, scores validation and test after every epoch (``eval_test_each_epoch``, the
   default) and pays a fixed start-up (process, imports, loading the student and the cache).

Jobs of a phase go to the least-loaded slot, longest first (LPT); the phases run one after the
other (no overlap: a bound on the wall time, not a tight one). Every assumption is printed with the
result and each can be changed by a flag, so a new GPU measurement can be plugged in.

Why the measured figures are constants and not parsed from ``bench/RESULTS.md``: that file is prose
for people, with ranges ("0.142-0.338 s") whose layout changes as results are added; a parser would
break silently, or read the wrong row. The constants name the section they come from, and the
``--*-sps`` flags override them.

    PYTHONPATH=$PWD .venv/bin/python bench/north_star.py
    PYTHONPATH=$PWD .venv/bin/python bench/north_star.py --batch 32 --trials-per-gpu 4
    PYTHONPATH=$PWD .venv/bin/python bench/north_star.py --train-sps 20 --eval-sps 200
"""

from __future__ import annotations

import argparse
import heapq
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import REPO, table  # noqa: E402

__all__ = ["StepFigures", "MEASURED_H200", "FoldCounts", "Rates", "Grid", "TABLE1", "TABLE2", "BOTH",
           "fold_counts", "dataset_folds", "trial_seconds", "lpt_makespan", "Projection", "project", "main"]

DATASETS = ("iemocap", "ravdess", "savee")
DEFAULT_MANIFESTS = REPO.parent / "shared" / "emobox"


@dataclass(frozen=True)
class StepFigures:
    """One row of the H200 table: batch, window, and (fastest, slowest) median step seconds."""

    batch: int
    window_s: float
    online_step_s: tuple[float, float]
    cached_step_s: tuple[float, float]
    peak_gib: float  # the whole bench process (online: teacher, student and encoder on the GPU)


#: bench/RESULTS.md, section "One PL-Distill step at real model shapes: `bench/gpu_step.py`",
#: subsection "On an NVIDIA H200 (session 3)": PL-Distill step (attention_last, KL chunk 128) +
#: backward + clip + AdamW, 4.55 s clips; ranges over 2-4 runs on three fresh machines.
MEASURED_H200: tuple[StepFigures, ...] = (
    StepFigures(1, 5.0, (0.142, 0.338), (0.137, 0.272), 17.7),
    StepFigures(8, 5.0, (0.188, 0.274), (0.222, 0.236), 21.8),
    StepFigures(8, 30.0, (0.307, 0.307), (0.211, 0.211), 21.8),
    StepFigures(32, 30.0, (0.691, 0.691), (0.335, 0.335), 35.9),
)


@dataclass(frozen=True)
class FoldCounts:
    dataset: str
    fold: int
    train: int  # after the validation carve-out
    val: int
    test: int
    window_s: float  # the encoder window pldistill picks for the fold (covers its longest clip, <= 30 s)


def fold_counts(manifests: Path, dataset: str, fold: int, *, val_fraction: float = 0.15,
                val_seed: int = 0) -> FoldCounts:
    """Clip counts of one fold as a trial sees them (``pldistill.train.dataset.prepare_fold``'s split)."""
    from pldistill.data.emobox import load_fold
    from pldistill.data.features import choose_window

    split = load_fold(manifests, dataset, fold, val_fraction=val_fraction, val_seed=val_seed)
    window = choose_window([c.length for c in split.train + split.val + split.test])
    return FoldCounts(dataset, fold, len(split.train), len(split.val), len(split.test), window)


def dataset_folds(manifests: Path, dataset: str, **kw: float) -> list[FoldCounts]:
    """Every fold of ``dataset`` (the fold count is the benchmark's)."""
    from pldistill.data.emobox import resolve_dataset

    spec, _ = resolve_dataset(manifests, dataset)
    return [fold_counts(manifests, dataset, k, **kw) for k in range(1, spec.num_folds + 1)]


@dataclass(frozen=True)
class Rates:
    """Throughput of one trial (samples/s at its batch) and of one GPU building a cache (clips/s)."""

    train_sps: float  # training, per trial, distillation methods
    eval_sps: float  # closed-set scoring, per trial
    cache_cps: float  # teacher forwards (cache build, teacher zero-shot scoring), one job per GPU
    overhead_s: float  # per trial: process start, imports, loading the student and the cache
    sft_sps: float | None = None  # SFT trains without a teacher; None: as train_sps


@dataclass(frozen=True)
class Grid:
    name: str
    methods: tuple[str, ...]  # trained student variants
    teacher_eval: bool  # the teacher's own zero-shot row (Table 1)
    datasets: tuple[str, ...] = DATASETS


#: The paper's Table 1 student rows (sweeps/baselines_grid.yaml) and Table 2's ablation rows
#: (sweeps/ablation_weighting_grid.yaml; "LDist + PDist (AwCKA)" is Table 1's PL-Distill row).
TABLE1 = Grid("Table 1", ("sft", "forward_kl", "reverse_kl", "llava_kd", "pl_distill"), True)
TABLE2 = Grid("Table 2", ("ldist", "ldist_pdist_cka", "pl_distill"), False)
BOTH = Grid("Tables 1 + 2", ("sft", "forward_kl", "reverse_kl", "llava_kd", "pl_distill", "ldist",
                             "ldist_pdist_cka"), True)


def trial_seconds(f: FoldCounts, epochs: int, sps: float, rates: Rates, *, test_each_epoch: bool = True
                  ) -> dict[str, float]:
    """One trial on one fold: ``{"train", "eval", "overhead"}`` seconds at ``sps`` training samples/s."""
    evaluated = epochs * (f.val + f.test) if test_each_epoch else epochs * f.val + f.test
    return {"train": epochs * f.train / sps, "eval": evaluated / rates.eval_sps, "overhead": rates.overhead_s}


def lpt_makespan(durations: Iterable[float], slots: int) -> float:
    """Wall time of independent jobs on ``slots`` identical slots, longest first to the least loaded."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    loads = [0.0] * slots
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


@dataclass
class Projection:
    trials: int
    wall_s: float
    prepare_wall_s: float  # cache builds and teacher scoring
    trials_wall_s: float
    gpu_s: dict[str, float] = field(default_factory=dict)  # per part, summed over jobs (GPU-seconds)

    @property
    def dominant(self) -> tuple[str, float]:
        total = sum(self.gpu_s.values())
        part = max(self.gpu_s, key=lambda k: self.gpu_s[k])
        return part, self.gpu_s[part] / total


def project(grid: Grid, folds: dict[str, Sequence[FoldCounts]], rates: Rates, *, cached: bool, epochs: int = 5,
            seeds: int = 3, gpus: int = 8, trials_per_gpu: int = 1, test_each_epoch: bool = True) -> Projection:
    """Wall time of ``grid`` over every fold of its datasets, ``seeds`` seeds each."""
    prepare: list[float] = []
    gpu_s = {"train": 0.0, "eval": 0.0, "overhead": 0.0, "cache build": 0.0, "teacher scoring": 0.0}
    for d in grid.datasets:
        for f in folds[d]:
            if cached:  # each job holds a whole GPU
                prepare.append((f.train + f.val + f.test) / rates.cache_cps)
                gpu_s["cache build"] += prepare[-1]
            if grid.teacher_eval:
                prepare.append(f.test / rates.cache_cps)
                gpu_s["teacher scoring"] += prepare[-1]
    jobs: list[float] = []
    for d in grid.datasets:
        for f in folds[d]:
            for m in grid.methods:
                sps = rates.sft_sps if m == "sft" and rates.sft_sps else rates.train_sps
                parts = trial_seconds(f, epochs, sps, rates, test_each_epoch=test_each_epoch)
                for k, v in parts.items():
                    gpu_s[k] += seeds * v / trials_per_gpu  # a slot is 1/k of a GPU
                jobs += [sum(parts.values())] * seeds
    prepare_wall = lpt_makespan(prepare, gpus) if prepare else 0.0
    trials_wall = lpt_makespan(jobs, gpus * trials_per_gpu)
    return Projection(len(jobs), prepare_wall + trials_wall, prepare_wall, trials_wall, gpu_s)


def _measured(batch: int, window: float | None = None) -> StepFigures:
    rows = [r for r in MEASURED_H200 if r.batch == batch]
    if not rows:
        raise SystemExit(f"no H200 measurement at batch {batch}: measured {sorted({r.batch for r in MEASURED_H200})};"
                         " give --train-sps / --online-sps")
    return min(rows, key=lambda r: abs(r.window_s - (window if window is not None else r.window_s)))


def _rates(args: argparse.Namespace, end: int, cached: bool) -> Rates:
    """Rates at the fast (``end`` 0) or slow (1) end of the measured ranges; flags take precedence
    (with ``--train-sps`` and ``--online-sps`` any batch works). A cached step does not depend on the
    window (no encoder runs), so every measured row at the batch counts."""
    cached_sps, online_sps = args.train_sps, args.online_sps
    if cached_sps is None:
        rows = [r for r in MEASURED_H200 if r.batch == args.batch] or [_measured(args.batch)]
        step = min(r.cached_step_s[0] for r in rows) if end == 0 else max(r.cached_step_s[1] for r in rows)
        cached_sps = args.batch / step
    if online_sps is None:
        online_sps = args.batch / _measured(args.batch, args.online_window).online_step_s[end]
    e = args.pack_efficiency
    return Rates(train_sps=(cached_sps if cached else online_sps) * e, eval_sps=args.eval_sps * e,
                 cache_cps=args.cache_cps, overhead_s=args.overhead_s, sft_sps=(args.sft_sps or cached_sps) * e)


def _default_cache_cps() -> float:
    """Teacher forwards per second, from the measurement that separates them best: at batch 32 and a
    30 s window the online step minus the cached one is the encoder + teacher forward (and capture),
    less the cached step's lm_head recompute: 32 / (0.691 - 0.335) = 89.9 clips/s."""
    r = _measured(32, 30.0)
    return r.batch / (r.online_step_s[0] - r.cached_step_s[0])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifests", type=Path, default=DEFAULT_MANIFESTS, help="EmoBox manifests folder")
    p.add_argument("--batch", type=int, default=1,
                   help="micro-batch whose measured figures are used (paper: 1, with 16 accumulation; measured: "
                        f"{', '.join(str(b) for b in sorted({r.batch for r in MEASURED_H200}))})")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--trials-per-gpu", type=int, default=1)
    p.add_argument("--pack-efficiency", type=float, default=1.0,
                   help="per-trial speed with --trials-per-gpu trials sharing a GPU, as a fraction of one alone "
                        "(not measured: bench/gpu_pack.py measures it)")
    p.add_argument("--train-sps", type=float, default=None, help="cached training samples/s per trial")
    p.add_argument("--online-sps", type=float, default=None, help="online training samples/s per trial")
    p.add_argument("--sft-sps", type=float, default=None, help="SFT samples/s per trial (default: the cached rate)")
    p.add_argument("--online-window", type=float, default=30.0,
                   help="window of the measured online row to use (IEMOCAP's folds need 30 s)")
    p.add_argument("--eval-sps", type=float, default=None,
                   help="scoring clips/s per trial (default: the cached training rate at batch 32)")
    p.add_argument("--cache-cps", type=float, default=None, help="teacher forwards/s of one GPU")
    p.add_argument("--overhead-s", type=float, default=60.0, help="fixed start-up seconds per trial")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--test-once", action="store_true", help="test only the best epoch (not after every epoch)")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--val-seed", type=int, default=0)
    return p


def _hours(s: float) -> str:
    return f"{s / 3600:.1f}"


def _sensitivity(args: argparse.Namespace, folds: dict[str, list[FoldCounts]]) -> str:
    """Tables 1 + 2 cached, wall hours at other batches and trials per GPU (packing assumed free)."""
    rows = []
    for batch in sorted({r.batch for r in MEASURED_H200}):
        cells: list[object] = [batch]
        for k in (1, 2, 4, 8):
            a = argparse.Namespace(**{**vars(args), "batch": batch, "trials_per_gpu": k})
            walls = [project(BOTH, folds, _rates(a, e, True), cached=True, epochs=a.epochs, seeds=a.seeds,
                             gpus=a.gpus, trials_per_gpu=k, test_each_epoch=not a.test_once).wall_s for e in (0, 1)]
            cells.append(f"{_hours(walls[0])}-{_hours(walls[1])}")
        rows.append(cells)
    return table(["batch", "1 trial/GPU", "2", "4", "8"], rows)


def _fold_table(folds: dict[str, list[FoldCounts]]) -> str:
    rows = [[d, len(fs), sum(f.train for f in fs), sum(f.val for f in fs), sum(f.test for f in fs),
             "/".join(f"{f.window_s:g}" for f in fs)] for d, fs in folds.items()]
    return table(["dataset", "folds", "train clips", "val clips", "test clips", "window s per fold"], rows)


def _print_assumptions(args: argparse.Namespace) -> None:
    fast, slow = (_rates(args, e, True) for e in (0, 1))
    on_fast, on_slow = (_rates(args, e, False) for e in (0, 1))
    print("assumptions (each a flag):")
    for line in (
        f"  node: {args.gpus} H200 GPUs, {args.trials_per_gpu} trial(s) per GPU, per-trial speed x "
        f"{args.pack_efficiency:g} when sharing (packing not measured yet)",
        f"  per trial, batch {args.batch}: cached {fast.train_sps:.2f}-{slow.train_sps:.2f} samples/s"
        + (" (given)" if args.train_sps else " (H200 table, bench/RESULTS.md)")
        + f", online {on_fast.train_sps:.2f}-{on_slow.train_sps:.2f}"
        + (" (given)" if args.online_sps else f" (online row with the window nearest {args.online_window:g} s: "
           f"{_measured(args.batch, args.online_window).window_s:g} s)"),
        "  SFT trains at the cached rate in both modes (no teacher); other methods at the PL-Distill rate",
        f"  scoring {fast.eval_sps:.1f} clips/s per trial"
        + (" (given)" if args.eval_given else " (not measured: the cached training rate at batch 32)"),
        f"  teacher forwards {args.cache_cps:.1f} clips/s per GPU"
        + (" (given)" if args.cache_given else " (batch-32 online minus cached step)")
        + ", cache build = train + val + test clips at that rate, one job per fold, a GPU each",
        f"  {args.overhead_s:g} s start-up per trial; {args.epochs} epochs; {args.seeds} seeds; "
        f"test scored {'once' if args.test_once else 'after every epoch'}; phases not overlapped; LPT scheduling",
    ):
        print(line)


def main(argv: list[str] | None = None) -> dict[tuple[str, str], tuple[Projection, Projection]]:
    args = _parser().parse_args(argv)
    logging.getLogger("pldistill").setLevel(logging.ERROR)  # IEMOCAP's 2 clips over 30 s, once per fold
    args.eval_given, args.cache_given = args.eval_sps is not None, args.cache_cps is not None
    args.cache_cps = args.cache_cps or _default_cache_cps()
    args.eval_sps = args.eval_sps or 32 / _measured(32).cached_step_s[0]
    kw = {"val_fraction": args.val_fraction, "val_seed": args.val_seed}
    folds = {d: dataset_folds(args.manifests, d, **kw) for d in DATASETS}
    print(f"EmoBox folds from {args.manifests} (validation carved from train: fraction {args.val_fraction}, "
          f"seed {args.val_seed}):")
    print(_fold_table(folds))
    print()
    _print_assumptions(args)
    out: dict[tuple[str, str], tuple[Projection, Projection]] = {}
    rows = []
    common = {"epochs": args.epochs, "seeds": args.seeds, "gpus": args.gpus, "trials_per_gpu": args.trials_per_gpu,
              "test_each_epoch": not args.test_once}
    for grid in (TABLE1, TABLE2, BOTH):
        for mode in ("cached", "online"):
            pf, ps = (project(grid, folds, _rates(args, e, mode == "cached"), cached=mode == "cached", **common)
                      for e in (0, 1))
            out[(grid.name, mode)] = (pf, ps)
            part, share = ps.dominant
            rows.append([grid.name, mode, ps.trials, f"{_hours(pf.wall_s)}-{_hours(ps.wall_s)}",
                         f"{pf.prepare_wall_s / 60:.0f}-{ps.prepare_wall_s / 60:.0f}",
                         *(_hours(ps.gpu_s[k]) for k in ("train", "eval", "overhead", "cache build")),
                         f"{part} {100 * share:.0f} %"])
    print()
    print(table(["grid", "mode", "trials", "wall h", "of it prepare min", "GPU-h train", "eval", "start-up",
                 "cache", "dominant (slow end)"], rows))
    print("wall h: fast-slow end of the measured ranges; GPU-h columns at the slow end.")
    print("\nTables 1 + 2, cached, wall h if k trials shared a GPU at no cost per trial (an upper bound on the"
          "\ngain: not measured; batch 8 and 32 also change the paper's batch-1 x 16-accumulation protocol):")
    print(_sensitivity(args, folds))
    return out


if __name__ == "__main__":
    main()
