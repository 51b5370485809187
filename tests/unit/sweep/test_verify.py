"""``pldistill-sweep verify``: a recorded run rerun on clean caches gives the recorded predictions hash;
a changed record does not; two sweeps' environments and runs side by side (``--against``)."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _corpus import SMALL_CORPUS

import pldistill.cli.verify  # noqa: F401  (registers the command)
from pldistill.cli._app import run_app
from pldistill.config import TrialConfig
from pldistill.results import FoldMetrics, ResultsStore, TrialRecord
from pldistill.sweep.verify import compare_sweeps, env_differences, flatten, run_key

SWEEP, TRIAL = "toy", "t0"


def _tiny(out: Path, cache: str | Path, name: str = TRIAL, **hparams: object) -> TrialConfig:
    """One fold, two seeds, one short epoch; the teacher is not fine-tuned (the rerun rebuilds every
    artifact, and a fine-tune is minutes on a busy machine); one torch thread pinned, as sweeps pin it."""
    return TrialConfig.model_validate({
        "name": name, "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 1, "max_steps_per_epoch": 6,
                  "seeds": [0, 1]},
        "model": {"teacher_finetune": {"enabled": False}},
        "hparams": {"objective": "sft", "lora_rank": 4, **hparams}, "output_dir": str(out), "cache_dir": str(cache)})


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny_cache) -> Path:
    """A results folder with sweep ``toy``: one trial trained for real and recorded as the sweep's
    recorder records it, with the environment ``launch`` writes into ``sweep.json``."""
    from pldistill.prepare import prepare_trial
    from pldistill.sweep.environment import environment
    from pldistill.train.trial import run_trial

    results = tmp_path_factory.mktemp("results")
    cfg = _tiny(results / SWEEP / "runs" / TRIAL, tiny_cache)
    result = run_trial(prepare_trial(cfg))
    store = ResultsStore(results, SWEEP)
    # taken after the run (launch takes it before its trials): the run set this process's torch threads,
    # and the tests' verify runs in this process, so "as recorded" is what this machine should say
    store.write_sweep_meta({"metric": "val_ua", "mode": "max", "environment": environment(cfg)})
    store.write_trial(TrialRecord.from_result(asdict(result), trial_id=TRIAL, status="completed", objective="sft",
                                              dataset="synthetic", config_json=cfg.to_json(), num_workers=1))
    return results


def _copy(recorded: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(recorded, tmp_path / "results"))


def _row(results: Path) -> dict:
    return pq.read_table(ResultsStore(results, SWEEP).trial_path(TRIAL)).to_pylist()[0]


def _rewrite(results: Path, **changes: object) -> None:
    ResultsStore(results, SWEEP).write_trial({**_row(results), **changes})


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = run_app(["verify", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_rerun_on_clean_caches_gives_the_recorded_hash(recorded, tiny_cache, tmp_path, capsys, monkeypatch):
    import tempfile

    import pldistill.train.trial as trial_module

    seen: list[TrialConfig] = []
    real = trial_module.run_trial
    monkeypatch.setattr(trial_module, "run_trial", lambda cfg, *a, **k: (seen.append(cfg), real(cfg, *a, **k))[1])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    recorded_hash = next(f["predictions_sha256"] for f in _row(recorded)["fold_metrics"] if f["seed"] == 1)

    rc, out, err = _run(capsys, SWEEP, "--results", str(recorded), "--seed", "1")

    assert rc == 0, out + err
    assert "verdict: identical" in out and f"rerun:    {recorded_hash}" in out
    assert "clean caches" in out and "caches reused" not in out
    # the one run asked for, from the recorded config, its artifacts built again in a fresh folder
    (cfg,) = seen
    assert cfg.train.seeds == [1] and cfg.data.folds == [1] and cfg.train.replicates is None
    assert cfg.cache_dir.parent.parent == scratch and cfg.cache_dir != Path(tiny_cache)
    assert cfg.hparams == _tiny(tmp_path, tiny_cache).hparams
    assert list(scratch.iterdir()) == []  # the temporary folder is gone
    assert "environment: as recorded" in out  # the same process, the same machine
    # the rebuilt teacher and prior are written and read back: the libraries' bars are not verify's words
    assert "Writing model shards" not in err and "Loading weights" not in err, err


def test_a_changed_hash_or_a_changed_config_differs(recorded, tiny_cache, tmp_path, capsys):
    results = _copy(recorded, tmp_path)
    row = _row(results)
    runs = [{**f, "predictions_sha256": "0" * 16} if f["seed"] == 0 else f for f in row["fold_metrics"]]
    _rewrite(results, fold_metrics=runs)

    meta = json.loads((results / SWEEP / "sweep.json").read_text())
    del meta["environment"]  # an older sweep
    (results / SWEEP / "sweep.json").write_text(json.dumps(meta))

    rc, out, _ = _run(capsys, SWEEP, "--results", str(results), "--cache-dir", tiny_cache)  # seed 0: the first run
    assert rc == 1 and "verdict: differs" in out and "recorded: 0000000000000000" in out
    assert "seed 0, fold 1" in out and f"caches reused from {tiny_cache}" in out
    assert "environment: the sweep recorded none" in out

    config = json.loads(row["config_json"])
    config["hparams"]["lr"] *= 10  # a field that changes the numbers, its recorded hash kept
    _rewrite(results, fold_metrics=row["fold_metrics"], config_json=json.dumps(config))
    rc, out, _ = _run(capsys, SWEEP, "--results", str(results), "--cache-dir", tiny_cache, "--seed", "1")
    assert rc == 1 and "verdict: differs" in out

    config["hparams"]["lr"] = 1e30  # a rerun whose loss diverges made no predictions: it differs too
    _rewrite(results, config_json=json.dumps(config))
    rc, out, err = _run(capsys, SWEEP, "--results", str(results), "--cache-dir", tiny_cache, "--seed", "1")
    assert rc == 1 and "rerun:    (no predictions: non-finite loss" in out and "verdict: differs" in out, out + err


# ---------------------------------------------------------------- bad input (nothing is rerun)


def _hand_built(root: Path, name: str, trials: list[TrialRecord], env: dict | None = None,
                metric: str = "val_ua") -> Path:
    store = ResultsStore(root, name)
    store.write_sweep_meta({"metric": metric, "mode": "max", **({"environment": env} if env is not None else {})})
    for t in trials:
        store.write_trial(t)
    return root / name


def _trial(trial_id: str, cfg: TrialConfig | None, runs: dict[tuple[int, int], str | None],
           val_ua: float = 0.5) -> TrialRecord:
    return TrialRecord(trial_id=trial_id, status="completed", val_ua=val_ua,
                       config_json=cfg.to_json() if cfg is not None else None,
                       fold_metrics=[FoldMetrics(fold=f, seed=s, val_ua=val_ua, predictions_sha256=h)
                                     for (s, f), h in runs.items()])


@pytest.mark.parametrize(("case", "argv", "where"), [
    ("no hash", [], "trials/t0.parquet: fold_metrics.predictions_sha256: not recorded for seed 0 fold 1"),
    ("no config", ["--trial", "t1"], "trials/t1.parquet: config_json: missing"),
    ("unknown trial", ["--trial", "nope"], "trial: unknown trial 'nope'"),
    ("no such run", ["--trial", "t1", "--fold", "3"], "fold_metrics: trial t1 has no run with fold 3"),
    ("unknown sweep", ["--trial", "t1"], "sweep: unknown sweep 'elsewhere'"),
    ("test metric", [], "sweep.json: metric: 'test_ua' is not a validation metric"),
    ("against and rerun", ["--against", "old", "--seed", "0"], "--against: reruns nothing: drop --seed"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, argv, where):
    cfg = _tiny(tmp_path / "out", tmp_path / "cache")
    trials = [_trial("t0", cfg, {(0, 1): None}, val_ua=0.9), _trial("t1", None, {(0, 1): "ab"})]
    _hand_built(tmp_path, "old", trials, metric="test_ua" if case == "test metric" else "val_ua")
    sweep = "elsewhere" if case == "unknown sweep" else "old"
    rc, out, err = _run(capsys, sweep, "--results", str(tmp_path), *argv)
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    assert where in err and "Traceback" not in err


# ---------------------------------------------------------------- environments and --against


def test_flatten_and_environment_differences():
    nested = {"libraries": {"torch": "2.5", "numpy": "2.1"}, "cpu": {"isa": "AVX2", "cores": 2}, "gpu": [],
              "keys": {"folds": {"1": {"teacher": "t1"}}}}
    assert flatten(nested) == {"libraries.torch": "2.5", "libraries.numpy": "2.1", "cpu.isa": "AVX2",
                               "cpu.cores": 2, "gpu": [], "keys.folds.1.teacher": "t1"}
    other = {**nested, "libraries": {"torch": "2.6", "numpy": "2.1"}, "cpu": {"isa": "AVX512", "cores": 2},
             "gpu": ["H100"], "keys": {}}
    assert env_differences(nested, other) == [
        ("cpu.isa", "AVX2", "AVX512"), ("gpu", [], ["H100"]), ("keys", None, {}),
        ("keys.folds.1.teacher", "t1", None), ("libraries.torch", "2.5", "2.6")]
    assert env_differences(nested, json.loads(json.dumps(nested))) == []


def test_a_rerun_is_set_beside_its_own_folds_keys_only():
    from pldistill.sweep.verify import _this_fold

    env = {"cpu": {"isa": "AVX2"}, "keys": {"corpus": "synthetic-1", "folds": {"1": {"teacher": "a"},
                                                                            "2": {"teacher": "b"}}}}
    assert _this_fold(env, 2) == {"cpu": {"isa": "AVX2"}, "keys": {"corpus": "synthetic-1",
                                                                   "folds": {"2": {"teacher": "b"}}}}
    assert _this_fold({"cpu": {}}, 2) == {"cpu": {}}


def test_a_run_key_ignores_where_a_trial_wrote_and_which_runs_it_made(tmp_path):
    one = _tiny(tmp_path / "a", tmp_path / "c1", name="a")
    moved = _tiny(tmp_path / "b", tmp_path / "c2", name="b").model_copy(
        update={"train": one.train.model_copy(update={"seeds": [0, 1, 2]})})
    assert run_key(one.to_json()) == run_key(moved.to_json())
    assert run_key(one.to_json()) != run_key(_tiny(tmp_path / "a", tmp_path / "c1", name="a", lr=5e-3).to_json())
    threads = one.model_copy(update={"train": one.train.model_copy(update={"num_threads": 2})})
    assert run_key(one.to_json()) != run_key(threads.to_json())  # the thread count changes the numbers


def test_against_lists_environment_differences_and_runs_matched_by_config(tmp_path, capsys):
    env = {"libraries": {"torch": "2.5"}, "cpu": {"isa": "AVX2"}, "torch_threads": {"intra_op": 2}}
    same, other = _tiny(tmp_path / "x", tmp_path / "c"), _tiny(tmp_path / "x", tmp_path / "c", lr=5e-3)
    _hand_built(tmp_path / "here", "new", [
        _trial("a1", same, {(0, 1): "h01", (0, 2): "h02", (1, 1): "h11"}),
        _trial("a2", other, {(0, 1): "z01"})], env=env)
    moved = _tiny(tmp_path / "elsewhere", tmp_path / "c9", name="b7")  # another id, folder and cache: same runs
    folder = _hand_built(tmp_path / "there", "old", [
        _trial("b7", moved, {(0, 1): "h01", (0, 2): "CHANGED", (1, 1): None, (2, 1): "h21"})],
        env={**env, "libraries": {"torch": "2.6"}, "cpu": {"isa": "AVX512", "model": "Xeon"}})

    got = compare_sweeps(tmp_path / "here", "new", str(folder))
    assert got.environment == [("cpu.isa", "AVX2", "AVX512"), ("cpu.model", None, "Xeon"),
                               ("libraries.torch", "2.5", "2.6")]
    assert [(r.trial, r.other_trial, r.seed, r.fold, r.verdict) for r in got.runs] == [
        ("a1", "b7", 0, 1, "equal"), ("a1", "b7", 0, 2, "different"), ("a1", "b7", 1, 1, "no hash")]
    assert (got.only_here, got.only_other) == (1, 1)  # a2's run; b7's seed 2

    rc, out, err = _run(capsys, "new", "--results", str(tmp_path / "here"), "--against", str(folder))
    assert rc == 0, err
    assert "cpu.isa" in out and "AVX512" in out and "CHANGED" in out
    assert out.rstrip().endswith(f"3 runs in both: 1 equal, 1 different, 1 without a hash; 1 only in new, "
                                 f"1 only in {folder}")


def test_against_a_sweep_without_an_environment_says_so(tmp_path, capsys):
    cfg = _tiny(tmp_path / "x", tmp_path / "c")
    _hand_built(tmp_path, "new", [_trial("a1", cfg, {(0, 1): "h"})], env={"python": "3.11"})
    _hand_built(tmp_path, "old", [_trial("b1", cfg, {(0, 1): "h"})])
    rc, out, _ = _run(capsys, "new", "--results", str(tmp_path), "--against", "old")
    assert rc == 0 and "environment: not recorded by both sweeps" in out
    assert "1 runs in both: 1 equal, 0 different, 0 without a hash; 0 only in new, 0 only in old" in out
