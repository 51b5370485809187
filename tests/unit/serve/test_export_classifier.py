"""Export and predict with an EmoDistill classifier student: the trial's saved student, exported,
scores the trial's test clips exactly as the trial recorded them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from _corpus import SMALL_CORPUS

from pldistill.errors import InputError

SWEEP, TRIAL = "emo", "t_emo"


@pytest.fixture(scope="module")
def emo_sweep(tmp_path_factory, tiny_cache) -> tuple[Path, object]:
    """A results folder holding sweep ``emo`` with one completed EmoDistill trial (tiny HuBERT, fold 1)."""
    from pldistill.config import TrialConfig
    from pldistill.prepare import prepare_trial
    from pldistill.results import ResultsStore, TrialRecord
    from pldistill.train.trial import run_trial

    results = tmp_path_factory.mktemp("results")
    cfg = TrialConfig.model_validate({
        "name": TRIAL,
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "model": {"classifier": {"encoder": "hubert", "ling_dim": 16, "pros_dim": 12},
                  "emodistill_teachers": {"epochs": 3}},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 2, "max_steps_per_epoch": 3},
        "hparams": {"objective": "emodistill"},
        "output_dir": str(results / SWEEP / "runs" / TRIAL), "cache_dir": tiny_cache,
    })
    result = run_trial(prepare_trial(cfg))
    store = ResultsStore(results, SWEEP)
    store.write_sweep_meta({"metric": "val_ua", "mode": "max"})
    store.write_trial(TrialRecord.from_result(asdict(result), trial_id=TRIAL, status="completed",
                                              hparams={"w_p": 1.0}, objective="emodistill",
                                              student_family=cfg.student_family, dataset="synthetic",
                                              config_json=cfg.to_json()))
    return results, cfg


def test_export_and_predict_reproduce_the_trials_test_predictions(emo_sweep, tmp_path):
    import pyarrow.parquet as pq

    from pldistill.data import load_fold
    from pldistill.serve import export_student, load_exported, predict_files
    from pldistill.train.dataset import manifests_dir

    results, cfg = emo_sweep
    src, out = export_student(results, SWEEP, tmp_path / "student")
    assert src.trial_id == TRIAL and {p.name for p in out.iterdir()} == {
        "model.safetensors", "classifier.json", "pldistill_labels.json", "README.md"}
    meta = json.loads((out / "pldistill_labels.json").read_text())
    assert meta["family"] == "classifier" and meta["input"] == "waveform" and meta["labels"]
    assert "EmoDistill" in (out / "README.md").read_text()
    for name in ("classifier.json", "pldistill_labels.json", "README.md"):  # shareable: no local path in it
        text = (out / name).read_text()
        assert str(results) not in text and str(cfg.cache_dir) not in text and "/tmp/" not in text, name
    model = load_exported(out)
    recorded = pq.read_table(src.best_dir / "test_predictions.parquet").to_pylist()
    root, audio_root = manifests_dir(cfg)
    clips = {c.key: c for c in load_fold(root, "synthetic", 1, audio_root=audio_root).test}
    run = predict_files(model, [clips[r["key"]].wav for r in recorded[:6]])
    assert not run.errors
    for r, p in zip(recorded[:6], run.predictions):
        assert p.prediction == meta["labels"][r["pred"]]
        assert [p.scores[lab] for lab in meta["labels"]] == pytest.approx(r["scores"], abs=1e-4)
    with pytest.raises(InputError, match="no LoRA adapter"):
        export_student(results, SWEEP, tmp_path / "adapter", adapter=True)


def test_long_audio_is_cropped_to_the_window_as_training_cropped_it(emo_sweep, tmp_path):
    import numpy as np
    import soundfile as sf

    from pldistill.data import load_fold
    from pldistill.serve import export_student, load_exported, predict_files
    from pldistill.train.dataset import manifests_dir

    results, cfg = emo_sweep
    _, out = export_student(results, SWEEP, tmp_path / "student")
    model = load_exported(out)
    root, audio_root = manifests_dir(cfg)
    clip = load_fold(root, "synthetic", 1, audio_root=audio_root).test[0]
    audio, rate = sf.read(clip.wav, dtype="float32")
    window = int(model.window_s * rate)
    long = np.tile(audio, window // len(audio) + 2)  # well past the window
    sf.write(tmp_path / "long.wav", long, rate)
    sf.write(tmp_path / "head.wav", long[:window], rate)
    sf.write(tmp_path / "longer.wav", np.concatenate([long[:window], long[::-1]]), rate)
    run = predict_files(model, [tmp_path / "long.wav", tmp_path / "head.wav", tmp_path / "longer.wav"])
    assert not run.errors
    long_p, head_p, longer_p = ([p.scores[lab] for lab in model.labels] for p in run.predictions)
    assert long_p == pytest.approx(head_p, abs=1e-5) and longer_p == pytest.approx(head_p, abs=1e-5)
