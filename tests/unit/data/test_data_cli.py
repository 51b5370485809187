"""``pldistill-sweep data synth`` and ``data info``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pldistill.cli.data  # noqa: F401  (registers the commands)
from pldistill.cli._app import app, run_app

runner = CliRunner()


def test_synth_writes_a_corpus_then_reuses_it(tmp_path: Path) -> None:
    # no teacher pool: it would be 24 more speakers, each in a fresh process (test_synth.py covers it)
    args = ["data", "synth", str(tmp_path), "--speakers", "2", "--per-class", "1", "--folds", "2", "--seed", "4",
            "--conflict", "0.5", "--teacher-speakers", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "8 clips" in result.output and "wrote" in result.output and "conflict 50%" in result.output
    meta = json.loads((tmp_path / "synthetic" / "synth.json").read_text())
    assert meta["conflict"] == 0.5 and meta["congruent"] == pytest.approx(1 / 3)
    assert (tmp_path / "synthetic" / "fold_2" / "synthetic_test_fold_2.jsonl").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "reused" in again.output


def test_synth_option_ranges(tmp_path: Path, capsys) -> None:
    result = runner.invoke(app, ["data", "synth", str(tmp_path), "--speakers", "1"])
    assert result.exit_code != 0 and not (tmp_path / "synthetic").exists()
    assert run_app(["data", "synth", str(tmp_path), "--speakers", "2", "--folds", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "folds" in err


def test_info_prints_folds_classes_speakers_lengths_words(small_corpus: Path) -> None:
    result = runner.invoke(app, ["data", "info", str(small_corpus), "synthetic"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "synthetic: 4 classes, 2 folds" in out
    for word in ("Neutral", "Happy", "Angry", "Sad", "train", "test", "S01F, S02M", "S03F, S04M", "median", "p95",
                 "congruent", "neutral", "conflict", "32 of 32 clips have a transcript"):
        assert word in out, word
    assert "encoder window 4 s" in out
    assert "eGeMAPS" not in out


def test_info_summarises_egemaps_per_emotion(small_corpus: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "info", str(small_corpus), "synthetic", "--egemaps", "--cache-dir",
                                 str(tmp_path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "per-emotion means over 32 clips (88 features)" in result.output
    assert "F0 mean (st)" in result.output and "loudness" in result.output
    assert len(list(tmp_path.glob("egemaps-*.npz"))) == 1


def test_info_reads_a_transcripts_file(write_dataset, record, tmp_path: Path) -> None:
    rows = [record(f"toy-{i}", emo) for i, emo in enumerate(["neu", "hap"])]
    root = write_dataset("toy", {"neu": "Neutral", "hap": "Happy"}, {1: (rows[:1], rows[1:]), 2: (rows[1:], rows[:1])})
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"key": "toy-1", "transcript": "hello"}) + "\n")
    result = runner.invoke(app, ["data", "info", str(root), "toy", "--transcripts", str(path)],
                           env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "1 of 2 clips have a transcript, 1 distinct" in result.output


def test_info_error_is_one_line(tmp_path: Path, capsys) -> None:
    assert run_app(["data", "info", str(tmp_path), "iemocap"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(tmp_path / "iemocap") in err
