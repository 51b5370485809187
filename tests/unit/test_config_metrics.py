"""The metric names every layer shares (``pldistill.config``): one Literal, its modes, and its users."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from pldistill.config import (
    METRIC_NAMES,
    EvalMetric,
    EvalSplit,
    MetricName,
    TrainConfig,
    ValMetricName,
    metric_mode,
)


def test_metric_names_are_every_split_with_every_metric() -> None:
    assert get_args(MetricName) == METRIC_NAMES
    assert set(METRIC_NAMES) == {f"{s}_{m}" for s in get_args(EvalSplit) for m in get_args(EvalMetric)}
    assert len(METRIC_NAMES) == len(set(METRIC_NAMES)) == 10
    assert get_args(ValMetricName) == tuple(n for n in METRIC_NAMES if n.startswith("val_"))


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_loss_is_minimised_scores_maximised(name: str) -> None:
    assert metric_mode(name) == ("min" if name.endswith("_loss") else "max")


def test_unknown_metric_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown metric 'val_acc'; valid: val_ua, val_wa"):
        metric_mode("val_acc")


def test_select_metric_takes_validation_metrics_only() -> None:
    assert TrainConfig(select_metric="val_loss").select_metric == "val_loss"
    with pytest.raises(ValidationError):
        TrainConfig(select_metric="test_ua")


def test_a_checkpoint_teacher_is_used_as_is_and_the_tiny_one_fine_tuned() -> None:
    """The paper distils Qwen2-Audio as released: fine-tuning a checkpoint teacher is opt-in."""
    from pldistill.config import ModelConfig

    assert ModelConfig().finetunes_teacher  # tiny: random until trained
    assert not ModelConfig(teacher="/models/Qwen2-Audio-7B-Instruct").finetunes_teacher
    assert ModelConfig(teacher="/models/q", teacher_finetune={"enabled": True}).finetunes_teacher
    assert not ModelConfig(teacher_finetune={"enabled": False}).finetunes_teacher  # a random tiny teacher
