"""Does a sweep fit its cluster? The totals a sweep's concurrent worker groups need, against Ray's.

:func:`check_resources` compares against any ``ray.cluster_resources()``; :func:`check_local_resources`
against the private local Ray that ``launch`` would start, before Ray starts and before anything is
written. Torch is imported only to count local GPUs, and only when the sweep asks for GPUs.
"""

from __future__ import annotations

import os

from pldistill.errors import InputError
from pldistill.sweep.config import SweepConfig

__all__ = ["check_local_resources", "check_resources", "require_local_resources"]


def check_resources(sweep: SweepConfig, cluster_resources: dict[str, float], *,
                    driver_resource: str | None = None) -> list[str]:
    """Problems running ``sweep`` on a cluster with ``cluster_resources`` (``ray.cluster_resources()``).

    ``max_concurrent_trials`` worker groups must fit at once; with ``driver_resource`` (the custom
    resource each trial's driver holds) there must also be one slot of it per concurrent trial.
    Only totals are checked: a worker larger than every single node is not detected.
    """
    r, n = sweep.resources, sweep.search.max_concurrent_trials
    prefix = f"{sweep.source}: " if sweep.source else ""
    have = {unit: float(cluster_resources.get(unit, 0)) for unit in ("CPU", "GPU")}
    need = {"CPU": r.workers_per_trial * r.cpus_per_worker, "GPU": r.workers_per_trial * r.gpus_per_worker}
    per = {"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker}
    problems: list[str] = []
    if need["GPU"] > 0 and have["GPU"] == 0:
        problems.append(f"{prefix}resources.gpus_per_worker: {r.gpus_per_worker:g} GPU per worker asked for, "
                        "but the cluster has no GPU")
    for unit in ("GPU", "CPU"):
        how = f"{r.workers_per_trial} worker(s) x {per[unit]:g} {unit}"
        if need[unit] == 0 or have[unit] == 0 and unit == "GPU":
            continue
        if need[unit] > have[unit]:
            problems.append(f"{prefix}resources: one trial needs {need[unit]:g} {unit} ({how}), "
                            f"but the cluster has {have[unit]:g}")
        elif n * need[unit] > have[unit]:
            problems.append(f"{prefix}search.max_concurrent_trials: {n} trials x {need[unit]:g} {unit} ({how}) "
                            f"= {n * need[unit]:g} {unit}, but the cluster has {have[unit]:g}; at most "
                            f"{int(have[unit] // need[unit])} fit at once")
    slots = cluster_resources.get(driver_resource, 0) if driver_resource else n
    if slots < n:
        problems.append(f"{prefix}search.max_concurrent_trials: {n} trials need {n} '{driver_resource}' "
                        f"driver slots, but the cluster has {slots:g}")
    return problems


def check_local_resources(sweep: SweepConfig, num_cpus: int | None = None,
                          num_gpus: int | None = None) -> list[str]:
    """:func:`check_resources` against the private local Ray that ``launch`` would start: ``num_cpus``
    (default ``os.cpu_count()``, as ``launch`` uses) and ``num_gpus`` (default: the GPUs torch sees,
    asked only when the sweep wants GPUs). Known before Ray starts and before anything is written."""
    cpus = num_cpus or os.cpu_count() or 1
    if num_gpus is None:
        num_gpus = _visible_gpus() if sweep.resources.gpus_per_worker > 0 else 0
    return check_resources(sweep, {"CPU": float(cpus), "GPU": float(num_gpus)})


def require_local_resources(sweep: SweepConfig, num_cpus: int | None = None) -> None:
    """InputError (one line: the sweep file, the key, what fits) when :func:`check_local_resources`
    finds a problem. ``launch`` calls it first thing for a local Ray."""
    problems = check_local_resources(sweep, num_cpus)
    if problems:
        prefix = f"{sweep.source}: " if sweep.source else ""
        raise InputError(sweep.source, None, "; ".join(p.removeprefix(prefix) for p in problems))


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()
