"""Live metrics: which series an epoch row becomes, and that publishing never fails a trial."""

from __future__ import annotations

import math

import pytest

from pldistill.sweep import metrics
from pldistill.sweep.metrics import TrialMetrics, metric_points


def test_epoch_row_becomes_tagged_points():
    row = {"fold": 2, "epoch": 3, "train_loss_total": 1.5, "train_loss_kl_audio": 0.25, "val_ua": 0.5,
           "val_loss": 0.75, "test_f1": 0.125, "samples_per_s": 12.0, "lr": 2e-4, "wall_s": 9.0}
    points = {(name, tuple(sorted(tags.items()))): value for name, value, tags in metric_points(row)}
    assert points == {
        ("fold", ()): 2.0, ("epoch", ()): 3.0,
        ("train_loss", (("term", "total"),)): 1.5, ("train_loss", (("term", "kl_audio"),)): 0.25,
        ("eval", (("metric", "ua"), ("split", "val"))): 0.5, ("eval", (("metric", "loss"), ("split", "val"))): 0.75,
        ("eval", (("metric", "f1"), ("split", "test"))): 0.125,
        ("samples_per_second", ()): 12.0, ("learning_rate", ()): 2e-4,
    }  # wall_s is not a live series


@pytest.mark.parametrize("bad", [float("nan"), math.inf, None, "x", True])
def test_unusable_values_are_left_out(bad):
    assert metric_points({"val_ua": bad, "train_loss_total": 1.0}) == [("train_loss", 1.0, {"term": "total"})]


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict]] = []

    def set(self, value, tags):
        self.calls.append((value, tags))

    def inc(self, value, tags):
        self.calls.append((value, tags))


def test_publish_tags_every_point_with_sweep_and_trial(monkeypatch):
    made: dict[str, _Recorder] = {}
    monkeypatch.setattr(metrics, "_metric", lambda name: made.setdefault(name, _Recorder()))
    TrialMetrics("sw", "t9").publish({"train_loss_cka": 0.5, "val_ua": 0.25})
    assert made["train_loss"].calls == [(0.5, {"sweep": "sw", "trial": "t9", "term": "cka"})]
    assert made["eval"].calls == [(0.25, {"sweep": "sw", "trial": "t9", "split": "val", "metric": "ua"})]
    assert made["epochs_total"].calls == [(1.0, {"sweep": "sw", "trial": "t9"})]


def test_a_failing_backend_disables_metrics_but_not_the_trial(monkeypatch, caplog):
    def broken(name):
        raise RuntimeError("no metrics agent")

    monkeypatch.setattr(metrics, "_metric", broken)
    live = TrialMetrics("sw", "t1")
    live.publish({"val_ua": 0.5})
    live.publish({"val_ua": 0.5})
    assert [r.message for r in caplog.records].count(
        "pldistill: live metrics disabled for trial t1: no metrics agent") == 1
