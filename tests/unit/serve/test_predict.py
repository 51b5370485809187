"""Predict: classify audio files or an EmoBox manifest with an exported student, from the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pldistill.cli._app import run_app


@pytest.fixture(scope="module")
def clip_files(test_clips, tmp_path_factory) -> dict[str, Path]:
    """One test clip as 16 kHz WAV (as is), 8 kHz WAV, 44.1 kHz FLAC, a long WAV, and bad files."""
    from scipy.signal import resample_poly

    folder = tmp_path_factory.mktemp("audio")
    clip = test_clips[0]
    audio, rate = sf.read(clip.wav, dtype="float32")
    assert rate == 16000
    files = {"wav16k": Path(clip.wav), "wav8k": folder / "clip_8k.wav", "flac44k": folder / "clip_44k.flac",
             "long": folder / "long.wav", "missing": folder / "missing.wav", "text": folder / "notes.wav",
             "empty": folder / "empty.wav"}
    sf.write(files["wav8k"], resample_poly(audio, 1, 2), 8000)
    sf.write(files["flac44k"], resample_poly(audio, 441, 160), 44100, format="FLAC")
    sf.write(files["long"], np.tile(audio, 40), 16000)  # far longer than the model's window
    files["text"].write_text("not audio at all\n")
    sf.write(files["empty"], np.zeros(0, np.float32), 16000)
    return files


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_predicts_wav_and_flac_at_any_rate(merged_export, clip_files, reference, test_clips, capsys):
    paths = [clip_files[k] for k in ("wav16k", "wav8k", "flac44k")]
    assert run_app(["predict", str(merged_export), *map(str, paths), "--format", "json"]) == 0
    out = _json(capsys)
    rows = out["predictions"]
    assert [r["file"] for r in rows] == [str(p) for p in paths]
    assert out["labels"] == list(reference.labels)
    for row in rows:
        assert row["prediction"] in reference.labels and set(row["scores"]) == set(reference.labels)
        assert row["prediction"] == max(row["scores"], key=row["scores"].get)
        assert all(s < 0 for s in row["scores"].values())  # log-likelihoods
    # the 16 kHz original scores exactly as the trial's own evaluation scored that test clip
    i = reference.keys.index(test_clips[0].key)
    got = [rows[0]["scores"][lab] for lab in reference.labels]
    np.testing.assert_allclose(got, reference.scores[i], atol=1e-4)
    # 44.1 kHz made from the 16 kHz original loses nothing below 8 kHz: resampled back, it scores
    # close to the original. (8 kHz speech has lost its 4-8 kHz band, so its scores may move: it is
    # only checked to be predicted, above.)
    np.testing.assert_allclose([rows[2]["scores"][lab] for lab in reference.labels], got, atol=0.1)


def test_long_audio_is_cropped_to_the_window(merged_export, clip_files, tmp_path, capsys):
    meta = json.loads((merged_export / "pldistill_labels.json").read_text())
    audio, rate = sf.read(clip_files["long"], dtype="float32")
    head = tmp_path / "head.wav"
    sf.write(head, audio[: int(meta["window_s"] * rate)], rate)
    assert run_app(["predict", str(merged_export), str(clip_files["long"]), str(head), "--format", "json"]) == 0
    long_row, head_row = _json(capsys)["predictions"]
    assert long_row["scores"] == pytest.approx(head_row["scores"], abs=1e-5)


def test_bad_files_are_one_line_each_and_the_others_are_still_predicted(merged_export, clip_files, capsys):
    names = ["wav16k", "missing", "text", "flac44k", "empty"]
    assert run_app(["predict", str(merged_export), *(str(clip_files[n]) for n in names), "--format", "csv"]) == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)
    for line, name, problem in zip(errors, ("missing", "text", "empty"), ("not found", "unreadable", "empty")):
        assert str(clip_files[name]) in line and problem in line, line
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert rows[0][:3] == ["file", "key", "prediction"] and rows[0][3:] == ["Neutral", "Happy", "Angry", "Sad"]
    assert [r[0] for r in rows[1:]] == [str(clip_files["wav16k"]), str(clip_files["flac44k"])]


def test_manifest_gives_the_trials_test_figures(adapter_export, trial_student, reference, capsys):
    from pldistill.data import fold_paths, load_fold
    from pldistill.train.dataset import manifests_dir

    root, audio_root = manifests_dir(trial_student.config)
    _, test_manifest = fold_paths(root, "synthetic", trial_student.fold)
    assert run_app(["predict", str(adapter_export), "--manifest", str(test_manifest), "--format", "json"]) == 0
    out = _json(capsys)
    assert [p["key"] for p in out["predictions"]] == reference.keys
    # each row names the clip's own audio file (not the manifest it came from)
    wavs = {c.key: str(c.wav) for c in load_fold(root, "synthetic", trial_student.fold, audio_root=audio_root).test}
    assert [p["file"] for p in out["predictions"]] == [wavs[k] for k in reference.keys]
    assert [p["prediction"] for p in out["predictions"]] == reference.predicted
    assert [p["label"] for p in out["predictions"]] == [reference.labels[t] for t in reference.truth]
    for name in ("ua", "wa", "f1"):
        assert out["metrics"][name] == pytest.approx(trial_student.fold_figures[f"test_{name}"], abs=1e-12)
    assert run_app(["predict", str(adapter_export), "--manifest", str(test_manifest)]) == 0
    table = capsys.readouterr().out
    assert "UA " in table and "WA " in table and "F1 " in table and "cropped to" in table


def test_table_format_names_every_label(merged_export, clip_files, capsys):
    assert run_app(["predict", str(merged_export), str(clip_files["wav16k"])]) == 0
    out = capsys.readouterr().out
    assert all(lab in out for lab in ("prediction", "Neutral", "Happy", "Angry", "Sad"))
    assert clip_files["wav16k"].name in out


@pytest.mark.parametrize("case", ["no_meta", "missing_dir", "not_a_dir", "broken_weights"])
def test_a_folder_that_is_not_an_exported_model(case, merged_export, clip_files, tmp_path, capsys):
    import shutil

    folder = tmp_path / "model"
    if case == "no_meta":
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    elif case == "not_a_dir":
        folder.write_text("x")
    elif case == "broken_weights":
        shutil.copytree(merged_export, folder)
        (folder / "model.safetensors").write_bytes(b"garbage")
    assert run_app(["predict", str(folder), str(clip_files["wav16k"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder}") and err.count("\n") == 1, err


def test_help_of_export_and_predict_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from pldistill.cli import run_app\n"
            "for cmd in ('export', 'predict'):\n    run_app([cmd, '--help'])\n"
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "cropped" in out.stdout
