"""A sweep's preparation on a cold cache, before and after it became one graph (issue #26), side by side.

Two children, one after the other, each on a fresh empty cache (``--out``/cache-before, cache-after):

* **before**: the code of ``--before`` (default ``515ce03``, the last commit before ``pldistill/prepare``),
  from a git worktree of it: ``prepare_shared`` (folds one after another on the launching process:
  corpus, features, teacher fine-tune, student prior, the label teacher cache on Ray Data), then what
  that code left to the first trials, timed the same way, one after another as the trials waiting on
  its lock did: every fold's EmoDistill teachers and ``pseudo_target: metadata`` teacher cache (a
  trial built it in process);
* **after**: this checkout's ``prepare_sweep`` (every variant's entries, folds side by side as Ray
  tasks on a private Ray of ``--num-cpus``, each fold's teacher caches built in its task on CPUs).

With ``--runs`` each child then trains every variant once, seed 0 on fold 1 (``run_trial`` in the
child, no Ray), and the bench prints each variant's predictions hash in both: the same code and
config before and after must give the same bytes.

    PYTHONPATH=$PWD .venv/bin/python bench/prepare_cold.py --runs      # ~40 min on 2 idle cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _sweep(path: str, cache: Path) -> Any:
    from pldistill.sweep import load_sweep

    sweep = load_sweep(path, cwd=REPO)
    sweep.base.cache_dir = cache
    return sweep


def _configs(sweep: Any) -> list[Any]:
    from pldistill.sweep.space import VARIANT_KEY, resolve_trial_config

    return [resolve_trial_config(sweep, {VARIANT_KEY: v.name}, trial_id=v.name) for v in sweep.search.variants]


def child_before(sweep_file: str, cache: Path) -> dict[str, Any]:
    from pldistill.sweep.launch import prepare_shared  # the old code (this child's PYTHONPATH)
    from pldistill.train.classifier_trial import _teachers
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.teacher import ensure_teacher
    from pldistill.train.teacher_cache import ensure_teacher_cache

    sweep = _sweep(sweep_file, cache)
    t0 = time.perf_counter()
    prepare_shared(sweep, log=lambda m: None)
    t1 = time.perf_counter()
    done: set[tuple[str, int]] = set()
    for cfg in _configs(sweep):
        for fold in cfg.data.folds:
            data = prepare_fold(cfg, fold)
            if cfg.student_family == "classifier" and ("emodistill", fold) not in done:
                _teachers(cfg, data)
                done.add(("emodistill", fold))
            elif cfg.hparams.pseudo_target == "metadata" and ("metadata", fold) not in done:
                teacher, _ = ensure_teacher(cfg, data, log=lambda m: None)
                ensure_teacher_cache(cfg, data, teacher, log=lambda m: None, batch_size=cfg.train.eval_batch_size)
                done.add(("metadata", fold))
    return {"prepare_s": t1 - t0, "left_to_trials_s": time.perf_counter() - t1}


def child_after(sweep_file: str, cache: Path, num_cpus: int) -> dict[str, Any]:
    import ray

    from pldistill.sweep.launch import prepare_sweep

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        t0 = time.perf_counter()
        report = prepare_sweep(_sweep(sweep_file, cache), log=lambda m: None)
        return {"prepare_s": time.perf_counter() - t0, "left_to_trials_s": 0.0,
                "built": sum(e.built for e in report.entries), "entries": len(report.entries)}
    finally:
        ray.shutdown()


def child_runs(sweep_file: str, cache: Path, out: Path, new: bool) -> dict[str, str | None]:
    """Each variant, seed 0 on fold 1: its predictions hash."""
    from pldistill.train.trial import run_trial

    hashes = {}
    for cfg in _configs(_sweep(sweep_file, cache)):
        cfg = cfg.model_copy(update={"output_dir": out / cfg.name})
        cfg.data.folds = [1]
        cfg.train.replicates = None  # first: the config validates seeds against the replication rule
        cfg.train.seeds = [0]
        if new:
            from pldistill.prepare import prepare_trial

            prepare_trial(cfg, log=lambda m: None)
        hashes[cfg.name] = run_trial(cfg).folds[0].predictions_sha256
    return hashes


def _child(args: argparse.Namespace) -> None:
    cache = Path(args.cache)
    if args.runs_only:  # the variants' runs on a cache a child prepared already (no timing)
        result: dict[str, Any] = {}
    elif args.child == "before":
        result = child_before(args.sweep, cache)
    else:
        result = child_after(args.sweep, cache, args.num_cpus)
    if args.runs:
        result["hashes"] = child_runs(args.sweep, cache, Path(args.cache).parent / f"runs-{args.child}",
                                      new=args.child == "after")
    print("RESULT " + json.dumps(result), flush=True)


def _run(which: str, src: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1",
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="pc", dir="/tmp")}
    cmd = [sys.executable, str(REPO / "bench" / "prepare_cold.py"), "--child", which, "--sweep", args.sweep,
           "--cache", str(out / f"cache-{which}"), "--num-cpus", str(args.num_cpus)] + (["--runs"] if args.runs else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{which} child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {**json.loads(line.removeprefix("RESULT ")), "child_wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="sweeps/seed_methods_grid.yaml")
    ap.add_argument("--before", default="515ce03")
    ap.add_argument("--out", default="/tmp/pldistill-prepare-cold")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--runs", action="store_true", help="then train each variant once (seed 0, fold 1) in both")
    ap.add_argument("--timeout", type=int, default=7200)
    ap.add_argument("--child", choices=["before", "after"])
    ap.add_argument("--cache")
    ap.add_argument("--runs-only", action="store_true", help="child: only the runs, on its prepared --cache")
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for cache in out.glob("cache-*"):
        raise SystemExit(f"{cache} exists: give --out a fresh folder (the runs must start cold)")
    old_src = out / "before-src"
    if not old_src.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(old_src), args.before], cwd=REPO, check=True,
                       capture_output=True)
    before = _run("before", old_src, args, out)
    after = _run("after", REPO, args, out)
    total = {k: v["prepare_s"] + v["left_to_trials_s"] for k, v in (("before", before), ("after", after))}
    print(f"{args.sweep}, cold cache, {args.num_cpus} CPUs of Ray, 1 torch thread")
    print(f"{'':28s}{'before':>10s}{'after':>10s}")
    print(f"{'prepare (s)':28s}{before['prepare_s']:10.1f}{after['prepare_s']:10.1f}")
    print(f"{'left to the first trials (s)':28s}{before['left_to_trials_s']:10.1f}{after['left_to_trials_s']:10.1f}")
    print(f"{'total (s)':28s}{total['before']:10.1f}{total['after']:10.1f}")
    print(f"after / before = {total['after'] / total['before']:.3f}")
    if args.runs:
        print("\nvariant (seed 0, fold 1)        predictions sha256 before = after")
        for name, h in before["hashes"].items():
            other = after["hashes"].get(name)
            print(f"{name:30s} {str(h)[:16]}  {'identical' if h == other else 'DIFFERS: ' + str(other)[:16]}")


if __name__ == "__main__":
    main()
