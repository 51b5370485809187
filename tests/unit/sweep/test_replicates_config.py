"""``search.replicates`` in a sweep file: typed, consistent with ``search.seeds``, refused with ASHA, and
carried into every trial's ``train.replicates``."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pldistill.sweep import SweepFileError, load_sweep
from pldistill.sweep.space import resolve_trial_config

GOOD = """\
name: t
base:
  data: {source: synthetic, dataset: synthetic, folds: [1, 2]}
  model: {teacher: tiny, student_llm: tiny}
  train: {epochs: 3, batch_size: 4, grad_accum: 2}
fixed:
  objective: pl_distill
search:
  algorithm: optuna
  num_samples: 4
  replicates: {min_seeds: 3, max_seeds: 6, half_width: 0.02}
  space:
    alpha: {type: uniform, low: 0.0, high: 2.0}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(SweepFileError) as info:
        load_sweep(path)
    return info.value.problems


def test_replicates_reach_the_trial_with_the_first_seeds_filled_in(tmp_path):
    sweep = load_sweep(_write(tmp_path, GOOD))
    assert sweep.search.seeds == [0, 1, 2]  # not listed: 0 .. min_seeds - 1
    train = resolve_trial_config(sweep, {"alpha": 0.5}, trial_id="t1").train
    assert train.replicates is not None and train.replicates.half_width == 0.02
    assert train.seed_sequence() == [0, 1, 2, 3, 4, 5]
    listed = load_sweep(_write(tmp_path, GOOD.replace("  replicates:", "  seeds: [4, 9, 2]\n  replicates:")))
    # the added seeds are the next integers after the listed ones
    assert resolve_trial_config(listed, {"alpha": 0.5}, trial_id="t1").train.seed_sequence() == [4, 9, 2, 10, 11, 12]


@pytest.mark.parametrize(("edit", "expected"), [
    (("  replicates:", "  seeds: [0, 1]\n  replicates:"),
     r"s.yaml: search.seeds: with replicates, seeds lists the first min_seeds \(3\) seeds .*got 2 \(line 11\)"),
    (("min_seeds: 3", "min_seeds: 1"), r"search.replicates.min_seeds: expected >= 2, got 1 \(line 11\)"),
    (("max_seeds: 6", "max_seeds: 2"), r"search.replicates: .*max_seeds \(2\) must be >= min_seeds \(3\)"),
    (("half_width: 0.02", "half_width: 0"), r"search.replicates.half_width: expected > 0, got 0"),
    (("half_width: 0.02", "half_width: 0.02, seeds: 3"), r"search.replicates.seeds: "),
    (("  num_samples: 4", "  num_samples: 4\n  scheduler: {type: asha}"),
     r"search.scheduler: not with search.replicates: ASHA compares trials at equal reported epochs"),
    (("grad_accum: 2}", "grad_accum: 2, replicates: {min_seeds: 2}}"),
     r"base.train.replicates: .*once, as search.replicates"),
])
def test_bad_replicates_are_one_line_naming_file_and_key(tmp_path, edit, expected):
    problems = _problems(_write(tmp_path, GOOD.replace(*edit)))
    assert len(problems) == 1, problems
    assert "\n" not in problems[0]
    assert problems[0].startswith(str(tmp_path / "s.yaml"))
    assert re.search(expected, problems[0]), problems[0]


def test_a_sweep_without_replicates_keeps_its_fixed_seeds(tmp_path):
    text = GOOD.replace("  replicates: {min_seeds: 3, max_seeds: 6, half_width: 0.02}\n", "  seeds: [0, 5]\n")
    train = resolve_trial_config(load_sweep(_write(tmp_path, text)), {"alpha": 0.5}, trial_id="t1").train
    assert train.replicates is None and train.seed_sequence() == [0, 5]


@pytest.mark.parametrize("name", ["baselines_grid", "seed_methods_grid", "ablation_weighting_grid"])
def test_the_shipped_method_grids_replicate_until_decided(name):
    sweep = load_sweep(Path(__file__).resolve().parents[3] / "sweeps" / f"{name}.yaml")
    rule = sweep.search.replicates
    assert rule is not None and (rule.min_seeds, rule.max_seeds, rule.half_width) == (5, 10, 0.025)
    assert sweep.search.seeds == [0, 1, 2, 3, 4] and sweep.search.scheduler is None
    train = resolve_trial_config(sweep, {"variant": sweep.search.variants[0].name}, trial_id="t").train
    assert train.replicates == rule and train.seed_sequence() == list(range(10))
