"""``pldistill-sweep validate``: one ok line per good file, every problem of the bad ones, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import pldistill.cli.validate  # noqa: F401  (registers the command)
from pldistill.cli._app import app, run_app

REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted((REPO / "sweeps").glob("*.yaml"))


def test_every_shipped_sweep_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(["validate", *map(str, SHIPPED)]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.splitlines()
    assert len(lines) == len(SHIPPED) and all(line.startswith("ok: ") for line in lines)
    smoke = next(line for line in lines if "smoke.yaml" in line)
    assert smoke.endswith("(6 trials, algorithm optuna, space: alpha, beta, gamma, temperature, lora_rank, "
                          "weighting)")
    ablation = next(line for line in lines if "ablation_weighting_grid.yaml" in line)
    assert "(5 trials, algorithm grid, grid: variant(ldist, " in ablation


def test_bad_files_list_every_problem_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nfixed: {alpha: -1}\nsearch:\n  algorithm: optuna\n  num_samples: 2\n"
                   "  space:\n    temperature: {type: uniform, low: 0, high: 2}\n")
    missing = tmp_path / "missing.yaml"
    assert run_app(["validate", str(SHIPPED[0]), str(bad), str(missing)]) == 2
    out = capsys.readouterr()
    assert out.out.startswith(f"ok: {SHIPPED[0]} (")
    assert out.err.splitlines() == [
        f"{bad}: fixed.alpha: expected >= 0, got -1 (line 2)",
        f"{bad}: search.space.temperature.low: expected > 0, got 0.0 (line 7)",
        f"{missing}: cannot read sweep file: No such file or directory",
        "error: 2 of 3 sweep file(s) have problems (listed above)",
    ]


def test_bad_caad_contrast_is_refused_like_any_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CAAD's a: negative, NaN and inf are refused wherever the file gives them, one line each."""
    bad = tmp_path / "caad.yaml"
    bad.write_text("name: caad\nfixed: {objective: caad, pseudo_target: metadata}\nsearch:\n  algorithm: grid\n"
                   "  grid:\n    caad_contrast: [0.5, .nan, -1]\n")
    space = tmp_path / "caad_space.yaml"
    space.write_text("name: caad_space\nsearch:\n  algorithm: optuna\n  num_samples: 2\n  space:\n"
                     "    caad_contrast: {type: uniform, low: 0, high: .inf}\n")
    assert run_app(["validate", str(bad), str(space)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{bad}: search.grid.caad_contrast[1]: expected a finite number, got nan (line 6)",
        f"{bad}: search.grid.caad_contrast[2]: expected >= 0, got -1 (line 6)",
        f"{space}: search.space.caad_contrast.high: expected a finite number, got inf (line 6)",
        "error: 2 of 2 sweep file(s) have problems (listed above)",
    ]


def test_pseudo_target_metadata_validates_and_other_values_are_refused(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """CAAD's pseudo target: ``label`` and ``metadata`` (composed from the clip's audio) are accepted."""
    good = tmp_path / "meta.yaml"
    good.write_text("name: meta\nfixed: {objective: caad}\nsearch:\n  algorithm: grid\n"
                    "  grid:\n    pseudo_target: [label, metadata]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nfixed: {objective: caad, pseudo_target: transcript}\nsearch:\n  algorithm: grid\n"
                   "  grid:\n    caad_contrast: [0.5]\n")
    assert run_app(["validate", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {good} (2 trials")
    assert run_app(["validate", str(bad)]) == 2
    assert capsys.readouterr().err.splitlines()[0].startswith(f"{bad}: fixed.pseudo_target: ")


@pytest.mark.skipif(Path("/mnt/shared/emobox/data").exists(), reason="the real data is mounted here")
def test_check_paths_requires_real_data_paths(capsys: pytest.CaptureFixture[str]) -> None:
    iemocap = str(REPO / "sweeps/iemocap_tpe.yaml")
    assert run_app(["validate", iemocap]) == 0, "validate alone does not need the data"
    capsys.readouterr()
    assert run_app(["validate", "--check-paths", iemocap]) == 2
    err = capsys.readouterr().err
    assert f"{iemocap}: base.data.manifests: missing EmoBox files: " in err
    assert f"{iemocap}: base.model.teacher: no such model folder: /mnt/shared/models/Qwen2-Audio-7B-Instruct" in err


def test_typer_runner_sees_the_command() -> None:
    result = CliRunner().invoke(app, ["validate", str(REPO / "sweeps/smoke.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok: " in result.output


def test_check_paths_stats_every_manifest_audio_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real-format EmoBox manifests and an empty audio_root: --check-paths counts the missing WAVs and
    names the first few (launch would fail on the first); with the files there it says ok."""
    import json

    manifests, audio = tmp_path / "emobox", tmp_path / "audio"
    fold = manifests / "iemocap" / "fold_1"
    fold.mkdir(parents=True)
    audio.mkdir()
    (manifests / "iemocap" / "label_map.json").write_text(
        json.dumps({"neu": "Neutral", "hap": "Happy", "ang": "Angry", "sad": "Sad"}))
    keys = {"train": [f"Ses01F_impro01_F00{i}" for i in range(6)], "test": ["Ses05M_script01_M000"]}
    for split, names in keys.items():
        lines = [json.dumps({"key": k, "dataset": "iemocap", "wav": f"wav/{k}.wav", "type": "raw",
                             "sample_rate": 16000, "num_frame": 16000, "task": "category", "length": 1.0,
                             "emo": "neu", "channel": 1}) for k in names]
        (fold / f"iemocap_{split}_fold_1.jsonl").write_text("\n".join(lines) + "\n")
    sweep = (REPO / "sweeps/smoke.yaml").read_text().replace(
        "data: {source: synthetic, dataset: synthetic, folds: [1], synth: {speakers: 8, teacher_speakers: 0, "
        "per_class: 6, folds: 4}}",
        f"data: {{source: emobox, dataset: iemocap, folds: [1], manifests: {manifests}, audio_root: {audio}}}")
    assert "source: emobox" in sweep
    path = tmp_path / "real.yaml"
    path.write_text(sweep)
    assert run_app(["validate", "--check-paths", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"{path}: base.data.audio_root: 7 of 7 audio files the manifests name are missing under "
                      f"{audio}: {audio}/wav/Ses01F_impro01_F000.wav, {audio}/wav/Ses01F_impro01_F001.wav, "
                      f"{audio}/wav/Ses01F_impro01_F002.wav, ... (line 17)")
    (audio / "wav").mkdir()
    for name in keys["train"]:
        (audio / "wav" / f"{name}.wav").write_bytes(b"RIFF")
    assert run_app(["validate", "--check-paths", str(path)]) == 2
    assert "1 of 7 audio files the manifests name are missing" in capsys.readouterr().err
    (audio / "wav" / "Ses05M_script01_M000.wav").write_bytes(b"RIFF")
    assert run_app(["validate", "--check-paths", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {path}")
