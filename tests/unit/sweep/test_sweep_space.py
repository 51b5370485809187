"""Search spaces as Ray Tune objects (built, never run: no Ray cluster starts here) and trial resolution."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pldistill.config import ModelConfig, TrainConfig, TrialConfig
from pldistill.errors import InputError
from pldistill.sweep import HPARAM_NAMES, SweepConfig, load_sweep
from pldistill.sweep.space import (
    VARIANT_KEY,
    build_tune_search,
    hparams_of,
    param_specs,
    resolve_trial_config,
    variant_name,
)

ray = pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")
from ray.tune.schedulers import ASHAScheduler  # noqa: E402
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402
from ray.tune.search.variant_generator import generate_variants  # noqa: E402

REPO = Path(__file__).resolve().parents[3]

SPACE = """\
name: sp
base:
  train: {epochs: 4}
fixed: {objective: pl_distill, lora_alpha: 64}
search:
  algorithm: %s
  num_samples: 8
  max_concurrent_trials: 2
  seed: %d
  scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
  space:
    alpha: {type: uniform, low: 0.0, high: 2.0}
    temperature: {type: loguniform, low: 0.5, high: 8.0}
    lora_rank: {type: int, low: 2, high: 16, log: true}
    sharpen_p: {type: uniform, low: 1.0, high: 3.0}
    warmup_ratio: {type: choice, values: [0.0, 0.1]}
    lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
    weighting: {type: choice, values: [uniform, attention_last, attention_layers, attention_sharpened]}
    cka_estimator: {type: choice, values: [biased, debiased]}
    llava_kd_relation: {type: uniform, low: 0.5, high: 1.5}
    lora_dropout: {type: uniform, low: 0.0, high: 0.2}
    weight_decay: {type: loguniform, low: 1.0e-6, high: 1.0e-2}
    gamma: {type: uniform, low: 0.0, high: 1.0}
    beta: {type: uniform, low: 0.0, high: 1.0}
"""

GRID = """\
name: gr
fixed: {alpha: 1.0}
search:
  algorithm: grid
  num_samples: %d
  grid:
    lora_rank: [4, 8, 16]
  variants:
    - {name: ldist, objective: ldist}
    - {name: cka, objective: pl_distill, weighting: uniform}
"""


def sweep_from(tmp_path: Path, text: str) -> SweepConfig:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text))
    return load_sweep(path, cwd=tmp_path)


def in_domain(sweep: SweepConfig, config: dict[str, Any]) -> None:
    assert set(config) == set(sweep.search.space)
    for name, value in config.items():
        d = sweep.search.space[name]
        if d.type == "choice":
            assert value in d.values, name
        else:
            assert d.low <= value <= d.high, (name, value)
            assert isinstance(value, int) == (d.type == "int"), name


def optuna_suggestions(sweep: SweepConfig, n: int) -> list[dict[str, Any]]:
    """Drive the searcher as Tune does: properties first, then suggest / complete one trial at a time."""
    ts = build_tune_search(sweep)
    alg = ts.search_alg
    assert alg.set_search_properties(ts.metric, ts.mode, ts.param_space)
    out = []
    for i in range(n):
        config = alg.suggest(f"t{i}")
        assert config is not None
        out.append(config)
        alg.on_trial_complete(f"t{i}", {ts.metric: float(config["alpha"]), "training_iteration": 1})
    return out


def test_optuna_searcher_is_seeded_tpe_behind_a_concurrency_limiter(tmp_path: Path) -> None:
    sweep = sweep_from(tmp_path, SPACE % ("optuna", 3))
    ts = build_tune_search(sweep)
    assert isinstance(ts.search_alg, ConcurrencyLimiter) and ts.search_alg.max_concurrent == 2
    assert isinstance(ts.search_alg.searcher, OptunaSearch)
    assert (ts.num_samples, ts.num_samples_total, ts.metric, ts.mode) == (8, 8, "val_ua", "max")
    kwargs = ts.tune_config_kwargs()
    assert "max_concurrent_trials" not in kwargs, "the limiter holds it; Tune would warn or raise on both"
    assert kwargs["search_alg"] is ts.search_alg and kwargs["metric"] == "val_ua"
    ray.tune.TuneConfig(**kwargs)  # accepted as is
    assert ts.search_alg.set_search_properties(ts.metric, ts.mode, ts.param_space)
    sampler = ts.search_alg.searcher._ot_study.sampler
    assert isinstance(sampler, optuna.samplers.TPESampler)


def test_optuna_space_converts_to_exact_distributions(tmp_path: Path) -> None:
    sweep = sweep_from(tmp_path, SPACE % ("optuna", 0))
    dists = OptunaSearch.convert_search_space(build_tune_search(sweep).param_space)
    D = optuna.distributions
    assert dists["alpha"] == D.FloatDistribution(0.0, 2.0)
    assert dists["temperature"] == D.FloatDistribution(0.5, 8.0, log=True)
    assert dists["lora_rank"] == D.IntDistribution(2, 16, log=True), "int bounds are inclusive"
    assert dists["weighting"] == D.CategoricalDistribution(
        ("uniform", "attention_last", "attention_layers", "attention_sharpened"))


@pytest.mark.parametrize("algorithm", ["optuna", "random"])
def test_the_recorded_space_is_what_optuna_samples(tmp_path: Path, algorithm: str) -> None:
    """One translator: the specs the launch writes to sweep.json, read back by the report, are the
    distributions Optuna builds from Tune's param_space."""
    from pldistill.results import validate_sweep_meta
    from pldistill.results.space import searched_params
    from pldistill.sweep.launch import sweep_meta

    text = SPACE.replace("{type: int, low: 2, high: 16, log: true}", "{type: int, low: 4, high: 16, step: 4}")
    sweep = sweep_from(tmp_path, text % (algorithm, 0))
    meta = validate_sweep_meta(json.loads(json.dumps(sweep_meta(sweep, tmp_path / "s.yaml"))))
    specs, source = searched_params(meta, [])
    assert "launch" in source and [p.name for p in specs] == list(sweep.search.space)
    dists = OptunaSearch.convert_search_space(build_tune_search(sweep).param_space)
    assert {p.name: p.distribution() for p in specs} == dists
    assert {p.name: (p.kind, p.log, p.step) for p in specs}["lora_rank"] == ("int", False, 4)
    assert meta["mode"] == "max" and meta["metric"] == "val_ua"


def test_grid_specs_cover_axes_and_what_variants_set_differently(tmp_path: Path) -> None:
    from pldistill.results.space import ParamSpec

    specs = param_specs(sweep_from(tmp_path, GRID % 1))
    assert specs == [ParamSpec("lora_rank", "categorical", choices=[4, 8, 16]),
                     ParamSpec("objective", "categorical", choices=["ldist", "pl_distill"]),
                     # the ldist variant leaves weighting out: it runs with the default
                     ParamSpec("weighting", "categorical", choices=["attention_last", "uniform"])]


@pytest.mark.parametrize(("domain", "dist", "values"), [
    ("{type: int, low: 4, high: 16, step: 4}", {"step": 4}, {4, 8, 12, 16}),
    ("{type: int, low: 1, high: 3}", {}, {1, 2, 3}),
])
def test_int_bounds_are_inclusive_for_optuna_and_random(
        tmp_path: Path, domain: str, dist: dict[str, Any], values: set[int]) -> None:
    text = SPACE.replace("{type: int, low: 2, high: 16, log: true}", domain)
    sweep = sweep_from(tmp_path, text % ("optuna", 0))
    converted = OptunaSearch.convert_search_space(build_tune_search(sweep).param_space)["lora_rank"]
    assert converted == optuna.distributions.IntDistribution(min(values), max(values), **dist)
    drawn = {c["lora_rank"] for c in _random_configs(sweep_from(tmp_path, text % ("random", 0)), tmp_path, 60)}
    assert drawn == values


def test_optuna_suggestions_lie_in_domains_and_repeat_per_seed(tmp_path: Path) -> None:
    sweep = sweep_from(tmp_path, SPACE % ("optuna", 7))
    first = optuna_suggestions(sweep, 4)
    for config in first:
        in_domain(sweep, config)
    assert optuna_suggestions(sweep, 4) == first
    assert optuna_suggestions(sweep_from(tmp_path, SPACE % ("optuna", 8)), 4) != first


def test_concurrency_limit_holds_back_suggestions(tmp_path: Path) -> None:
    ts = build_tune_search(sweep_from(tmp_path, SPACE % ("optuna", 0)))
    ts.search_alg.set_search_properties(ts.metric, ts.mode, ts.param_space)
    assert ts.search_alg.suggest("a") and ts.search_alg.suggest("b")
    assert ts.search_alg.suggest("c") is None


def test_shipped_smoke_suggests(tmp_path: Path) -> None:
    sweep = load_sweep(REPO / "sweeps/smoke.yaml")
    for config in optuna_suggestions(sweep, 3):
        in_domain(sweep, config)
        trial = resolve_trial_config(sweep, config, trial_id="x")
        assert trial.hparams.objective == "pl_distill"


def _random_configs(sweep: SweepConfig, storage: Path, n: int | None = None) -> list[dict[str, Any]]:
    """The configs the random/grid search hands out for ``n`` samples, drawn as Tune draws them."""
    from ray.tune.experiment import Experiment

    ts = build_tune_search(sweep)
    exp = Experiment(sweep.name, run=lambda config: None, config=ts.param_space,
                     num_samples=n or ts.num_samples, storage_path=str(storage / "tune"))
    ts.search_alg.add_configurations([exp])
    configs = []
    while (trial := ts.search_alg.next_trial()) is not None:  # one at a time: max_concurrent_trials
        configs.append(trial.config)
        ts.search_alg.on_trial_complete(trial.trial_id)
    assert len(configs) == ts.search_alg.total_samples
    return configs


def test_random_uses_tune_domains_and_a_seeded_generator(tmp_path: Path) -> None:
    sweep = sweep_from(tmp_path, SPACE % ("random", 5))
    ts = build_tune_search(sweep)
    assert isinstance(ts.search_alg, BasicVariantGenerator) and ts.search_alg.max_concurrent == 2
    assert isinstance(ts.param_space["alpha"], ray.tune.search.sample.Float)
    configs = _random_configs(sweep, tmp_path, 30)
    assert len(configs) == 30
    for config in configs:
        in_domain(sweep, config)
    assert {c["lora_rank"] for c in configs} <= set(range(2, 17))
    assert _random_configs(sweep, tmp_path, 30) == configs
    assert _random_configs(sweep_from(tmp_path, SPACE % ("random", 6)), tmp_path, 30) != configs
    assert not ray.is_initialized()


@pytest.mark.parametrize("repeats", [1])  # more repeats of one seed are refused (test_sweep_load)
def test_grid_expands_to_the_product_of_axes(tmp_path: Path, repeats: int) -> None:
    sweep = sweep_from(tmp_path, GRID % repeats)
    ts = build_tune_search(sweep)
    assert ts.search_alg.max_concurrent == 1 and ts.num_samples == repeats
    assert ts.num_samples_total == 6 * repeats
    points = [cfg for _, cfg in generate_variants(ts.param_space)]
    assert len(points) == 3 * 2
    assert len(_random_configs(sweep, tmp_path)) == sweep.trial_count() == 3 * 2 * repeats
    assert {(p["lora_rank"], p[VARIANT_KEY]["name"]) for p in points} == {
        (r, v) for r in (4, 8, 16) for v in ("ldist", "cka")}
    assert sweep.trial_count() == len(points) * repeats
    assert {variant_name(p) for p in points} == {"ldist", "cka"}


@pytest.mark.parametrize("name", ["ablation_weighting_grid", "baselines_grid"])
def test_shipped_grids_expand_to_their_variants(name: str) -> None:
    sweep = load_sweep(REPO / f"sweeps/{name}.yaml")
    points = [cfg for _, cfg in generate_variants(build_tune_search(sweep).param_space)]
    assert len(points) == sweep.trial_count() == len(sweep.search.variants) == 5
    for p in points:
        trial = resolve_trial_config(sweep, p, trial_id=p[VARIANT_KEY]["name"])
        assert trial.hparams.objective == p[VARIANT_KEY]["objective"]
        assert trial.hparams.alpha == 1.0 and trial.hparams.beta == 0.8 and trial.hparams.temperature == 2.0


def test_grid_is_never_handed_to_optuna(tmp_path: Path) -> None:
    ts = build_tune_search(sweep_from(tmp_path, GRID % 1))
    assert not isinstance(ts.search_alg, ConcurrencyLimiter)
    with pytest.raises(ValueError, match="Grid search"):
        OptunaSearch.convert_search_space(ts.param_space)


def test_asha_takes_metric_and_mode_from_tune(tmp_path: Path) -> None:
    ts = build_tune_search(sweep_from(tmp_path, SPACE % ("optuna", 0)))
    asha = ts.scheduler
    assert isinstance(asha, ASHAScheduler)
    assert asha.metric is None, "built without metric so TuneConfig(metric=...) is accepted"
    assert asha.set_search_properties(ts.metric, ts.mode)  # what Tune does with TuneConfig's metric/mode
    assert (asha.metric, asha._mode, asha._time_attr) == ("val_ua", "max", "training_iteration")
    assert asha._max_t == 4, "max_t defaults to base.train.epochs"
    assert [milestone for milestone, _ in asha._brackets[0]._rungs] == [4, 2, 1]
    loss = SPACE.replace("num_samples: 8", "num_samples: 8\n  metric: val_loss") % ("optuna", 0)
    ts = build_tune_search(sweep_from(tmp_path, loss))
    assert ts.scheduler.set_search_properties(ts.metric, ts.mode) and ts.scheduler._mode == "min"
    assert build_tune_search(sweep_from(tmp_path, GRID % 1)).scheduler is None


def test_resolve_trial_config_merges_base_fixed_and_sampled(tmp_path: Path) -> None:
    sweep = sweep_from(tmp_path, SPACE % ("optuna", 0))
    trial = resolve_trial_config(sweep, {"alpha": 0.25, "lora_rank": 4, "weighting": "uniform"}, trial_id="ab_00001")
    assert isinstance(trial, TrialConfig) and trial.name == "ab_00001"
    h = trial.hparams
    assert (h.alpha, h.lora_rank, h.weighting) == (0.25, 4, "uniform")
    assert (h.objective, h.lora_alpha) == ("pl_distill", 64), "fixed values"
    assert h.beta == 0.8, "defaults for names neither fixed nor sampled"
    assert trial.train.epochs == 4
    assert trial.output_dir == tmp_path / "results" / "sp" / "runs" / "ab_00001"
    trial.train.epochs = 9
    assert sweep.base.train.epochs == 4, "trials get copies of base"


def test_resolve_trial_config_applies_variant_overrides(tmp_path: Path) -> None:
    sweep = sweep_from(tmp_path, GRID % 1)
    variant = {"name": "cka", "objective": "pl_distill", "weighting": "uniform"}
    trial = resolve_trial_config(sweep, {"lora_rank": 16, VARIANT_KEY: variant}, trial_id="t1")
    assert (trial.hparams.lora_rank, trial.hparams.objective, trial.hparams.weighting) == (16, "pl_distill", "uniform")
    assert trial.hparams.alpha == 1.0
    by_name = resolve_trial_config(sweep, {"lora_rank": 16, VARIANT_KEY: "cka"}, trial_id="t1")
    assert by_name == trial


def test_resolve_trial_config_refuses_bad_input(tmp_path: Path) -> None:
    sweep = sweep_from(tmp_path, GRID % 1)
    with pytest.raises(ValueError, match="not hyperparameters: alfa"):
        resolve_trial_config(sweep, {"alfa": 1}, trial_id="t")
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        resolve_trial_config(sweep, {VARIANT_KEY: "nope"}, trial_id="t")
    with pytest.raises(ValueError, match="trial_id"):
        resolve_trial_config(sweep, {}, trial_id="../x")
    with pytest.raises(InputError, match="trial t: hparams.temperature"):
        resolve_trial_config(sweep, {"temperature": 0.0}, trial_id="t")


@pytest.mark.parametrize(("model", "mode"), [("", "cached"), (", teacher_mode: online", "online")])
def test_trials_get_plain_configs_with_the_sweeps_defaults(tmp_path: Path, model: str, mode: str) -> None:
    text = GRID.replace("fixed: {alpha: 1.0}", f"base: {{model: {{teacher: tiny{model}}}}}\nfixed: {{alpha: 1.0}}")
    sweep = sweep_from(tmp_path, text % 1 + "resources: {workers_per_trial: 2, parallelism: fsdp}\n")
    trial = resolve_trial_config(sweep, {"lora_rank": 8}, trial_id="t")
    assert type(trial.model) is ModelConfig and type(trial.train) is TrainConfig
    assert trial.model.teacher_mode == mode and trial.train.parallelism == "fsdp"
    assert TrialConfig.model_validate_json(trial.to_json()) == trial, "what the worker reads back"


def test_hparams_of_is_flat_and_complete(tmp_path: Path) -> None:
    trial = resolve_trial_config(sweep_from(tmp_path, GRID % 1), {"lora_rank": 8}, trial_id="t")
    hp = hparams_of(trial)
    assert list(hp) == list(HPARAM_NAMES)
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in hp.values())
    assert hp["lora_rank"] == 8 and hp["alpha"] == 1.0 and math.isclose(hp["beta"], 0.8)


def test_no_ray_cluster_was_started() -> None:
    assert not ray.is_initialized()


def test_tuning_budget_draws_every_method_over_its_own_space(tmp_path: Path) -> None:
    """``tuning_budget.yaml``: random draws of (method, hyperparameters), each method about a third of
    the trials, and every draw a valid trial of that method with the fixed AwCKA weighting."""
    sweep = load_sweep(REPO / "sweeps/tuning_budget.yaml")
    assert sweep.search.algorithm == "random" and sweep.search.scheduler is None  # whole trials: draws
    configs = _random_configs(sweep, tmp_path)
    counts = {o: sum(c["objective"] == o for c in configs) for o in ("sft", "forward_kl", "pl_distill")}
    assert sum(counts.values()) == len(configs) == 120 and min(counts.values()) >= 30, counts
    for i, cfg in enumerate(configs[:12]):
        trial = resolve_trial_config(sweep, cfg, trial_id=f"t{i}")
        assert trial.hparams.objective == cfg["objective"] and trial.hparams.weighting == "attention_last"
        assert 2 <= trial.hparams.lora_rank <= 32 and 2e-4 <= trial.hparams.lr <= 5e-3
    assert len({c["lr"] for c in configs}) == len(configs)  # independent draws, not a grid


CAAD_BETA = """\
name: cb
fixed: {%s}
search:
  algorithm: grid
  variants:
    - {name: pl, objective: pl_distill}
    - {name: caad, objective: caad}
    - {name: caad_audio, objective: caad, beta: 0.5}
"""


def test_caad_leaves_out_the_audio_logit_term_unless_beta_is_set(tmp_path: Path) -> None:
    """beta's default is the objective's: 0 for caad (CAAD has no audio-logit KL), 0.8 (eq. 8) else; a
    beta set in the file, fixed or per variant, wins."""
    from pldistill.config import Hyperparameters
    from pldistill.losses import build_objective
    from pldistill.results.space import ParamSpec

    assert Hyperparameters(objective="caad").beta == 0.0 and Hyperparameters().beta == 0.8
    assert Hyperparameters(objective="caad", beta=0.3).beta == 0.3
    hp = Hyperparameters(objective="caad")
    hp.objective = "ldist"
    assert hp.beta == 0.8  # an unset beta follows the objective
    assert build_objective("caad", Hyperparameters(objective="caad").model_dump()).weights["kl_audio"] == 0.0
    sweep = sweep_from(tmp_path, CAAD_BETA % "alpha: 1.0")
    betas = [resolve_trial_config(sweep, {"variant": v.name}, trial_id=v.name).hparams.beta
             for v in sweep.search.variants]
    assert betas == [0.8, 0.0, 0.5]
    assert ParamSpec("beta", "categorical", choices=[0.8, 0.0, 0.5]) in param_specs(sweep)
    fixed = sweep_from(tmp_path, (CAAD_BETA % "beta: 0.2").split("    - {name: caad_audio")[0])
    assert [resolve_trial_config(fixed, {"variant": v.name}, trial_id=v.name).hparams.beta
            for v in fixed.search.variants] == [0.2, 0.2]
