"""``pldistill-sweep data synth`` and ``data info``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import pldistill.cli.data  # noqa: F401  (registers the commands)
from pldistill.cli._app import app, run_app

runner = CliRunner()


def test_synth_writes_a_corpus_then_reuses_it(tmp_path: Path) -> None:
    args = ["data", "synth", str(tmp_path), "--speakers", "2", "--per-class", "1", "--folds", "2", "--seed", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "8 clips" in result.output and "wrote" in result.output
    assert (tmp_path / "synthetic" / "fold_2" / "synthetic_test_fold_2.jsonl").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "reused" in again.output


def test_synth_option_ranges(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "synth", str(tmp_path), "--speakers", "1"])
    assert result.exit_code != 0 and not (tmp_path / "synthetic").exists()


def test_info_prints_folds_classes_speakers_lengths(small_corpus: Path) -> None:
    result = runner.invoke(app, ["data", "info", str(small_corpus), "synthetic"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "synthetic: 4 classes, 2 folds" in out
    for word in ("Neutral", "Happy", "Angry", "Sad", "train", "test", "S01F, S02M", "S03F, S04M", "median", "p95"):
        assert word in out, word
    assert "encoder window 2 s" in out


def test_info_error_is_one_line(tmp_path: Path, capsys) -> None:
    assert run_app(["data", "info", str(tmp_path), "iemocap"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(tmp_path / "iemocap") in err
