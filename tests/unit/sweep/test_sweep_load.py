"""Loading sweep files: the shipped ones validate; every kind of bad file names its file, key and line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import get_args

import pytest

from pldistill.errors import InputError
from pldistill.sweep import METRIC_NAMES, SearchConfig, SweepConfig, SweepFileError, load_sweep
from pldistill.sweep._yaml import shape_problems
from pldistill.sweep.resources import check_resources

REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted((REPO / "sweeps").glob("*.yaml"))

GOOD = """\
name: t
base:
  data: {source: synthetic, dataset: synthetic, folds: [1]}
  model: {teacher: tiny, student_llm: tiny}
  train: {epochs: 3, batch_size: 4, grad_accum: 2}
fixed:
  objective: pl_distill
search:
  algorithm: optuna
  num_samples: 4
  space:
    alpha: {type: uniform, low: 0.0, high: 2.0}
"""


VARIANTS = GOOD.replace("algorithm: optuna", "algorithm: grid").split("  num_samples:")[0] + (
    "  variants:\n    - {name: a, objective: ldist}\n")


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SweepFileError) as info:
        load_sweep(path)
    err = info.value
    assert isinstance(err, InputError)
    assert str(err) == "\n".join(err.problems)
    return err.problems


def test_shipped_sweeps_are_the_four_named() -> None:
    assert {p.name for p in SHIPPED} >= {"smoke.yaml", "ablation_weighting_grid.yaml", "baselines_grid.yaml",
                                         "iemocap_tpe.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_sweep_validates(path: Path) -> None:
    sweep = load_sweep(path)
    assert sweep.name == path.stem
    assert path.read_text().startswith("# "), "each shipped file starts with a header comment"
    assert sweep.trial_count() >= 1


def test_shipped_contents() -> None:
    smoke = load_sweep(REPO / "sweeps/smoke.yaml")
    assert smoke.search.algorithm == "optuna" and smoke.search.num_samples == 6
    assert set(smoke.search.space) == {"alpha", "beta", "gamma", "temperature", "lora_rank", "weighting"}
    # the embedded default must fit the 2-core machines it is promised for
    assert check_resources(smoke, {"CPU": 2.0}) == []
    assert check_resources(smoke, {"CPU": 1.0}) != []
    assert smoke.base.data.source == "synthetic" and smoke.base.model.teacher == "tiny"
    ablation = load_sweep(REPO / "sweeps/ablation_weighting_grid.yaml")
    assert [v.overrides() for v in ablation.search.variants][:3] == [
        {"objective": "ldist"}, {"objective": "pl_distill", "weighting": "uniform"},
        {"objective": "pl_distill", "weighting": "attention_last"}]
    assert {v.overrides().get("weighting") for v in ablation.search.variants} >= {
        "attention_layers", "attention_sharpened"}
    baselines = load_sweep(REPO / "sweeps/baselines_grid.yaml")
    assert [v.overrides()["objective"] for v in baselines.search.variants] == [
        "sft", "forward_kl", "reverse_kl", "llava_kd", "pl_distill"]
    iemocap = load_sweep(REPO / "sweeps/iemocap_tpe.yaml")
    b = iemocap.base
    assert (b.data.source, b.data.dataset, b.data.folds) == ("emobox", "iemocap", [1])
    assert (b.train.batch_size, b.train.grad_accum, b.train.epochs) == (1, 16, 5)
    assert not b.model.teacher_finetune.enabled and b.model.dtype == "bfloat16"
    assert iemocap.fixed.lora_alpha == 256 and iemocap.resources.gpus_per_worker == 1
    assert iemocap.search.scheduler is not None and iemocap.resources.effective_backend == "nccl"


def test_good_file_loads_with_defaults(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, GOOD), cwd=tmp_path)
    assert sweep.fixed_values() == {"objective": "pl_distill"}
    assert sweep.fixed.beta == 0.8, "unset names keep the paper's defaults"
    assert (sweep.search.metric, sweep.search.mode, sweep.search.max_concurrent_trials) == (
        "val_ua", "max", 1)
    assert sweep.results == tmp_path / "results", "relative paths are resolved against the CWD"
    assert sweep.base.cache_dir.is_absolute()
    assert sweep.source == tmp_path / "s.yaml"
    assert sweep.summary() == "4 trials, algorithm optuna, space: alpha"
    assert sweep.resources.effective_backend == "gloo"


@pytest.mark.parametrize(("metric", "mode"), [("val_loss", "min"), ("test_loss", "min"), ("val_f1", "max")])
def test_mode_defaults_to_the_metrics_own(tmp_path: Path, metric: str, mode: str) -> None:
    allow = "\n  allow_test_selection: true" if metric.startswith("test_") else ""
    sweep = load_sweep(write(tmp_path, GOOD.replace("num_samples: 4", f"num_samples: 4\n  metric: {metric}{allow}")))
    assert sweep.search.mode == sweep.search.effective_mode == mode
    said = GOOD.replace("num_samples: 4", f"num_samples: 4\n  metric: {metric}\n  mode: max{allow}")
    assert load_sweep(write(tmp_path, said)).search.mode == "max", "a mode the file gives is kept"
    assert get_args(SearchConfig.model_fields["metric"].annotation) == METRIC_NAMES


def test_sweep_defaults_are_typed_and_survive_a_dump(tmp_path: Path) -> None:
    """teacher_mode defaults to cached in a sweep file; parallelism has one home, resources; the dump
    written to sweep.json validates back to the same sweep (what resume does)."""
    sweep = load_sweep(write(tmp_path, GOOD + "resources: {parallelism: fsdp}\n"))
    assert sweep.base.model.teacher_mode == "cached"
    online = load_sweep(write(tmp_path, GOOD.replace("student_llm: tiny}", "student_llm: tiny, teacher_mode: online}")))
    assert online.base.model.teacher_mode == "online"
    dump = sweep.model_dump(mode="json")
    assert "parallelism" not in dump["base"]["train"] and dump["resources"]["parallelism"] == "fsdp"
    assert dump["base"]["model"]["teacher_mode"] == "cached"
    assert SweepConfig.model_validate(dump).model_dump(mode="json") == dump


def test_grid_trial_count(tmp_path: Path) -> None:
    text = GOOD.replace("algorithm: optuna", "algorithm: grid").replace("num_samples: 4", "seeds: [0, 1]")
    text = text.split("  space:")[0] + (
        "  grid:\n    lora_rank: [4, 8, 16]\n"
        "  variants:\n    - {name: a, weighting: uniform}\n    - {name: b, weighting: attention_last}\n")
    sweep = load_sweep(write(tmp_path, text))
    assert sweep.trial_count() == 3 * 2  # a trial per grid point; each runs once per seed
    assert sweep.search.seeds == [0, 1]
    assert sweep.varied_names() == ["lora_rank", "weighting"]
    assert "grid: lora_rank(3), variant(a, b)" in sweep.summary()


BAD_CASES = {
    "malformed_yaml": ("name: t\nsearch: [\n", "line 3, column 1: malformed YAML"),
    "unknown_top_key": (GOOD + "colour: red\n", "colour: unknown key; valid keys: name, description, results"),
    "unknown_nested_key": (GOOD.replace("folds: [1]}", "folds: [1], fold: 2}"),
                           "base.data.fold: unknown key; did you mean 'folds'?"),
    "typo_in_fixed": (GOOD.replace("objective: pl_distill", "alpah: 1"), "fixed.alpah: unknown key; did you mean 'alpha'?"),
    "unknown_domain_key": (GOOD.replace("high: 2.0}", "high: 2.0, q: 1}"),
                           "search.space.alpha.q: unknown key; valid keys: type, low, high"),
    "unknown_metric": (GOOD.replace("num_samples: 4", "num_samples: 4\n  metric: val_acc"),
                       "search.metric: expected 'val_ua', 'val_wa', 'val_f1', 'val_loss', 'val_conflict_ua', 'test_ua'"),
    "wrong_type": (GOOD.replace("num_samples: 4", "num_samples: four"),
                   "search.num_samples: expected a valid integer"),
    "alpha_negative_in_fixed": (GOOD.replace("objective: pl_distill", "alpha: -1"), "fixed.alpha: expected >= 0, got -1"),
    "temperature_zero_in_domain": (GOOD.replace("alpha: {type: uniform, low: 0.0", "temperature: {type: uniform, low: 0.0"),
                                   "search.space.temperature.low: expected > 0, got 0.0"),
    "loguniform_low_zero": (GOOD.replace("type: uniform, low: 0.0", "type: loguniform, low: 0.0"),
                            "search.space.alpha.low: expected > 0"),
    "lora_rank_below_one": (GOOD.replace("alpha: {type: uniform, low: 0.0, high: 2.0}",
                                         "lora_rank: {type: int, low: 0, high: 8}"),
                            "search.space.lora_rank.low: expected >= 1, got 0"),
    "float_domain_on_int": (GOOD.replace("alpha: {type: uniform", "lora_rank: {type: uniform"),
                            "search.space.lora_rank.type: lora_rank takes int values: expected type int or choice"),
    "unknown_weighting_choice": (GOOD.replace("alpha: {type: uniform, low: 0.0, high: 2.0}",
                                              "weighting: {type: choice, values: [uniform, loud]}"),
                                 "search.space.weighting.values[1]: unknown weighting 'loud'"),
    "unknown_objective_choice": (GOOD.replace("objective: pl_distill", "alpha: 1").replace(
        "alpha: {type: uniform, low: 0.0, high: 2.0}", "objective: {type: choice, values: [sft, magic]}"),
        "search.space.objective.values[1]: unknown objective 'magic'"),
    "unknown_hyperparameter": (GOOD.replace("alpha: {type", "alfa: {type"),
                               "search.space.alfa: unknown hyperparameter; did you mean 'alpha'"),
    "unknown_domain_type": (GOOD.replace("type: uniform", "type: gaussian"),
                            "search.space.alpha: unknown domain type 'gaussian'"),
    "low_not_below_high": (GOOD.replace("high: 2.0", "high: 0.0"), "search.space.alpha: expected low < high"),
    "empty_space": (GOOD.split("  space:")[0] + "  space: {}\n",
                    "search.space: empty: algorithm optuna needs at least one sampled hyperparameter"),
    "fixed_and_searched": (GOOD.replace("objective: pl_distill", "alpha: 1.0"),
                           "search.space.alpha: also set under fixed"),
    "grid_with_optuna": (GOOD + "  grid: {lora_rank: [4, 8]}\n", "search.grid: only with algorithm grid, not optuna"),
    "grid_without_axes": (GOOD.replace("algorithm: optuna", "algorithm: grid").split("  space:")[0],
                          "search: algorithm grid needs search.grid or search.variants"),
    "missing_num_samples": (GOOD.replace("  num_samples: 4\n", ""), "search.num_samples: required for algorithm optuna"),
    "missing_search": ("name: t\n", "search: required key is missing"),
    "bad_name": (GOOD.replace("name: t", "name: My Sweep"), "name: String should match pattern"),
    "duplicate_key": (GOOD.replace("objective: pl_distill", "alpha: 1\n  alpha: 2"), "fixed.alpha: duplicate key"),
    "parallelism_under_train": (GOOD.replace("grad_accum: 2}", "grad_accum: 2, parallelism: fsdp}"),
                                "base.train.parallelism: a sweep file sets it once, as resources.parallelism"),
    "typo_under_train": (GOOD.replace("grad_accum: 2}", "grad_accum: 2, epoch: 2}"),
                         "base.train.epoch: unknown key; did you mean 'epochs'? (line 5)"),
    "nccl_on_cpu": (GOOD + "resources: {backend: nccl}\n", "resources.backend: nccl needs gpus_per_worker > 0"),
    "source_dataset_mismatch": (GOOD.replace("dataset: synthetic", "dataset: iemocap"),
                                "base: data.dataset must be 'synthetic'"),
    "emobox_without_manifests": (GOOD.replace("source: synthetic, dataset: synthetic", "source: emobox, dataset: iemocap"),
                                 "base.data.manifests: required when data.source is emobox"),
    "grace_period_above_epochs": (GOOD + "  scheduler: {type: asha, grace_period: 5}\n",
                                  "search.scheduler.grace_period: expected <= max_t (3), got 5"),
    "int_step_not_multiple": (GOOD.replace("alpha: {type: uniform, low: 0.0, high: 2.0}",
                                           "lora_rank: {type: int, low: 2, high: 16, step: 4}"),
                              "search.space.lora_rank: low and high must be multiples of step (4)"),
    "int_domain_on_float": (GOOD.replace("type: uniform, low: 0.0, high: 2.0", "type: int, low: 0, high: 2"),
                            "search.space.alpha.type: alpha takes float values: expected type uniform, loguniform"),
    "single_choice": (GOOD.replace("alpha: {type: uniform, low: 0.0, high: 2.0}", "weighting: {type: choice, values: [uniform]}"),
                      "search.space.weighting.values: List should have at least 2 items"),
    "variant_unknown_key": (VARIANTS + "    - {name: b, objectiv: sft}\n",
                            "search.variants[1].objectiv: unknown key; did you mean 'objective'?"),
    "variant_duplicate_name": (VARIANTS + "    - {name: a, objective: sft}\n",
                               "search.variants[1].name: duplicate variant name 'a'"),
    "variant_sets_fixed_name": (VARIANTS.replace("objective: ldist", "objective: sft"),
                                "search.variants[0].objective: also set under fixed"),
    "variant_sets_grid_axis": (VARIANTS.replace("objective: ldist", "lora_rank: 4") + "  grid: {lora_rank: [4, 8]}\n",
                               "search.variants[0].lora_rank: also a grid axis (search.grid.lora_rank)"),
    "grid_value_out_of_range": (VARIANTS + "  grid: {lora_rank: [4, 0]}\n", "search.grid.lora_rank[1]: expected >= 1, got 0"),
    "not_a_mapping": ("- a\n- b\n", "expected a mapping with keys name"),
    "empty_file": ("", "expected a mapping with keys name, description, results, base, fixed, search, resources, failures, tracking, got an empty file"),
}


@pytest.mark.parametrize("case", BAD_CASES, ids=list(BAD_CASES))
def test_bad_file_names_file_and_key(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CASES[case]
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert any(p.startswith(f"{path}: {expected}") for p in problems), problems


def _fan(levels: int) -> str:
    return 'l0: &l0 "x"\n' + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, levels + 1))


@pytest.mark.parametrize(("text", "problem"), [
    (_fan(5), None),                                     # 9**5 = 59,049 values once expanded: allowed
    (_fan(6), "more than 100,000 values once aliases"),  # 531,441: refused at the alias that crosses the line
    ("x: " + "[" * 31 + "]" * 31, None),                 # the top-level mapping is level 1
    ("x: " + "[" * 32 + "]" * 32, "nested deeper than 32 levels"),
    ("d: &d " + "[" * 16 + "]" * 16 + "\nx: " + "[" * 15 + "*d" + "]" * 15, None),
    ("d: &d " + "[" * 16 + "]" * 16 + "\nx: " + "[" * 16 + "*d" + "]" * 16, "alias *d nests deeper than 32"),
    ("a: &a [b, &c [*a]]", "alias *a is inside the node it names"),
    ("a: &a [1]\nb: [*a, *a]\nc: {<<: {k: *a}}", None),
])
def test_yaml_shape_limits(text: str, problem: str | None) -> None:
    found = shape_problems(text)
    if problem is None:
        assert found == []
    else:
        [(where, msg)] = found
        assert where.startswith("line ") and msg.startswith(problem), found


def test_problem_carries_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "colour: red\n")
    assert problems_of(path) == [f"{path}: colour: unknown key; valid keys: name, description, results, base, "
                                 "fixed, search, resources, failures, tracking (line 13)"]


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("objective: pl_distill", "alpha: -1\n  beta: 0.5").replace("num_samples: 4", "num_samples: x")
    text = text.replace("    alpha: {type: uniform, low: 0.0, high: 2.0}\n", textwrap.indent(textwrap.dedent("""\
        beta: {type: uniform, low: 0.0, high: 1.0}
        temperature: {type: uniform, low: 0.0, high: 4.0}
        weighting: {type: choice, values: [uniform, bogus]}
        """), "    "))
    path = write(tmp_path, text + "colour: red\nresources: {gpus_per_worker: -1}\n")
    keys = [p.split(": ")[1] for p in problems_of(path)]
    assert keys == ["fixed.alpha", "search.num_samples", "search.space.beta", "search.space.temperature.low",
                    "search.space.weighting.values[1]", "colour", "resources.gpus_per_worker"]


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems_of(path) == [f"{path}: cannot read sweep file: No such file or directory"]


def test_check_paths(tmp_path: Path) -> None:
    manifests = tmp_path / "emobox"
    fold = manifests / "iemocap" / "fold_1"
    fold.mkdir(parents=True)
    for split in ("train", "test"):
        (fold / f"iemocap_{split}_fold_1.jsonl").write_text("")
    text = GOOD.replace("{source: synthetic, dataset: synthetic, folds: [1]}",
                        f"{{source: emobox, dataset: iemocap, folds: [1], manifests: {manifests}, "
                        f"audio_root: {tmp_path / 'audio'}}}").replace("teacher: tiny", "teacher: models/qwen2-audio")
    path = write(tmp_path, text)
    assert load_sweep(path, cwd=tmp_path).base.data.manifests == manifests, "paths are not checked by default"
    with pytest.raises(SweepFileError) as info:
        load_sweep(path, check_paths=True, cwd=tmp_path)
    keys = [p.split(": ")[1] for p in info.value.problems]
    assert keys == ["base.data.manifests", "base.data.audio_root", "base.model.teacher"]
    assert "label_map.json" in info.value.problems[0]


def test_importing_sweep_layer_loads_neither_torch_nor_ray() -> None:
    code = ("import sys, pldistill.sweep, pldistill.sweep.space, pldistill.sweep.resources, pldistill.cli.validate; "
            "print(sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_failures_section_is_typed_and_checked(tmp_path: Path) -> None:
    good = write(tmp_path, GOOD + "failures: {worker_restarts: 5, trial_retries: 1}\n")
    sweep = load_sweep(good)
    assert (sweep.failures.worker_restarts, sweep.failures.trial_retries) == (5, 1)
    assert load_sweep(write(tmp_path, GOOD)).failures.worker_restarts == 3  # the default
    bad = write(tmp_path, GOOD + "failures: {worker_restarts: -1, retries: 2}\n")
    problems = problems_of(bad)
    assert any(p.startswith(f"{bad}: failures.worker_restarts:") for p in problems), problems
    assert any(p.startswith(f"{bad}: failures.retries: unknown key") for p in problems), problems


def test_replicates_are_seeds_and_test_metrics_are_refused(tmp_path: Path) -> None:
    """Grid repeats of one seed would be identical trials; a test metric would select on test."""
    grid = GOOD.replace("algorithm: optuna", "algorithm: grid").split("  space:")[0] + "  grid:\n    lora_rank: [4, 8]\n"
    with pytest.raises(SweepFileError, match=r"search.num_samples: 4 repeats of a grid point would run the same "
                                             r"seed; ask for replicates with search.seeds"):
        load_sweep(write(tmp_path, grid))
    with pytest.raises(SweepFileError, match=r"search.seeds: expected distinct seeds"):
        load_sweep(write(tmp_path, GOOD.replace("num_samples: 4", "num_samples: 4\n  seeds: [1, 1]")))
    with pytest.raises(SweepFileError, match=r"search.metric: test_ua would select trials on the test set"):
        load_sweep(write(tmp_path, GOOD.replace("num_samples: 4", "num_samples: 4\n  metric: test_ua")))
    with pytest.raises(SweepFileError, match=r"base.train.seeds: .*as search.seeds"):
        load_sweep(write(tmp_path, GOOD.replace("grad_accum: 2}", "grad_accum: 2, seeds: [0, 1]}")))
    sweep = load_sweep(write(tmp_path, GOOD.replace("num_samples: 4", "num_samples: 4\n  seeds: [3, 5]")))
    from pldistill.sweep.space import resolve_trial_config

    assert resolve_trial_config(sweep, {"alpha": 0.5}, trial_id="t1").train.seeds == [3, 5]


def test_seed_methods_grid_has_emodistill_and_its_single_teacher_ablations() -> None:
    grid = load_sweep(REPO / "sweeps/seed_methods_grid.yaml")
    emo = {v.name: v.overrides() for v in grid.search.variants if v.overrides().get("objective") == "emodistill"}
    assert sorted(emo.values(), key=str) == sorted([{"objective": "emodistill"},
                                                    {"objective": "emodistill", "w_p": 0.0},
                                                    {"objective": "emodistill", "w_l": 0.0}], key=str)
    assert {v.overrides()["objective"] for v in grid.search.variants} >= {"sft", "pl_distill", "caad"}
    assert len(grid.search.seeds) >= 3 and grid.base.model.student is None  # the family follows each objective


EMO = GOOD.replace("  model: {teacher: tiny, student_llm: tiny}", "  model: {teacher: tiny, student: classifier}") \
    .replace("objective: pl_distill", "objective: emodistill") \
    .replace("alpha: {type: uniform, low: 0.0, high: 2.0}", "w_p: {type: uniform, low: 0.0, high: 2.0}")


@pytest.mark.parametrize("change,where,problem", [
    ("fixed:\n  objective: emodistill\n", "fixed.lora_rank: lora_rank is read by the audiolm student only",
     "fixed:\n  objective: emodistill\n  lora_rank: 8\n"),
    ("objective: emodistill", "fixed.objective: objective 'pl_distill' trains the audiolm student, but "
                              "base.model.student is 'classifier'", "objective: pl_distill"),
    ("w_p: {type: uniform", "search.space.tau_l.values[0]: expected > 0, got 0", "tau_l: {type: choice, values: [0, 4]}\n"
                                                                         "    w_p: {type: uniform"),
    ("student: classifier", "search.space.w_p: w_p is read by the classifier student only; this sweep's "
                            "trials train the audiolm student", "student: audiolm"),
])
def test_settings_that_do_not_fit_the_student_family_are_refused(tmp_path: Path, change: str, where: str,
                                                                   problem: str) -> None:
    assert load_sweep(write(tmp_path, EMO)).search.space.keys() == {"w_p"}
    problems = problems_of(write(tmp_path, EMO.replace(change, problem)))
    assert any(where in p for p in problems), problems


def test_variants_of_both_families_check_each_variants_own_settings(tmp_path: Path) -> None:
    mixed = VARIANTS.replace("fixed:\n  objective: pl_distill\n", "").replace("- {name: a, objective: ldist}", "- {name: a, objective: ldist}\n"
                             "    - {name: e, objective: emodistill, w_l: 0.0}\n"
                             "    - {name: bad, objective: emodistill, lora_rank: 4}")
    problems = problems_of(write(tmp_path, mixed))
    assert len(problems) == 1 and "search.variants[2].lora_rank: lora_rank is read by the audiolm student only; " \
                                  "variant 'bad' trains the classifier student" in problems[0]
    searched = mixed.replace("    - {name: bad, objective: emodistill, lora_rank: 4}\n", "") + \
        "  grid:\n    lora_rank: [4, 8]\n"
    problems = problems_of(write(tmp_path, searched))
    assert any("search.grid.lora_rank: lora_rank is read by the audiolm student only; the classifier trials "
               "would repeat the same run" in p for p in problems), problems


def test_sweep_families_and_the_shared_config_of_a_classifier_sweep(tmp_path: Path) -> None:
    from pldistill.sweep.load import sweep_families
    from pldistill.sweep.space import shared_config

    assert sweep_families(load_sweep(REPO / "sweeps/seed_methods_grid.yaml")) == {"audiolm", "classifier"}
    assert sweep_families(load_sweep(write(tmp_path, GOOD))) == {"audiolm"}
    # variants only, base.model.student: classifier: the work trials share is prepared with a variant's
    # objective (the fixed default, pl_distill, would not fit the classifier)
    only = EMO.replace("fixed:\n  objective: emodistill\n", "").replace("algorithm: optuna", "algorithm: grid") \
        .split("  num_samples:")[0] + "  variants:\n    - {name: e, objective: emodistill}\n" \
        "    - {name: p0, objective: emodistill, w_p: 0.0}\n"
    sweep = load_sweep(write(tmp_path, only))
    assert sweep_families(sweep) == {"classifier"}
    assert shared_config(sweep, trial_id="prepare").student_family == "classifier"


def test_check_paths_wants_transcripts_for_emodistill(tmp_path: Path) -> None:
    """EmoBox manifests carry no transcript: an emodistill sweep on them names the dataset and where to
    give them; with a transcripts file (that exists) it validates."""
    manifests = tmp_path / "emobox"
    fold = manifests / "iemocap" / "fold_1"
    fold.mkdir(parents=True)
    (manifests / "iemocap" / "label_map.json").write_text(
        '{"neu": "Neutral", "hap": "Happy", "ang": "Angry", "sad": "Sad"}')
    for split in ("train", "test"):
        line = (f'{{"key": "{split}", "dataset": "iemocap", "wav": "{split}.wav", "type": "raw", "emo": "neu", '
                '"sample_rate": 16000, "num_frame": 16000, "task": "category", "length": 1.0, "channel": 1}\n')
        (fold / f"iemocap_{split}_fold_1.jsonl").write_text(line)
        (tmp_path / "audio").mkdir(exist_ok=True)
        (tmp_path / "audio" / f"{split}.wav").write_bytes(b"")  # --check-paths stats the audio
    text = EMO.replace("{source: synthetic, dataset: synthetic, folds: [1]}",
                       f"{{source: emobox, dataset: iemocap, folds: [1], manifests: {manifests}, "
                       f"audio_root: {tmp_path / 'audio'}}}")
    with pytest.raises(SweepFileError) as info:
        load_sweep(write(tmp_path, text), check_paths=True, cwd=tmp_path)
    assert len(info.value.problems) == 1
    assert "base.data.transcripts: dataset 'iemocap' has no transcripts, which the emodistill objective's " \
           "linguistic teacher needs" in info.value.problems[0]
    given = text.replace("folds: [1], manifests", f"folds: [1], transcripts: {tmp_path / 't.jsonl'}, manifests")
    with pytest.raises(SweepFileError, match="no such transcripts file"):
        load_sweep(write(tmp_path, given), check_paths=True, cwd=tmp_path)
    (tmp_path / "t.jsonl").write_text('{"key": "train", "transcript": "hello"}\n')
    assert load_sweep(write(tmp_path, given), check_paths=True, cwd=tmp_path).base.data.transcripts is not None



_PSEUDO = """\
name: t
base:
  data: {source: synthetic, dataset: synthetic, folds: [1]}
fixed:
  %s
search:
  algorithm: grid
  %s
"""


@pytest.mark.parametrize(("fixed", "search", "where"), [
    ("pseudo_target: metadata", "variants:\n    - {name: a, objective: caad}\n    - {name: b, objective: ldist}",
     "fixed.pseudo_target"),
    ("gamma: 1.0", "variants:\n    - {name: a, objective: caad, pseudo_target: metadata}\n"
     "    - {name: b, objective: forward_kl, pseudo_target: metadata}", "search.variants[1].pseudo_target"),
    ("objective: sft", "grid:\n    pseudo_target: [label, metadata]", "search.grid.pseudo_target"),
])
def test_metadata_pseudo_target_for_an_objective_that_reads_none_is_one_line(tmp_path: Path, fixed: str,
                                                                           search: str, where: str) -> None:
    """Only objectives registered with pseudo_target=True (caad) read one; metadata elsewhere is refused
    at the key that sets it, naming the objectives that would ignore it (not caad)."""
    problems = problems_of(write(tmp_path, _PSEUDO % (fixed, search)))
    assert len(problems) == 1, problems
    assert f": {where}: metadata is read only by objectives that read a pseudo target (caad); " in problems[0]
    assert "caad" not in problems[0].split("(caad);")[1]


def test_caad_reads_a_metadata_pseudo_target(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, _PSEUDO % ("pseudo_target: metadata", "variants:\n    - {name: a, "
                                                  "objective: caad, caad_contrast: 0.5}\n    - {name: b, objective: caad}")))
    assert sweep.fixed.pseudo_target == "metadata"
