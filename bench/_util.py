"""Helpers the benchmarks share: the smoke sweep's trial config, quiet logging, robust statistics, tables."""

from __future__ import annotations

import logging
import os
import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"
#: Shared by the benchmarks so the synthetic corpus, the tiny teacher and the student prior are built once.
DEFAULT_CACHE = Path("/tmp/pldistill-bench-cache")

__all__ = ["REPO", "SMOKE", "DEFAULT_CACHE", "smoke_trial_config", "quiet", "median", "table"]


def smoke_trial_config(cache_dir: Path, output_dir: Path, **hparams: Any):
    """The trial config every smoke-sweep trial starts from (``base`` + ``fixed``), with ``hparams`` set.

    Read from ``sweeps/smoke.yaml`` itself so the benchmark follows that file when it changes.
    """
    from pldistill.config import Hyperparameters
    from pldistill.sweep import load_sweep
    from pldistill.sweep.space import resolve_trial_config

    cfg = resolve_trial_config(load_sweep(SMOKE, cwd=REPO), {}, trial_id="bench")
    cfg.cache_dir = cache_dir
    cfg.output_dir = output_dir
    cfg.hparams = Hyperparameters(**{**cfg.hparams.model_dump(), **hparams})
    return cfg


def quiet() -> None:
    """No progress bars or library chatter in the benchmark's output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("peft").setLevel(logging.ERROR)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table(header: Sequence[str], rows: Sequence[Sequence[object]], *, first_width: int = 0) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned; floats to 1 decimal."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.1f}"
        return "" if v is None else str(v)

    cells = [[cell(v) for v in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    widths[0] = max(widths[0], first_width)
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:]))]))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def status_kib(field: str) -> int:
    """A field of ``/proc/self/status`` in KiB (``VmRSS`` now, ``VmHWM`` the peak): what the memory
    benches measure, since tracemalloc does not see torch's allocations."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")
