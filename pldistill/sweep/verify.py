"""Is a recorded run reproducible here? ``pldistill-sweep verify``.

:func:`verify_run` reruns one (seed, fold) run of a recorded trial from the resolved config its row
holds (``config_json``), narrowed to that run, into a temporary folder with fresh caches (corpus,
features, teacher fine-tune, student prior, teacher cache: everything built again), and compares the
hash of its test predictions with the one the row recorded (``fold_metrics[].predictions_sha256``).
:func:`compare_sweeps` reruns nothing: it lists where two result folders' recorded environments
differ and which runs the two share, hash for hash.

A difference is explained, when it is, by what :func:`pldistill.sweep.environment.environment`
records: same machine, code, config and environment give the same bytes; another CPU, BLAS, library
version or torch thread count sums in another order, and training amplifies the last bit.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pldistill.config import TrialConfig
from pldistill.errors import InputError

__all__ = ["RecordedRun", "Verification", "SharedRun", "SweepComparison", "pick_run", "rerun_config",
           "verify_run", "compare_sweeps", "resolve_sweep", "env_differences", "flatten", "run_key"]

#: Fields of a resolved trial config that say where a trial wrote and read, or which runs it made,
#: not how one run computes: two trials equal but for these made the same (seed, fold) runs.
_BOOKKEEPING = ("name", "output_dir", "cache_dir")
_RUN_LIST = (("data", "folds"), ("train", "seeds"), ("train", "replicates"))

Log = Callable[[str], None]


@dataclass(frozen=True)
class RecordedRun:
    """One (seed, fold) run of a recorded trial: what it was computed from and the hash it recorded."""

    sweep: str
    trial_id: str
    seed: int
    fold: int
    recorded_sha256: str
    config: TrialConfig  # the trial's resolved config, as recorded (all its seeds and folds)
    num_workers: int | None = None
    environment: dict[str, Any] | None = None  # the sweep's (``sweep.json``); None: an older sweep


@dataclass(frozen=True)
class Verification:
    """A rerun beside its record; ``environment``: (dotted key, recorded, here) wherever they differ."""

    run: RecordedRun
    rerun_sha256: str | None
    environment: list[tuple[str, Any, Any]] | None  # None: the sweep recorded no environment
    reused_cache: Path | None = None
    failure: str | None = None  # why the rerun made no predictions (its loss diverged)

    @property
    def identical(self) -> bool:
        return self.rerun_sha256 == self.run.recorded_sha256


@dataclass(frozen=True)
class SharedRun:
    """A (trial config, seed, fold) run both sweeps recorded, with each one's trial and hash."""

    trial: str
    other_trial: str
    seed: int
    fold: int
    sha256: str | None
    other_sha256: str | None

    @property
    def verdict(self) -> str:
        if self.sha256 is None or self.other_sha256 is None:
            return "no hash"
        return "equal" if self.sha256 == self.other_sha256 else "different"


@dataclass(frozen=True)
class SweepComparison:
    """Two recorded sweeps side by side."""

    name: str
    other: str
    environment: list[tuple[str, Any, Any]] | None  # None: one of them recorded no environment
    runs: list[SharedRun]
    only_here: int  # runs recorded by ``name`` alone
    only_other: int


# ---------------------------------------------------------------- reading what a sweep recorded


def resolve_sweep(results: Path, sweep: str) -> tuple[Path, str]:
    """``(results root, sweep name)`` of ``sweep``: a name under ``results``, or else a sweep folder's path."""
    from pldistill.results import list_sweeps

    known = list_sweeps(results)
    if sweep in known:
        return Path(results), sweep
    folder = Path(sweep)
    if folder.is_dir() and folder.name in list_sweeps(folder.parent):
        return folder.parent, folder.name
    raise InputError(results, "sweep", f"unknown sweep {sweep!r} (neither a sweep under the results folder nor "
                                       f"a sweep folder); known: {', '.join(known) or 'none'}")


def _meta(root: Path, sweep: str) -> dict[str, Any]:
    from pldistill.results import ResultsStore

    return dict(ResultsStore(root, sweep).read_sweep_meta() or {})


def _rows(root: Path, sweep: str) -> dict[str, dict[str, Any]]:
    from pldistill.results import read_trials

    return {str(r["trial_id"]): r for r in read_trials(root, sweep).to_pylist()}


def _trial_file(root: Path, sweep: str, trial: str) -> Path:
    from pldistill.results import ResultsStore

    return ResultsStore(root, sweep).trial_path(trial)


def _best_trial(root: Path, sweep: str, meta: Mapping[str, Any]) -> str:
    """The sweep's best completed trial by its own selection metric and mode (never a test figure)."""
    from pldistill.results import best_trials

    metric = str(meta.get("metric") or "val_ua")
    if not metric.startswith("val_"):
        raise InputError(root / sweep / "sweep.json", "metric", f"{metric!r} is not a validation metric: choosing "
                                                                "by it is choosing on test; pass --trial ID")
    ranked = best_trials(root, metric=metric, mode=meta.get("mode") or None, sweep=sweep).to_pylist()
    if not ranked:
        raise InputError(root / sweep, "trials", f"no completed trial with a {metric} to verify")
    return str(ranked[0]["trial_id"])


def _config(row: Mapping[str, Any], where: Path) -> TrialConfig:
    from pydantic import ValidationError

    text = row.get("config_json")
    if not text:
        raise InputError(where, "config_json", "missing: the trial's resolved config was not recorded")
    try:
        return TrialConfig.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(where, "config_json." + ".".join(str(p) for p in err["loc"]), err["msg"]) from None


def pick_run(results: Path, sweep: str, *, trial: str | None = None, seed: int | None = None,
             fold: int | None = None) -> RecordedRun:
    """The run to verify: ``trial`` (default: the sweep's best), its run (``seed``, ``fold``; what is not
    given: its first recorded run that fits)."""
    root, sweep = resolve_sweep(Path(results), sweep)
    rows, meta = _rows(root, sweep), _meta(root, sweep)
    trial = trial if trial is not None else _best_trial(root, sweep, meta)
    if trial not in rows:
        raise InputError(root / sweep, "trial", f"unknown trial {trial!r}; the sweep has: "
                                                f"{', '.join(sorted(rows)[:20]) or 'none'}")
    row, where = rows[trial], _trial_file(root, sweep, trial)
    runs = [(int(f.get("seed") or 0), int(f["fold"]), f.get("predictions_sha256")) for f in row.get("fold_metrics") or []]
    if not runs:
        raise InputError(where, "fold_metrics", f"trial {trial} is {row.get('status')} and records no (seed, fold) run")
    fits = [r for r in runs if (seed is None or r[0] == seed) and (fold is None or r[1] == fold)]
    if not fits:
        asked = ", ".join(f"{k} {v}" for k, v in (("seed", seed), ("fold", fold)) if v is not None)
        ran = "; ".join(f"seed {s} fold {f}" for s, f, _ in runs)
        raise InputError(where, "fold_metrics", f"trial {trial} has no run with {asked}; it ran: {ran}")
    s, f, digest = fits[0]
    if not digest:
        raise InputError(where, "fold_metrics.predictions_sha256", f"not recorded for seed {s} fold {f} (a sweep "
                                                                   "from before runs were hashed): nothing to compare with")
    return RecordedRun(sweep=sweep, trial_id=trial, seed=s, fold=f, recorded_sha256=str(digest),
                       config=_config(row, where), num_workers=row.get("num_workers"),
                       environment=meta["environment"] if isinstance(meta.get("environment"), dict) else None)


# ---------------------------------------------------------------- the rerun


def rerun_config(cfg: TrialConfig, seed: int, fold: int, *, output_dir: Path, cache_dir: Path) -> TrialConfig:
    """``cfg`` narrowed to the one run (``seed``, ``fold``), replicates off, writing to ``output_dir``
    and reading and building its artifacts in ``cache_dir``. A run does not depend on the runs before
    it in its trial (``_setup_fold`` reseeds every random state from its seed and fold)."""
    dump = cfg.model_dump()
    dump["data"]["folds"], dump["train"]["seeds"], dump["train"]["replicates"] = [fold], [seed], None
    return TrialConfig.model_validate({**dump, "output_dir": output_dir, "cache_dir": cache_dir})


def _prepare(cfg: TrialConfig, log: Log) -> None:
    """Build what the rerun reads (corpus, features, teachers, caches) before it trains, in this
    process (a trial never builds them: :mod:`pldistill.prepare`)."""
    from pldistill.prepare import prepare_trial

    prepare_trial(cfg, log=log)


def verify_run(run: RecordedRun, *, cache_dir: Path | None = None, log: Log = print) -> Verification:
    """Rerun ``run`` here (a temporary output folder; a fresh temporary ``cache_dir`` unless one is
    given) and set its predictions hash beside the recorded one, with where this machine's
    environment differs from the one its sweep recorded."""
    from pldistill.sweep.environment import environment
    from pldistill.train.trial import run_trial

    # Before the trial sets its thread count: the recorded environment was taken in the launcher, likewise.
    here = environment()
    with tempfile.TemporaryDirectory(prefix="pldistill-verify-") as tmp:
        cfg = rerun_config(run.config, run.seed, run.fold, output_dir=Path(tmp) / "run",
                           cache_dir=cache_dir if cache_dir is not None else Path(tmp) / "cache")
        _prepare(cfg, log)
        digest, failure = None, None
        try:
            result = run_trial(cfg)
            digest = next((f.predictions_sha256 for f in result.folds if (f.seed, f.fold) == (run.seed, run.fold)),
                          None)
        except FloatingPointError as exc:  # the recorded run finished: one that diverges here differs
            failure = str(exc)
        here["keys"] = environment(cfg)["keys"]  # artifacts built already: this reads their keys
    diff = None if run.environment is None else env_differences(_this_fold(run.environment, run.fold), here)
    return Verification(run=run, rerun_sha256=digest, environment=diff, reused_cache=cache_dir, failure=failure)


def _this_fold(env: Mapping[str, Any], fold: int) -> dict[str, Any]:
    """``env`` with only ``fold``'s keys (a sweep records every fold's; the rerun builds one)."""
    keys = env.get("keys")
    if not isinstance(keys, dict) or not isinstance(keys.get("folds"), dict):
        return dict(env)
    folds = {k: v for k, v in keys["folds"].items() if str(k) == str(fold)}
    return {**env, "keys": {**keys, "folds": folds}}


# ---------------------------------------------------------------- environments and matching


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys (``{"cpu": {"isa": "AVX2"}}`` -> ``{"cpu.isa": "AVX2"}``);
    other values (lists too) kept whole."""
    if not isinstance(value, Mapping) or (prefix and not value):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, sub in value.items():
        out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
    return out


def env_differences(recorded: Mapping[str, Any], other: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, recorded value, other value)`` for every key whose values differ (None: absent)."""
    a, b = flatten(recorded), flatten(other)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def run_key(config_json: str) -> str:
    """What identifies a trial's runs across sweeps: its resolved config without bookkeeping (name,
    output and cache folders) and without the list of runs (seeds, replicates, folds), canonical JSON."""
    cfg = json.loads(config_json)
    for name in _BOOKKEEPING:
        cfg.pop(name, None)
    for section, name in _RUN_LIST:
        cfg.get(section, {}).pop(name, None)
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def _recorded_runs(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int, int], tuple[str, str | None]]:
    """``(run key, seed, fold) -> (trial id, hash)`` of every recorded run (the lower trial id when two
    trials of a sweep share a config)."""
    out: dict[tuple[str, int, int], tuple[str, str | None]] = {}
    for row in sorted(rows, key=lambda r: str(r["trial_id"])):
        if not row.get("config_json"):
            continue
        key = run_key(str(row["config_json"]))
        for f in row.get("fold_metrics") or []:
            out.setdefault((key, int(f.get("seed") or 0), int(f["fold"])),
                           (str(row["trial_id"]), f.get("predictions_sha256")))
    return out


def compare_sweeps(results: Path, sweep: str, other: str) -> SweepComparison:
    """``sweep`` beside ``other`` (each a name under ``results`` or a sweep folder's path): where their
    recorded environments differ, and their shared runs with both hashes."""
    root, name = resolve_sweep(Path(results), sweep)
    other_root, other_name = resolve_sweep(Path(results), other)
    envs = [_meta(r, n).get("environment") for r, n in ((root, name), (other_root, other_name))]
    diff = env_differences(envs[0], envs[1]) if all(isinstance(e, dict) for e in envs) else None
    mine, theirs = _recorded_runs(_rows(root, name).values()), _recorded_runs(_rows(other_root, other_name).values())
    shared = [SharedRun(trial=mine[k][0], other_trial=theirs[k][0], seed=k[1], fold=k[2], sha256=mine[k][1],
                        other_sha256=theirs[k][1])
              for k in sorted(set(mine) & set(theirs), key=lambda k: (mine[k][0], k[1], k[2]))]
    return SweepComparison(name=name, other=other_name if other_root == root else str(other_root / other_name),
                           environment=diff, runs=shared, only_here=len(set(mine) - set(theirs)),
                           only_other=len(set(theirs) - set(mine)))
