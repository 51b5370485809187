"""Soak: a small sweep run again and again while its workers and its launcher are killed at random.

Each repetition launches the same Optuna sweep (tiny models, synthetic corpus) as a real process,
then, at random moments, SIGKILLs either one Ray Train worker (Ray Train restarts it from the
trial's last checkpoint) or the launcher itself (Ray dies with it; ``pldistill-sweep resume`` then
continues). When the sweep ends, the results are checked against what it promises:

    completed   trials with a final row (completed / pruned / failed), target num_samples
    lost        num_samples - completed, target 0
    duplicates  trial rows or (trial, fold, epoch) rows written twice, target 0
    extra wall  wall time with failures / wall time of an undisturbed run of the same sweep

    python bench/soak.py --reps 3 --kills 3 --seed 0
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from _procs import ray_processes, sigkill_and_wait, start_cli, stop, tiny_sweep  # noqa: E402

NAME = "soak"


def _sweep(work: Path, cache: str, num_samples: int, steps: int) -> Path:
    """The soak sweep file (results under ``work/results``)."""
    return tiny_sweep(NAME, work, cache, epochs=3, max_steps_per_epoch=steps, fixed={"objective": "pl_distill"},
                      search={"algorithm": "optuna", "metric": "val_ua", "mode": "max", "num_samples": num_samples,
                              "max_concurrent_trials": 2, "seed": 0,
                              "space": {"alpha": {"type": "uniform", "low": 0.0, "high": 2.0},
                                        "temperature": {"type": "loguniform", "low": 0.5, "high": 8.0}}},
                      failures={"worker_restarts": 5})


def _run(work: Path, cache: str, num_samples: int, steps: int, kills: int, rng: random.Random | None) -> dict:
    """One sweep from scratch; with ``rng``, ``kills`` random kills along the way."""
    results = work / "results"
    shutil.rmtree(results, ignore_errors=True)
    path = _sweep(work, cache, num_samples, steps)
    log = work / "cli.log"
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    base = ["--num-cpus", "2", "--no-dashboard", "--quiet"]
    done = {"worker": 0, "driver": 0}
    started = time.perf_counter()
    proc = start_cli(["launch", str(path), *base], ray_tmp, log)
    try:
        for _ in range(kills if rng else 0):
            time.sleep(rng.uniform(15, 45))
            if proc.poll() is not None:
                break
            workers = [p for p in ray_processes(ray_tmp) if "RayTrainWorker" in " ".join(p.cmdline())]
            if workers and rng.random() < 0.5:
                rng.choice(workers).kill()
                done["worker"] += 1
            else:
                sigkill_and_wait(proc, ray_tmp)
                done["driver"] += 1
                proc = start_cli(["resume", NAME, "--results", str(results), *base], ray_tmp, log)
        rc = proc.wait(timeout=3600)
    finally:
        stop(proc, ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    wall = time.perf_counter() - started
    return {"rc": rc, "wall_s": wall, **done, **_check(results, num_samples)}


def _check(results: Path, num_samples: int) -> dict:
    from pldistill.results import read_epochs, read_trials

    rows = read_trials(results).to_pylist()
    epochs = read_epochs(results).to_pylist()
    ids = [r["trial_id"] for r in rows]
    final = [r for r in rows if r["status"] in ("completed", "pruned", "failed")]
    keys = [(e["trial_id"], e["fold"], e["epoch"]) for e in epochs]
    return {"completed": len(final), "lost": num_samples - len(final),
            "duplicates": (len(ids) - len(set(ids))) + (len(keys) - len(set(keys))),
            "extra_rows": max(0, len(set(ids)) - num_samples),
            "restarts": sum(r["restarts"] or 0 for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kills", type=int, default=3, help="random kills per repetition")
    ap.add_argument("--num-samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per epoch (longer epochs: more kills mid-epoch)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=".pldistill-cache", help="shared cache (corpus, teacher, prior)")
    args = ap.parse_args()

    from pldistill.sweep import load_sweep
    from pldistill.sweep.launch import prepare_sweep

    work = Path(tempfile.mkdtemp(prefix="pldistill-soak-"))
    cache = str(Path(args.cache).resolve())
    prepare_sweep(load_sweep(_sweep(work, cache, args.num_samples, args.steps)), log=lambda m: None)  # not part of any timing

    rng = random.Random(args.seed)
    clean = _run(work, cache, args.num_samples, args.steps, 0, None)
    print(f"undisturbed: {clean['wall_s']:.0f} s, {clean['completed']}/{args.num_samples} trials, "
          f"duplicates {clean['duplicates']}")
    print("rep  worker_kills  driver_kills  completed  lost  duplicates  extra_rows  restarts  wall_s  wall/undisturbed")
    totals = {"completed": 0, "lost": 0, "duplicates": 0, "extra_rows": 0}
    for rep in range(args.reps):
        r = _run(work, cache, args.num_samples, args.steps, args.kills, rng)
        for k in totals:
            totals[k] += r[k]
        print(f"{rep:>3}  {r['worker']:>12}  {r['driver']:>12}  {r['completed']:>9}  {r['lost']:>4}  "
              f"{r['duplicates']:>10}  {r['extra_rows']:>10}  {r['restarts']:>8}  {r['wall_s']:>6.0f}  "
              f"{r['wall_s'] / clean['wall_s']:>16.2f}" + ("" if r["rc"] == 0 else f"  (exit {r['rc']})"))
    print(f"total: completed {totals['completed']}/{args.reps * args.num_samples}, lost {totals['lost']}, "
          f"duplicates {totals['duplicates']}, extra rows {totals['extra_rows']}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
