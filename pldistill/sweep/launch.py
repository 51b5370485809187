"""Launch a sweep: validate, prepare shared artefacts once, start or attach to Ray, run Tune.

Without an address a private local Ray is started (``address="local"``, dashboard on loopback);
with one, pldistill attaches to that cluster. Everything a trial writes lands in Parquet under
``<results>/<sweep name>/`` while the sweep runs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pldistill.errors import InputError, PldistillError

__all__ = ["LaunchOptions", "LaunchSummary", "launch", "resume", "run_sweep", "prepare_sweep", "sweep_meta",
           "protocol_of", "trial_counts"]


@dataclass
class LaunchOptions:
    address: str | None = None
    num_cpus: int | None = None
    dashboard: bool = True
    progress: bool = True
    ray_tmpdir: str | None = None


@dataclass
class LaunchSummary:
    name: str
    results: Path
    counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    dashboard_url: str | None = None
    #: The sweep's own selection metric and mode: the summary ranks by them, never by a test figure.
    metric: str = "val_ua"
    mode: str = "max"
    #: What was run: the protocol block of the sweep's recorded trials (pldistill.results.protocol).
    protocol: list[str] = field(default_factory=list)
    #: ``finished`` (every trial ended) or ``interrupted`` (``pldistill-sweep resume`` continues it).
    status: str = "finished"


def prepare_sweep(sweep: Any, log=print, address: str | None = None,
                  start_ray: Callable[[], object] | None = None, num_cpus: int | None = None) -> Any:
    """Work every trial needs and none should repeat, done once before any trial starts
    (:mod:`pldistill.prepare`): for every variant and sampled objective, the corpus, features,
    teachers, the student prior, teacher caches and EmoDistill's teachers, folds side by side.
    Trials then only read them, by path. ``start_ray``: how to start the caller's Ray when a stage
    needs one (the caller keeps it up); None: a Ray of its own, stopped after. Returns the
    :class:`~pldistill.prepare.PrepareReport`."""
    from pldistill.prepare import PrepareOptions, prepare_configs
    from pldistill.sweep.space import every_trial_config

    return prepare_configs(every_trial_config(sweep), PrepareOptions(
        log=log, accelerator=sweep.resources.gpus_per_worker > 0, start_ray=start_ray, address=address,
        num_cpus=num_cpus))


def _start_ray(sweep: Any, opts: LaunchOptions) -> str | None:
    import ray

    from pldistill.sweep.driver import DRIVER_RESOURCE

    slots = sweep.search.max_concurrent_trials
    if opts.address:
        ctx = ray.init(address=opts.address, log_to_driver=False)
        if ray.cluster_resources().get(DRIVER_RESOURCE, 0) < 1:
            raise PldistillError(
                f"cluster at {opts.address} has no '{DRIVER_RESOURCE}' resource; start its head with "
                f"ray start --head --resources='{{\"{DRIVER_RESOURCE}\": 64}}' (cluster.yaml does this)")
    else:
        kwargs: dict[str, Any] = {}
        if opts.ray_tmpdir:
            kwargs["_temp_dir"] = opts.ray_tmpdir
        ctx = ray.init(address="local", num_cpus=opts.num_cpus or os.cpu_count(), log_to_driver=False,
                       resources={DRIVER_RESOURCE: slots}, include_dashboard=opts.dashboard,
                       dashboard_host="127.0.0.1", configure_logging=False, **kwargs)
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not str(url).startswith("http") else url


@dataclass
class _RayOnce:
    """The launch's one Ray: started (or attached) on first need, by the teacher-cache build or by
    the sweep, whichever comes first, and shut down once at the end."""

    sweep: Any
    opts: LaunchOptions
    url: str | None = None
    started: bool = False

    def start(self) -> str | None:
        if not self.started:
            self.url, self.started = _start_ray(self.sweep, self.opts), True
        return self.url

    def stop(self) -> None:
        if self.started:
            import ray

            ray.shutdown()  # stops the private Ray, or disconnects from the cluster
            self.started = False


def launch(sweep_path: Path, opts: LaunchOptions | None = None, console=None) -> LaunchSummary:
    """Run the sweep in ``sweep_path`` to completion; returns its trials' counts by status.

    If an earlier run of the same sweep (same name and results folder) was interrupted, it is
    continued rather than started again; one that finished is reported, not rerun, and refused
    when the file has changed since."""
    from pldistill.sweep.load import load_sweep

    return run_sweep(load_sweep(sweep_path), Path(sweep_path), opts, console)


def resume(name: str, results_root: Path, opts: LaunchOptions | None = None, console=None) -> LaunchSummary:
    """Continue the interrupted sweep ``name`` under ``results_root`` with the config it was started with."""
    from pldistill.results import ResultsStore, list_sweeps
    from pldistill.sweep.config import SweepConfig

    meta_path = Path(results_root) / name / "sweep.json"
    meta = ResultsStore(results_root, name).read_sweep_meta() if meta_path.is_file() else None
    if meta is None:
        known = ", ".join(list_sweeps(results_root)) or "none"
        raise InputError(meta_path, "name", f"no sweep {name!r} under {results_root} (sweeps there: {known})")
    try:
        sweep = SweepConfig.model_validate(meta["config"])
    except ValueError as exc:
        raise InputError(meta_path, "config", f"cannot be read back: {str(exc).splitlines()[0]}") from None
    return run_sweep(sweep, Path(str(meta.get("sweep_file") or meta_path)), opts, console, must_resume=True)


def run_sweep(sweep: Any, sweep_path: Path, opts: LaunchOptions | None = None, console=None,
              must_resume: bool = False) -> LaunchSummary:
    """Start, continue, or report the validated ``sweep`` (``sweep_path`` names it in messages)."""
    from pldistill.results import ResultsStore
    from pldistill.sweep.resume import can_resume

    opts = opts or LaunchOptions()
    results = Path(sweep.results).resolve()
    store = ResultsStore(results, sweep.name)
    store.check_writable()
    say = console.print if console is not None else print
    meta = store.read_sweep_meta() if (store.sweep_dir / "sweep.json").is_file() else None
    changed = _changed_key(meta.get("config"), sweep) if meta is not None else None
    if meta is not None and meta.get("status") == "finished":
        if changed:
            raise InputError(sweep_path, changed,
                             f"differs from the finished run in {store.sweep_dir}; give the sweep a new name to "
                             "run it (the finished run's results stay as they are)")
        say(f"sweep {sweep.name} already finished; results in {store.sweep_dir} "
            "(give the sweep a new name to run it again)")
        return LaunchSummary(name=sweep.name, results=results, counts=trial_counts(store),
                             metric=sweep.search.metric, mode=sweep.search.effective_mode,
                             protocol=protocol_of(results, sweep.name))
    earlier = meta is not None and can_resume(results, sweep.name)
    if must_resume and not earlier:
        raise PldistillError(f"sweep {sweep.name} in {store.sweep_dir} has no Tune state to resume; "
                             f"launch {sweep_path} to start it")
    if earlier and changed:
        raise InputError(sweep_path, changed,
                         f"differs from the interrupted run in {store.sweep_dir}; resume it with "
                         f"'pldistill-sweep resume {sweep.name}' or give the sweep a new name")
    if not opts.address:  # a private local Ray: its CPUs are known before anything is written
        from pldistill.sweep.resources import require_local_resources

        require_local_resources(sweep, opts.num_cpus)
    ray_once = _RayOnce(sweep, opts)
    try:
        try:
            return _run_locked(sweep, sweep_path, store, opts, console, meta if earlier else None, ray_once, say)
        except Exception as exc:
            from pldistill.sweep.diskfull import disk_full_cause, disk_full_line

            full = disk_full_cause(exc)
            if full is None:
                raise
            from pldistill.sweep.ray_log import RAY_LOG

            quiet = "" if opts.progress else f"; Ray's messages: {store.sweep_dir / RAY_LOG}"
            raise PldistillError(disk_full_line(full.path, store, sweep) + quiet) from None
    finally:
        ray_once.stop()


def _changed_key(recorded: Any, sweep: Any) -> str | None:
    """The first key where the sweep file differs from the config ``sweep.json`` recorded, or None.

    The recorded config is read back through today's model first, so a section added to the sweep
    file format since (``tracking``, ``search.replicates``, ...) counts as its default, not as a
    change: a sweep interrupted before an upgrade still resumes."""
    new = sweep.model_dump(mode="json")
    with contextlib.suppress(Exception):  # recorded by a version whose file today's model refuses: as is
        recorded = type(sweep).model_validate(recorded).model_dump(mode="json")
    return None if recorded == new else _first_difference(recorded, new)


def _run_locked(sweep: Any, sweep_path: Path, store: Any, opts: LaunchOptions, console, earlier: Any,
                ray_once: _RayOnce, say) -> LaunchSummary:
    from pldistill.sweep.resume import SweepLock, remove_stale_sweep_temps

    with contextlib.ExitStack() as quiet:
        if not opts.progress:  # --quiet: Ray's tables and tracebacks into the file, from its first start on
            from pldistill.sweep.ray_log import RAY_LOG, ray_logs_to

            quiet.enter_context(ray_logs_to(store.sweep_dir / RAY_LOG))
        # preparation may start Ray (its tasks, the teacher cache's Ray Data): the sweep then runs on it
        prepared = prepare_sweep(sweep, log=lambda m: say(f"[dim]{m}[/dim]") if console is not None else print(m),
                                 address=opts.address, start_ray=ray_once.start)
        with SweepLock(store.sweep_dir):
            remove_stale_sweep_temps(store.sweep_dir)  # a killed launcher's half-written files
            return _run_tune(sweep, sweep_path, store, opts, console, earlier, ray_once, prepared)


def _first_difference(old: Any, new: Any, prefix: str = "") -> str:
    """The dotted key of the first difference between two JSON-like values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "config"


def _run_tune(sweep: Any, sweep_path: Path, store: Any, opts: LaunchOptions, console,
              earlier: dict[str, Any] | None, ray_once: _RayOnce, prepared: Any) -> LaunchSummary:
    import ray

    from pldistill.sweep.resources import check_resources
    from pldistill.sweep.space import build_tune_search
    from pldistill.sweep.study import prepare_study, storage_label

    say = console.print if console is not None else print
    results = store.root
    started = time.perf_counter()
    url = ray_once.start()  # already up if the teacher-cache build started it
    try:
        say(f"Ray dashboard: {url}" if url else "Ray dashboard: not started")
        problems = check_resources(sweep, ray.cluster_resources())
        if problems:
            raise InputError(sweep_path, "resources", "; ".join(problems))
        from pldistill.sweep.environment import environment
        from pldistill.sweep.space import shared_config

        storage = prepare_study(sweep, resuming=earlier is not None)  # refused before anything is written
        if storage is not None:
            say(f"Optuna study {sweep.name}: optuna-dashboard {storage_label(sweep)}")
        # this run's environment (a resumed run's replaces the first's): what explains other numbers elsewhere
        # and the artifact entries its trials read (``pldistill-sweep cache`` tells which sweeps use an entry)
        store.write_sweep_meta({**sweep_meta(sweep, sweep_path, earlier),
                                "environment": environment(shared_config(sweep, trial_id="prepare")),
                                "artifacts": prepared.to_json(), "prepare_wall_s": prepared.wall_s})
        search = build_tune_search(sweep, storage)
        tuner, recorder, progress = _tuner(sweep, search, results, opts, console, resume=earlier is not None)
        if earlier is not None:
            _reconcile(store, recorder, say, "resuming", search.num_samples_total)
        status = "interrupted"
        try:
            with progress:
                # Tune's ResultGrid counts a pruned trial as a success: the counts come from the results table
                tuner.fit()
            status = "finished" if _reconcile(store, recorder, say, None, search.num_samples_total) else "interrupted"
        finally:
            store.write_sweep_meta({**(store.read_sweep_meta() or {}), "status": status,
                                    "ended_at": datetime.now(timezone.utc).isoformat()})
        counts = trial_counts(store)
        store.write_sweep_meta({**(store.read_sweep_meta() or {}), "counts": counts})
    finally:
        ray_once.stop()
    return LaunchSummary(name=sweep.name, results=results, counts=counts, metric=sweep.search.metric,
                         mode=sweep.search.effective_mode, status=status,
                         wall_s=time.perf_counter() - started, dashboard_url=url,
                         protocol=protocol_of(results, sweep.name))


def protocol_of(results: Path, name: str) -> list[str]:
    """The protocol block of sweep ``name``'s recorded trials (their resolved configs), as lines."""
    from pldistill.results import read_trials
    from pldistill.results.protocol import protocol_lines, sweep_protocol

    return protocol_lines(sweep_protocol(read_trials(results, name).to_pylist()))


def trial_counts(store: Any) -> dict[str, int]:
    """How many of the sweep's trials are completed, pruned, failed and running (as ``status`` counts
    them, from the results table), and the ``total``."""
    from pldistill.results import read_trials
    from pldistill.results.status import count_statuses

    has_rows = store.sweep_dir.joinpath("trials").is_dir()
    statuses = read_trials(store.root, store.sweep).column("status").to_pylist() if has_rows else []
    return {**count_statuses(statuses), "total": len(statuses)}


def sweep_meta(sweep: Any, sweep_path: Path, earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """``sweep.json`` as a run starts or resumes (``earlier``: the interrupted run's): the resolved
    config, metric and mode, and the distributions Tune samples (``space``), which the report reads."""
    from pldistill import __version__
    from pldistill.results import git_commit
    from pldistill.sweep.space import param_specs

    return {**(earlier or {}), "name": sweep.name, "sweep_file": str(Path(sweep_path).resolve()),
            "config": sweep.model_dump(mode="json"), "status": "running",
            "started_at": (earlier or {}).get("started_at") or datetime.now(timezone.utc).isoformat(),
            "pldistill_version": __version__, "git_commit": git_commit(),
            "metric": sweep.search.metric, "mode": sweep.search.effective_mode,
            "space": [spec.to_json() for spec in param_specs(sweep)]}


def _tuner(sweep: Any, search: Any, results: Path, opts: LaunchOptions, console, resume: bool):
    """A new Tuner, or the restored one of an interrupted run, with this process's callbacks."""
    from ray import tune

    from pldistill.sweep.driver import runs_in_process, trial_driver, trial_max_failures, trial_resources
    from pldistill.sweep.progress import SweepProgress
    from pldistill.sweep.reaper import PlacementGroupReaper
    from pldistill.sweep.recorder import DiskFullGuard, TrialRecorder
    from pldistill.sweep.resume import experiment_dir, repair_lost_checkpoints, tune_trials
    from pldistill.sweep.tracking import tracking_callbacks

    # Snapshots follow trial checkpoints (_checkpoint_config); the epochs of a small sweep come
    # seconds apart, which Tune would warn about at every snapshot. Read when the Tuner runs.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's newer console output prints its start block even at verbose=0: the experiment table, the
    # staging path and a TensorBoard hint into Ray's temp folder. The progress and summary here say what
    # matters (results folder included); the older engine at verbose=0 prints nothing.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    recorder = TrialRecorder(sweep, results)
    progress = SweepProgress(search.num_samples_total, search.metric, search.mode, console=console,
                             enabled=opts.progress)
    say = console.print if console is not None else print
    # MLflow and TensorBoard, where the sweep file asks for them; each says so if it fails, and stops
    callbacks = [recorder, PlacementGroupReaper(), progress, DiskFullGuard(results), *tracking_callbacks(sweep, say)]
    trainable = tune.with_resources(tune.with_parameters(trial_driver, sweep=sweep), trial_resources(sweep.resources))
    if resume:
        for repair in repair_lost_checkpoints(tune_trials(results, sweep.name)):  # before Tune reads them
            say(f"sweep {sweep.name}: {repair.describe()}")
        # Searcher (Optuna's study) and scheduler come back from Tune's snapshot; finished trials stay
        # finished, unfinished ones continue from their last checkpoint, failed ones stay failed.
        tuner = tune.Tuner.restore(str(experiment_dir(results, sweep.name)), trainable,
                                   resume_unfinished=True, resume_errored=False, restart_errored=False)
        # The callbacks pickled with the first run are replaced by this process's own (private API,
        # Ray 2.60: the run config is restored from tuner.pkl and cannot be passed to restore()).
        tuner._local_tuner.get_run_config().callbacks = callbacks
        return tuner, recorder, progress
    in_process = runs_in_process(sweep.resources)
    tuner = tune.Tuner(
        trainable,
        param_space=search.param_space,
        # The search algorithm (ConcurrencyLimiter / BasicVariantGenerator) holds the concurrency limit.
        # In-process trials reuse the trial processes: the next trial skips the process start and the
        # imports, and finds what the last one cached (features, teacher encoder, tokenizer).
        tune_config=tune.TuneConfig(**search.tune_config_kwargs(), reuse_actors=in_process),
        run_config=tune.RunConfig(name=sweep.name, storage_path=str(results / sweep.name / "ray-tune"),
                                  failure_config=tune.FailureConfig(max_failures=trial_max_failures(sweep),
                                                                    fail_fast=False),
                                  checkpoint_config=_checkpoint_config(),
                                  callbacks=callbacks, verbose=0),
    )
    return tuner, recorder, progress


def _checkpoint_config() -> Any:
    """Tune's checkpoint policy. In-process trials checkpoint through Tune (a Ray Train run keeps its
    own; its driver reports none to Tune). ``num_to_keep=1`` also makes Tune snapshot the experiment
    after every trial checkpoint (``sync_every_n_trial_checkpoints`` is ``num_to_keep``), so a killed
    launcher resumes each trial from its last epoch, as Ray Train's own snapshot does. Tune deletes the
    old checkpoint before that snapshot is written; a resume repairs what a kill in between leaves
    (:func:`~pldistill.sweep.resume.repair_lost_checkpoints`)."""
    from ray import tune

    return tune.CheckpointConfig(num_to_keep=1)


def _reconcile(store: Any, recorder: Any, say, when: str | None, expected: int) -> bool:
    """Bring the results table in line with Tune's snapshot; True when all ``expected`` trials have finished."""
    from pldistill.sweep.resume import reconcile, tune_trials

    trials = tune_trials(store.root, store.sweep)
    changes = reconcile(store, recorder, trials)
    for path, dest, why in changes["set_aside"]:
        say(f"sweep {store.sweep}: {path} is unreadable ({why}); moved to {dest}, its trial recorded again")
    if when is not None:
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        say(f"{when} sweep {store.sweep}: {done} of {len(trials)} known trials finished"
            + (f"; removed {changes['removed']} row(s) of trials Tune had not recorded" if changes["removed"] else ""))
    return len(trials) >= expected and all(t.status in ("TERMINATED", "ERROR") for t in trials)
