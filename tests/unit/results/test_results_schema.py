"""The Parquet schema: column types, metadata, round trips, and rows that must be refused."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pldistill.config import Hyperparameters
from pldistill.results import (
    LOSS_TERMS,
    SCHEMA_VERSION,
    EpochRecord,
    ResultsStore,
    SchemaError,
    TrialRecord,
    epochs_schema,
    epochs_table,
    schema_version_of,
    trials_schema,
    trials_table,
    validate_sweep_meta,
)


def test_hp_columns_typed_by_value_and_declared_type() -> None:
    s = trials_schema({"weighting": "uniform", "alpha": 1, "projector_lr": None, "lora_rank": 8,
                       "kl_t2_scaling": True, "custom_int": 3, "custom_float": 0.5, "custom_flag": False,
                       "custom_none": None})
    assert s.field("hp_weighting").type == pa.string()
    assert s.field("hp_alpha").type == pa.float64()  # declared float, given an int
    assert s.field("hp_projector_lr").type == pa.float64()  # declared float | None, given None
    assert s.field("hp_lora_rank").type == pa.int64()
    assert s.field("hp_kl_t2_scaling").type == pa.bool_()
    assert s.field("hp_custom_int").type == pa.int64()
    assert s.field("hp_custom_float").type == pa.float64()
    assert s.field("hp_custom_flag").type == pa.bool_()
    assert s.field("hp_custom_none").type == pa.string()
    hp = [n for n in s.names if n.startswith("hp_")]
    assert hp == sorted(hp)


def test_every_hyperparameter_has_a_column_type() -> None:
    s = trials_schema(Hyperparameters().model_dump())
    assert {f"hp_{n}" for n in Hyperparameters.model_fields} <= set(s.names)


def test_fixed_columns_and_metadata() -> None:
    s = trials_schema()
    for col in ("sweep", "trial_id", "status", "error", "objective", "dataset", "folds", "best_epoch", "val_ua",
                "test_f1", "fold_metrics", "wall_s", "samples_per_s", "num_workers", "nodes", "config_json",
                "pldistill_version", "git_commit", "started_at", "ended_at", "schema_version"):
        assert col in s.names
    assert [f"loss_{t}" for t in LOSS_TERMS] == [n for n in s.names if n.startswith("loss_")]
    assert s.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert s.field("folds").type == pa.list_(pa.int64())
    assert schema_version_of(s) == ("trials", SCHEMA_VERSION)
    assert schema_version_of(epochs_schema()) == ("epochs", SCHEMA_VERSION)
    e = epochs_schema()
    assert [f"train_loss_{t}" for t in LOSS_TERMS] == [n for n in e.names if n.startswith("train_loss_")]


def test_trial_round_trip_through_parquet(tmp_path, trial) -> None:
    store = ResultsStore(tmp_path, "s")
    path = store.write_trial(trial("t1", test_ua=0.625))
    table = pq.read_table(path)
    assert table.num_rows == 1
    assert schema_version_of(table.schema) == ("trials", SCHEMA_VERSION)
    expected = trials_schema({"alpha": 1.0, "weighting": "uniform", "kl_t2_scaling": False, "lora_rank": 8})
    assert table.schema.remove_metadata() == expected.remove_metadata()
    row = table.to_pylist()[0]
    assert row["sweep"] == "s" and row["trial_id"] == "t1" and row["schema_version"] == SCHEMA_VERSION
    assert row["hp_lora_rank"] == 8 and row["hp_kl_t2_scaling"] is False and row["hp_alpha"] == 1.0
    assert row["folds"] == [1, 2] and row["nodes"] == ["node-a", "node-b"]
    assert row["fold_metrics"][0] == {"fold": 1, "seed": None, "best_epoch": 2, "val_ua": None, "val_wa": None, "val_f1": None,
                                      "teacher_test_ua": None, "teacher_test_wa": None, "teacher_test_f1": None,
                                      "val_loss": None, "val_conflict_ua": None, "test_ua": 0.625, "test_wa": None,
                                      "test_f1": None, "test_loss": None, "test_conflict_ua": None,
                                      "teacher_test_conflict_ua": None, "teacher_prosodic_test_ua": None,
                                      "teacher_linguistic_test_ua": None, "predictions_sha256": None}
    assert row["loss_total"] == 1.25 and row["loss_relation"] is None
    assert row["started_at"] == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def test_epoch_round_trip(tmp_path, epochs) -> None:
    path = ResultsStore(tmp_path, "s").write_epochs("t1", epochs(3))
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == epochs_schema().remove_metadata()
    assert schema_version_of(table.schema) == ("epochs", SCHEMA_VERSION)
    rows = table.to_pylist()
    assert [(r["trial_id"], r["fold"], r["epoch"]) for r in rows] == [("t1", 1, 0), ("t1", 1, 1), ("t1", 1, 2)]
    assert rows[1]["train_loss_total"] == 0.5 and rows[1]["train_loss_cka"] is None and rows[1]["val_wa"] is None


def test_numpy_scalars_and_nan_are_accepted(trial) -> None:
    t = trial("t1", test_ua=np.float32(0.5), best_epoch=np.int64(3), val_wa=math.nan,
              hparams={"kl_t2_scaling": np.bool_(True), "custom": np.int64(2)})
    table = trials_table([{**t.to_row(), "sweep": "s"}])
    row = table.to_pylist()[0]
    assert row["test_ua"] == 0.5 and row["best_epoch"] == 3 and math.isnan(row["val_wa"])
    assert row["hp_kl_t2_scaling"] is True and table.schema.field("hp_custom").type == pa.int64()
    with pytest.raises(SchemaError, match="expected an int"):
        trials_table([{**t.to_row(), "sweep": "s", "best_epoch": np.bool_(True)}])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bogus": 1}, "unknown column(s) bogus"),
        ({"test_ua": "0.5"}, "column test_ua: expected a number"),
        ({"best_epoch": True}, "column best_epoch: expected an int"),
        ({"best_epoch": 1.5}, "column best_epoch: expected an int"),
        ({"folds": "1,2"}, "column folds: expected a list"),
        ({"nodes": ["a", 3]}, "column nodes[]: expected a str"),
        ({"started_at": dt.datetime(2025, 1, 1)}, "timezone-aware"),
        ({"status": "done"}, "column status: expected one of"),
        ({"trial_id": None}, "trial_id must not be null"),
        ({"hp_lora_rank": 2.5}, "column hp_lora_rank: expected an int"),
        ({"hp_weighting": 3}, "column hp_weighting: expected a str"),
        ({"hp_custom": [1, 2]}, "hp_custom: expected a bool, int, float or str"),
        ({"hp_train.epochs": 3}, "cannot be a column"),
        ({"fold_metrics": [{"fold": 1, "acc": 0.5}]}, "unknown field(s) acc"),
        ({"fold_metrics": [{"fold": "1"}]}, "fold_metrics[].fold: expected an int"),
    ],
)
def test_bad_trial_rows_are_refused(trial, change: dict, message: str) -> None:
    row = {**trial("t1").to_row(), "sweep": "s", **change}
    with pytest.raises(SchemaError) as info:
        trials_table([row])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_loss_term_names_the_valid_ones(trial) -> None:
    with pytest.raises(SchemaError, match="unknown loss term.*kd.*valid: total, ce"):
        trial("t1", losses={"kd": 1.0}).to_row()
    with pytest.raises(SchemaError, match="unknown loss term"):
        EpochRecord(fold=1, epoch=0, train_losses={"mse": 1.0}).to_row()


def test_bad_epoch_rows_are_refused() -> None:
    ok = {"sweep": "s", "trial_id": "t", "fold": 1, "epoch": 0}
    assert epochs_table([ok]).num_rows == 1
    with pytest.raises(SchemaError, match="column epoch: expected an int"):
        epochs_table([{**ok, "epoch": "0"}])
    with pytest.raises(SchemaError, match="unknown column"):
        epochs_table([{**ok, "loss_total": 1.0}])  # epochs use train_loss_<term>


def test_sweep_meta_is_checked() -> None:
    ok = validate_sweep_meta({"name": "s", "started_at": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
                              "status": "running", "mode": "max"})
    assert ok["started_at"] == "2025-01-01T00:00:00+00:00"
    with pytest.raises(SchemaError, match="unknown key"):
        validate_sweep_meta({"name": "s", "colour": "red"})
    with pytest.raises(SchemaError, match="mode"):
        validate_sweep_meta({"mode": "maximise"})
    with pytest.raises(SchemaError, match="status"):
        validate_sweep_meta({"status": "done"})
    with pytest.raises(SchemaError, match="started_at"):
        validate_sweep_meta({"started_at": "yesterday"})


def _trial_result() -> dict:
    """``asdict(pldistill.train.trial.TrialResult)`` of a two-fold trial."""
    def fold(k: int, epoch: int, ua: float) -> dict:
        best = {"val_ua": ua + 0.1, "val_wa": 0.5, "val_f1": 0.4, "test_ua": ua, "test_wa": 0.5, "test_f1": 0.4,
                "loss_total": 1.0, "loss_ce": 0.5, "loss_cka": 0.5}
        return {"fold": k, "best_epoch": epoch, "best": best, "teacher": {"test_ua": 0.8 + k / 10}, "epochs": [],
                "student_dir": None}
    return {"folds": [fold(1, 2, 0.6), fold(2, 3, 0.8)],
            "metrics": {"val_ua": 0.8, "val_wa": 0.5, "val_f1": 0.4, "test_ua": 0.7, "test_wa": 0.5, "test_f1": 0.4,
                        "loss_total": 1.0, "loss_ce": 0.5, "loss_cka": 0.5},
            "wall_s": 10.0, "samples_per_s": 30.0, "world_size": 2}


def test_trial_record_from_trial_result() -> None:
    rec = TrialRecord.from_result(_trial_result(), trial_id="t1", status="completed", nodes=["n"], wall_s=11.0,
                                  hparams={"alpha": 1.0})
    row = trials_table([{**rec.to_row(), "sweep": "s"}]).to_pylist()[0]
    assert row["test_ua"] == 0.7 and row["loss_cka"] == 0.5 and row["loss_kl_audio"] is None
    assert row["folds"] == [1, 2] and row["best_epoch"] == 2 and row["num_workers"] == 2
    assert row["wall_s"] == 11.0 and row["samples_per_s"] == 30.0  # given values win
    assert [(f["fold"], f["best_epoch"], f["test_ua"]) for f in row["fold_metrics"]] == [(1, 2, 0.6), (2, 3, 0.8)]
    assert row["teacher_test_ua"] == pytest.approx(0.95) and row["teacher_val_ua"] is None  # mean over folds
    # replicates: each (seed, fold) run keeps its seed; the row lists the seeds and the distinct folds
    seeded = _trial_result()
    seeded["folds"] = [{**f, "seed": s} for s in (0, 4) for f in seeded["folds"]]
    row = trials_table([{**TrialRecord.from_result(seeded, trial_id="t2", status="completed").to_row(),
                         "sweep": "s"}]).to_pylist()[0]
    assert row["seeds"] == [0, 4] and row["folds"] == [1, 2]
    assert [(f["seed"], f["fold"]) for f in row["fold_metrics"]] == [(0, 1), (0, 2), (4, 1), (4, 2)]
    bad = _trial_result()
    bad["metrics"]["val_acc"] = 0.1
    with pytest.raises(SchemaError, match="unknown metric.*val_acc"):
        TrialRecord.from_result(bad, trial_id="t1", status="completed")


def test_epoch_record_from_reported_metrics() -> None:
    metrics = {"fold": 1, "epoch": 2, "train_loss_total": 1.5, "train_loss_ce": 1.0, "val_ua": 0.5, "val_wa": 0.6,
               "val_f1": 0.4, "test_ua": 0.45, "samples_per_s": 12.0, "lr": 1e-4, "wall_s": 3.0}
    row = epochs_table([EpochRecord.from_metrics("s", "t1", metrics)]).to_pylist()[0]
    assert (row["sweep"], row["trial_id"], row["fold"], row["epoch"]) == ("s", "t1", 1, 2)
    assert row["train_loss_total"] == 1.5 and row["test_ua"] == 0.45 and row["val_loss"] is None
    with pytest.raises(SchemaError, match="unknown metric.*training_iteration"):
        EpochRecord.from_metrics("s", "t1", {**metrics, "training_iteration": 3})


def test_columns_are_derived_from_the_records_and_the_metric_names() -> None:
    """One declaration: the Arrow columns come from the record dataclasses' fields, and every metric
    of ``pldistill.config.METRIC_NAMES`` is a column of trials, of its teacher, of each fold, of epochs."""
    import dataclasses

    from pldistill.config import METRIC_NAMES
    from pldistill.results.schema import (
        EpochRecord,
        FoldMetrics,
        TrialRecord,
        _record_fields,
        epochs_schema,
        trials_schema,
    )

    trials, epochs = trials_schema({"alpha": 1.0}), epochs_schema()
    fold_struct = trials.field("fold_metrics").type.value_type
    for m in METRIC_NAMES:
        assert m in trials.names and f"teacher_{m}" in trials.names and m in epochs.names
        assert fold_struct.get_field_index(m) >= 0
    plain = {f.name for f in dataclasses.fields(TrialRecord)} - {"hparams", "losses"}
    assert plain | {"hp_alpha", "schema_version"} | {n for n in trials.names if n.startswith("loss_")} \
        == set(trials.names)
    assert [f.name for f in dataclasses.fields(FoldMetrics)] == fold_struct.names
    assert not trials.field("trial_id").nullable and trials.field("error").nullable
    assert not epochs.field("epoch").nullable and {f.name for f in dataclasses.fields(EpochRecord)} - \
        {"train_losses"} <= set(epochs.names)

    @dataclasses.dataclass(kw_only=True)
    class Extended(EpochRecord):
        extra: int | None = None

    assert [f.name for f in _record_fields(Extended, {"train_losses": []})][-2:] == ["extra", "schema_version"]


def test_classifier_trial_records_its_family_and_both_teachers() -> None:
    """An EmoDistill trial: ``student_family`` says which student, and the prosodic and linguistic
    teachers' UA (``FoldResult.teacher``: ``<kind>_<split>_ua``) land beside the teacher columns."""
    result = _trial_result()
    for i, f in enumerate(result["folds"]):
        f["teacher"] = {"prosodic_val_ua": 0.5 + i / 10, "prosodic_test_ua": 0.6, "linguistic_val_ua": 0.3,
                        "linguistic_test_ua": 0.2 + i / 10, "prosodic_test_wa": 0.61}
    result["metrics"].update({"loss_class_ce": 1.0, "loss_kl_prosodic": 0.2, "loss_cos_linguistic": 0.4})
    rec = TrialRecord.from_result(result, trial_id="t1", status="completed", objective="emodistill",
                                  student_family="classifier")
    row = trials_table([{**rec.to_row(), "sweep": "s"}]).to_pylist()[0]
    assert row["student_family"] == "classifier" and row["objective"] == "emodistill"
    assert row["teacher_prosodic_val_ua"] == pytest.approx(0.55) and row["teacher_linguistic_test_ua"] == \
        pytest.approx(0.25)
    assert row["teacher_test_ua"] is None  # no audio-LLM teacher in this trial
    assert [f["teacher_linguistic_test_ua"] for f in row["fold_metrics"]] == pytest.approx([0.2, 0.3])
    assert (row["loss_class_ce"], row["loss_kl_prosodic"], row["loss_cos_linguistic"]) == (1.0, 0.2, 0.4)
