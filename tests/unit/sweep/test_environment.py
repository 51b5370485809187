"""``sweep.json``'s ``environment``: what determines a sweep's numbers beyond its config."""

from __future__ import annotations

import json
import os
from importlib import metadata

import torch
from _corpus import SMALL_CORPUS

from pldistill.results import validate_sweep_meta
from pldistill.sweep.environment import environment


def test_the_environment_names_versions_threads_blas_and_cpu() -> None:
    env = json.loads(json.dumps(environment()))  # plain JSON, as sweep.json holds it
    assert env["libraries"]["torch"] == metadata.version("torch") and env["libraries"]["numpy"]
    assert env["torch_threads"]["intra_op"] == torch.get_num_threads()
    assert env["blas"]["torch"] and env["blas"]["numpy"]
    assert env["cpu"]["cores"] == os.cpu_count() and env["cpu"]["isa"] == torch.backends.cpu.get_cpu_capability()
    assert "keys" not in env
    assert validate_sweep_meta({"name": "s", "environment": env})["environment"] == env


def test_a_switch_of_the_blas_code_path_is_recorded_and_named_by_verify(monkeypatch) -> None:
    """MKL_CBWR alone changed a fine-tuned teacher by 2 points on one machine: verify must be able to say so."""
    from pldistill.sweep.environment import SWITCHES
    from pldistill.sweep.verify import env_differences

    for name in SWITCHES:  # CI sets MKL_NUM_THREADS, for one
        monkeypatch.delenv(name, raising=False)
    plain = json.loads(json.dumps(environment()))
    assert "switches" not in plain["blas"]  # none set: the record of before this key, unchanged
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    switched = json.loads(json.dumps(environment()))
    assert switched["blas"]["switches"] == {"MKL_CBWR": "COMPATIBLE"}
    assert env_differences(plain, switched) == [("blas.switches.MKL_CBWR", None, "COMPATIBLE")]


def test_the_keys_say_which_corpus_features_teacher_and_cache_a_run_read(tiny_cache) -> None:
    from pldistill.config import TrialConfig

    def cfg(seed: int) -> TrialConfig:
        return TrialConfig.model_validate({
            "cache_dir": tiny_cache, "model": {"init_seed": seed},
            "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS}})

    one, other = environment(cfg(0))["keys"], environment(cfg(1))["keys"]
    assert one["corpus"].startswith("synthetic-") and one["corpus"] == other["corpus"]
    assert one["folds"]["1"]["features"] == other["folds"]["1"]["features"]
    assert one["folds"]["1"]["teacher"] != other["folds"]["1"]["teacher"]  # another teacher's init
    assert one["folds"]["1"]["teacher_cache"] != other["folds"]["1"]["teacher_cache"]
