"""Bad input reaches the user as one line naming the file and field, exit status 2, no traceback,
and nothing written; ``--debug`` shows the traceback. These all fail before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pldistill.cli import run_app


def _sweep(tmp_path: Path, **base_overrides) -> dict:
    base = {"data": {"source": "synthetic", "dataset": "synthetic", "folds": [1]},
            "cache_dir": str(tmp_path / "cache")}
    base.update(base_overrides)
    return {"name": "bad", "results": str(tmp_path / "results"), "base": base,
            "search": {"algorithm": "random", "num_samples": 1,
                       "space": {"alpha": {"type": "uniform", "low": 0.0, "high": 1.0}}}}


def _launch(tmp_path: Path, capsys, content: str | dict, *extra: str) -> tuple[int, str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    code = run_app([*extra, "launch", str(path), "--no-dashboard", "--quiet"])
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_malformed_yaml(tmp_path, capsys):
    code, err = _launch(tmp_path, capsys, "name: bad\nsearch: [unclosed\n")
    assert code == 2
    assert "sweep.yaml" in _one_line(err) and "line" in err
    assert not (tmp_path / "results").exists()


def test_unknown_key_names_file_and_key(tmp_path, capsys):
    content = _sweep(tmp_path)
    content["base"]["train"] = {"epochz": 3}
    code, err = _launch(tmp_path, capsys, content)
    assert code == 2 and "sweep.yaml" in err and "base.train.epochz" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_missing_manifests_folder(tmp_path, capsys):
    content = _sweep(tmp_path, data={"source": "emobox", "dataset": "iemocap", "folds": [1],
                                     "manifests": str(tmp_path / "no-such-folder")})
    code, err = _launch(tmp_path, capsys, content)
    line = _one_line(err)
    assert code == 2 and "no-such-folder" in line
    assert not (tmp_path / "results" / "bad" / "sweep.json").exists()
    assert not list((tmp_path / "results").rglob("*.parquet"))


def test_missing_teacher_checkpoint_then_debug_shows_traceback(tmp_path, capsys):
    content = _sweep(tmp_path, model={"teacher": str(tmp_path / "no-teacher")})
    code, err = _launch(tmp_path, capsys, content)
    line = _one_line(err)
    assert code == 2 and "no-teacher" in line and "model.teacher" in line
    from pldistill.errors import InputError

    with pytest.raises(InputError):
        _launch(tmp_path, capsys, content, "--debug")
