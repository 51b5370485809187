"""What determines a sweep's numbers beyond its config, recorded in ``sweep.json`` (``environment``):
library versions, torch's threads, the BLAS and CPU the run used, and each fold's corpus and cache
keys. Two result folders whose figures differ can then be told apart by what differs here (the
same code and config on another CPU or BLAS is not bit-for-bit the same run)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["environment", "LIBRARIES"]

#: The libraries whose versions can change a trial's numbers (or its reading of the data).
LIBRARIES = ("torch", "numpy", "scipy", "transformers", "peft", "safetensors", "ray", "optuna", "pyarrow",
             "soundfile", "librosa", "opensmile", "duckdb")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> dict[str, Any]:
    import torch

    model = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"model": model, "machine": platform.machine(), "cores": os.cpu_count(),
            "isa": torch.backends.cpu.get_cpu_capability()}


#: Variables that switch the numeric code paths BLAS and torch's kernels take on the same CPU. Measured
#: (bench/RESULTS.md, session 10): ``MKL_CBWR=COMPATIBLE`` alone moved a fold's fine-tuned teacher from
#: 66.0 to 68.0 test UA, same code, machine and threads: a difference a reader must be able to see.
SWITCHES = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY",
            "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")


def _blas() -> dict[str, Any]:
    import numpy as np
    import torch

    build = torch.__config__.show()
    settings = dict(kv.split("=", 1) for kv in build.replace(",", " ").split() if "=" in kv)
    numpy_blas = (np.show_config(mode="dicts") or {}).get("Build Dependencies", {}).get("blas", {})
    switches = {k: v for k in SWITCHES if (v := os.environ.get(k)) is not None}
    return {"torch": settings.get("BLAS_INFO"), "torch_lapack": settings.get("LAPACK_INFO"),
            "numpy": f"{numpy_blas.get('name')} {numpy_blas.get('version')}" if numpy_blas else None,
            # only those set, and only when one is: a record from before this key compares equal
            **({"switches": switches} if switches else {})}


def environment(cfg: Any = None) -> dict[str, Any]:
    """This process's environment as a JSON object; ``cfg`` (the sweep's shared ``TrialConfig``, its
    folds prepared already): each fold's corpus, feature, teacher and teacher-cache keys too."""
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "torch_threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "blas": _blas(), "cpu": _cpu(),
        "gpu": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    if cfg is not None:
        env["keys"] = _keys(cfg)
    return env


def _keys(cfg: Any) -> dict[str, Any]:
    from pldistill.train.dataset import manifests_dir, prepare_fold
    from pldistill.train.teacher import teacher_key
    from pldistill.train.teacher_cache import teacher_cache_key

    root, _ = manifests_dir(cfg)
    folds = {}
    for fold in cfg.data.folds:
        data = prepare_fold(cfg, fold)  # kept by the preparation in this process: no work again
        folds[str(fold)] = {"features": data.features_key, "teacher": teacher_key(cfg, data),
                            "teacher_cache": teacher_cache_key(cfg, data)}
    return {"corpus": root.name if cfg.data.source == "synthetic" else str(root), "folds": folds}
