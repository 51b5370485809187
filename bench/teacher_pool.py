"""The tiny teacher's test UA per fold against the size of the synthetic corpus's teacher pool.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python bench/teacher_pool.py --pool 0,24 --folds 1,2,3

For each pool size (``SynthConfig.teacher_speakers``), the corpus is written (or reused) under
``--cache-dir`` and each fold's teacher is fine-tuned (or read from its cache) with the default
``TeacherFinetuneConfig``; one line per (pool, fold) with val/test/conflict-clip UA and the seconds it
took. A fine-tune of one fold on 384 + 1,536 clips takes about 7 CPU-minutes.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default="0,24", help="comma-separated teacher_speakers values")
    ap.add_argument("--folds", default="1,2,3")
    ap.add_argument("--cache-dir", default=".pldistill-cache")
    args = ap.parse_args()

    from pldistill.config import TrialConfig
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.teacher import ensure_teacher

    folds = [int(x) for x in args.folds.split(",")]
    for pool in (int(x) for x in args.pool.split(",")):
        cfg = TrialConfig.model_validate({
            "data": {"source": "synthetic", "dataset": "synthetic", "folds": folds,
                     "synth": {"teacher_speakers": pool}},
            "model": {"teacher": "tiny", "student_llm": "tiny"}, "train": {"num_threads": 1},
            "cache_dir": args.cache_dir, "output_dir": "/tmp/pldistill-teacher-pool"})
        uas = []
        for fold in folds:
            t0 = time.perf_counter()
            data = prepare_fold(cfg, fold)
            _, m = ensure_teacher(cfg, data, log=lambda _: None)
            uas.append(m["test_ua"])
            print(f"pool {pool:3d} speakers, fold {fold}: teacher val UA {m['val_ua']:.4f}  test UA {m['test_ua']:.4f}  "
                  f"conflict-clip UA {m.get('test_conflict_ua', float('nan')):.4f}  "
                  f"({len(data.train)} train + {len(data.teacher_pool)} pool clips, {time.perf_counter() - t0:.0f} s)",
                  flush=True)
        print(f"pool {pool:3d} speakers: mean teacher test UA {sum(uas) / len(uas):.4f} over folds {folds}")


if __name__ == "__main__":
    main()
