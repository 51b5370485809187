"""Bad input reaches the user as one line naming the file and field, exit status 2, no traceback,
and nothing written; ``--debug`` shows the traceback. These all fail before Ray starts (seconds each)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _corpus import SMALL_CORPUS

from pldistill.cli import run_app
from pldistill.errors import InputError

_LABELS = {"neu": "Neutral", "hap": "Happy"}
REPO = Path(__file__).resolve().parents[2]


def _sweep(tmp_path: Path, **base_overrides) -> dict:
    base = {"data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
            "cache_dir": str(tmp_path / "cache")}
    base.update(base_overrides)
    return {"name": "bad", "results": str(tmp_path / "results"), "base": base,
            "search": {"algorithm": "random", "num_samples": 1,
                       "space": {"sharpen_p": {"type": "uniform", "low": 1.0, "high": 3.0}}}}


def _launch(tmp_path: Path, capsys, content: str | dict, *extra: str, opts: tuple[str, ...] = ()) -> tuple[int, str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    code = run_app([*extra, "launch", str(path), "--no-dashboard", "--quiet", *opts])
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


#: What launch may leave in the results folder of a sweep that failed before it started: the
#: launcher's lock (``pldistill.sweep.resume.SweepLock``), no results.
_LOCK_ONLY = {"bad", "bad/.launch.lock"}


def _nothing_written(tmp_path: Path, *, cache: bool = True) -> None:
    """No results (the folder is absent or holds only the launch lock); with ``cache``, no cache
    entry either (an artifact's lock file may stay: ``pldistill._fs.artifact_lock`` takes it before
    the build that failed), else no half-written cache entry."""
    results = tmp_path / "results"
    left = {str(p.relative_to(results)) for p in results.rglob("*")} if results.exists() else set()
    assert left <= _LOCK_ONLY, left
    if cache:
        left = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
        assert not left, left
    else:
        assert not [p for p in (tmp_path / "cache").rglob("*") if ".tmp" in p.name]


def _emobox(tmp_path: Path, folds: dict[int, tuple[list, list]], name: str = "toy") -> Path:
    """A tiny EmoBox dataset ``name`` under ``tmp_path/manifests``; records are dicts or raw lines."""
    root = tmp_path / "manifests"
    (root / name).mkdir(parents=True)
    (root / name / "label_map.json").write_text(json.dumps(_LABELS))
    for k, (train, test) in folds.items():
        (root / name / f"fold_{k}").mkdir()
        for split, rows in (("train", train), ("test", test)):
            text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
            (root / name / f"fold_{k}" / f"{name}_{split}_fold_{k}.jsonl").write_text(text)
    return root


def _record(key: str, emo: str = "neu") -> dict:
    return {"key": key, "dataset": "toy", "wav": f"wav/{key}.wav", "type": "raw", "sample_rate": 16000,
            "num_frame": 16000.0, "task": "category", "length": 1.0, "emo": emo, "channel": 1}


def _emobox_sweep(tmp_path: Path, manifests: Path, dataset: str = "toy", **data) -> dict:
    return _sweep(tmp_path, data={"source": "emobox", "dataset": dataset, "folds": [1],
                                  "manifests": str(manifests), **data})


# --- the sweep file ---------------------------------------------------------------------------------


def test_malformed_yaml(tmp_path, capsys):
    code, err = _launch(tmp_path, capsys, "name: bad\nsearch: [unclosed\n")
    assert code == 2
    assert "sweep.yaml" in _one_line(err) and "line" in err
    _nothing_written(tmp_path)


def test_unknown_key_names_file_and_key(tmp_path, capsys):
    content = _sweep(tmp_path)
    content["base"]["train"] = {"epochz": 3}
    code, err = _launch(tmp_path, capsys, content)
    line = _one_line(err)
    assert code == 2 and "sweep.yaml" in line and "base.train.epochz: unknown key" in line
    _nothing_written(tmp_path)


def _laughs(levels: int) -> str:
    """A "billion laughs": each anchor a list of nine aliases of the one before (9**levels values)."""
    lines = ['l0: &l0 "lol"'] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


YAML_SHAPES = {  # text after ``name: bad``, the line and column it must name, what it must say
    "recursive_alias": ("a: &a [*a]\n", "line 2, column 8", "alias *a is inside the node it names"),
    "recursive_mapping": ("a: &m {b: {c: *m}}\n", "line 2, column 15", "alias *m is inside the node it names"),
    "alias_bomb": (_laughs(9), "line 8, column 15", "more than 100,000 values once aliases are expanded"),
    "deep_nesting": ("x: " + "[" * 10_000 + "]" * 10_000 + "\n", "line 2, column 35", "nested deeper than 32 levels"),
    "deep_mappings": ("x: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", "line 2, column 128",
                      "nested deeper than 32 levels"),
    "deep_by_alias": ("d: &d " + "[" * 20 + "]" * 20 + "\nx: " + "[" * 20 + "*d" + "]" * 20 + "\n",
                      "line 3, column 24", "alias *d nests deeper than 32 levels once expanded"),
}


@pytest.mark.parametrize("case", YAML_SHAPES, ids=list(YAML_SHAPES))
def test_yaml_shape_is_one_line_from_validate(tmp_path, case):
    """Run as the user runs it, in a process of its own: a RecursionError or an endless walk would
    show as a traceback or a timeout here, not as a crashed test session."""
    text, where, expected = YAML_SHAPES[case]
    path = tmp_path / "sweep.yaml"
    path.write_text("name: bad\n" + text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", "from pldistill.cli import main; main()", "validate", str(path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr, out.stderr[-2000:]
    problem, summary = out.stderr.splitlines()
    assert problem.startswith(f"{path}: {where}: {expected}"), problem
    assert summary == "error: 1 of 1 sweep file(s) have problems (listed above)"


@pytest.mark.parametrize("case", ["recursive_alias", "alias_bomb", "deep_nesting"])
def test_yaml_shape_is_one_line_from_launch(tmp_path, capsys, case):
    text, where, expected = YAML_SHAPES[case]
    code, err = _launch(tmp_path, capsys, "name: bad\n" + text)
    assert code == 2 and _one_line(err).startswith(f"error: {tmp_path / 'sweep.yaml'}: {where}: {expected}")
    _nothing_written(tmp_path)


def test_anchors_and_merge_keys_still_load(tmp_path, capsys):
    """Anchors are plain YAML: sharing a domain, or a merge key on top of one, is fine."""
    path = tmp_path / "sweep.yaml"
    path.write_text("name: ok\nsearch:\n  algorithm: random\n  num_samples: 1\n  space:\n"
                    "    alpha: &u {type: uniform, low: 0.0, high: 1.0}\n    beta: {<<: *u, high: 2.0}\n"
                    "    gamma: *u\n")
    assert run_app(["validate", str(path)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == f"ok: {path} (1 trials, algorithm random, space: alpha, beta, gamma)\n"


def _set(content: dict, dotted: str, value: object) -> dict:
    *parents, last = dotted.split(".")
    node = content
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return content


BAD_VALUES = {  # dotted key in the file, value, what the line must say
    "wrong_type_num_samples": ("search.num_samples", "four", "search.num_samples: expected a valid integer"),
    "wrong_type_epochs": ("base.train.epochs", [3], "base.train.epochs: expected a valid integer"),
    "wrong_type_section": ("base.model", "tiny", "base.model: expected a mapping, got 'tiny'"),
    "alpha_negative": ("fixed.alpha", -1, "fixed.alpha: expected >= 0, got -1"),
    "beta_negative_in_space": ("search.space.beta", {"type": "uniform", "low": -0.5, "high": 1.0},
                               "search.space.beta.low: expected >= 0, got -0.5"),
    "gamma_negative": ("fixed.gamma", -0.1, "fixed.gamma: expected >= 0, got -0.1"),
    "temperature_zero": ("fixed.temperature", 0, "fixed.temperature: expected > 0, got 0"),
    "lora_rank_zero": ("search.space.lora_rank", {"type": "int", "low": 0, "high": 8},
                       "search.space.lora_rank.low: expected >= 1, got 0"),
    "empty_search_space": ("search.space", {}, "search.space: empty: algorithm random needs at least one"),
    "max_concurrent_zero": ("search.max_concurrent_trials", 0, "search.max_concurrent_trials: expected >= 1"),
}


@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_bad_value_is_one_line_naming_file_and_key(tmp_path, capsys, case):
    key, value, expected = BAD_VALUES[case]
    code, err = _launch(tmp_path, capsys, _set(_sweep(tmp_path), key, value))
    line = _one_line(err)
    assert code == 2 and line.startswith(f"error: {tmp_path / 'sweep.yaml'}: {expected}"), line
    _nothing_written(tmp_path)


def test_several_problems_are_one_error_line_each(tmp_path, capsys):
    content = _set(_set(_sweep(tmp_path), "fixed.alpha", -1), "fixed.temperature", 0)
    code, err = _launch(tmp_path, capsys, content)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 2 and "Traceback" not in err
    assert all(ln.startswith(f"error: {tmp_path / 'sweep.yaml'}: fixed.") for ln in lines), lines
    _nothing_written(tmp_path)


def test_more_concurrent_trials_than_cpus_fails_before_anything_is_written(tmp_path, capsys, monkeypatch):
    import pldistill.sweep.launch as launch_module

    def must_not_run(*_a, **_k):
        raise AssertionError("work started before the resource check")

    monkeypatch.setattr(launch_module, "prepare_sweep", must_not_run)
    monkeypatch.setattr(launch_module, "_start_ray", must_not_run)
    content = _sweep(tmp_path)
    content["search"]["max_concurrent_trials"] = 3
    content["resources"] = {"workers_per_trial": 2}
    code, err = _launch(tmp_path, capsys, content, opts=("--num-cpus", "4"))
    line = _one_line(err)
    assert code == 2 and "sweep.yaml" in line and "search.max_concurrent_trials: 3 trials x 2 CPU" in line
    assert "at most 2 fit at once" in line
    _nothing_written(tmp_path)


def test_results_folder_not_writable(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    code, err = _launch(tmp_path, capsys, _sweep(tmp_path))
    line = _one_line(err)
    assert code == 2 and str(blocker / "bad") in line and "not writable" in line
    assert blocker.read_text().startswith("a file") and not (tmp_path / "cache").exists()


# --- manifests ------------------------------------------------------------------------------------


def test_missing_manifests_folder(tmp_path, capsys):
    content = _sweep(tmp_path, data={"source": "emobox", "dataset": "iemocap", "folds": [1],
                                     "manifests": str(tmp_path / "no-such-folder")})
    code, err = _launch(tmp_path, capsys, content)
    line = _one_line(err)
    assert code == 2 and "no-such-folder" in line and ": dataset: " in line
    _nothing_written(tmp_path)


def _good_fold() -> tuple[list, list]:
    return ([_record("toy-a-1"), _record("toy-a-2", "hap")], [_record("toy-b-1"), _record("toy-b-2", "hap")])


def _missing_field() -> tuple[list, list]:
    train, test = _good_fold()
    del test[1]["emo"]
    return train, test


def _unknown_label() -> tuple[list, list]:
    train, test = _good_fold()
    train[1]["emo"] = "fru"
    return train, test


MANIFEST_CASES = {  # fold 1 of dataset toy, the file (relative to the dataset folder) and field in the line
    "missing_field": (_missing_field, "fold_1/toy_test_fold_1.jsonl:2", "emo: missing field"),
    "unknown_label": (_unknown_label, "fold_1/toy_train_fold_1.jsonl:2", "emo: unknown label 'fru'"),
    "empty_fold": (lambda: (_good_fold()[0], []), "fold_1/toy_test_fold_1.jsonl", "lines: empty fold"),
    "not_json": (lambda: (_good_fold()[0], ['{"key": "toy-b-1",']), "fold_1/toy_test_fold_1.jsonl:1",
                 "line: not valid JSON"),
    "not_utf8": (lambda: (_good_fold()[0], []), "fold_1/toy_test_fold_1.jsonl",
                 "fold: manifest is not UTF-8 text"),
}


def _write_case(tmp_path: Path, case: str) -> tuple[Path, str, str]:
    make, where, expected = MANIFEST_CASES[case]
    train, test = make()
    if case == "not_utf8":
        root = _emobox(tmp_path, {1: (train, [])})
        (root / "toy" / "fold_1" / "toy_test_fold_1.jsonl").write_bytes(b'{"key": "caf\xe9"}\n')
    else:
        root = _emobox(tmp_path, {1: (train, test)})
    return root, f"{root / 'toy' / where}", expected


@pytest.mark.parametrize("case", MANIFEST_CASES, ids=list(MANIFEST_CASES))
def test_bad_manifest_via_launch(tmp_path, capsys, case):
    root, where, expected = _write_case(tmp_path, case)
    code, err = _launch(tmp_path, capsys, _emobox_sweep(tmp_path, root))
    line = _one_line(err)
    assert code == 2 and line.startswith(f"error: {where}: {expected}"), line
    _nothing_written(tmp_path)


@pytest.mark.parametrize("case", MANIFEST_CASES, ids=list(MANIFEST_CASES))
def test_bad_manifest_via_data_info(tmp_path, capsys, case):
    root, where, expected = _write_case(tmp_path, case)
    assert run_app(["data", "info", str(root), "toy"]) == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert line.startswith(f"error: {where}: {expected}"), line
    assert captured.out == ""


def test_missing_manifest_file(tmp_path, capsys):
    root = _emobox(tmp_path, {1: _good_fold()})
    missing = root / "toy" / "fold_1" / "toy_train_fold_1.jsonl"
    missing.unlink()
    code, err = _launch(tmp_path, capsys, _emobox_sweep(tmp_path, root))
    line = _one_line(err)
    assert code == 2 and line.startswith(f"error: {missing}: fold: missing manifest file")
    _nothing_written(tmp_path)


def test_unreadable_manifest(tmp_path, capsys):
    root = _emobox(tmp_path, {1: _good_fold()})
    path = root / "toy" / "fold_1" / "toy_test_fold_1.jsonl"
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: permissions are not enforced (not_utf8 covers an unreadable file)")
        code, err = _launch(tmp_path, capsys, _emobox_sweep(tmp_path, root))
        line = _one_line(err)
        assert code == 2 and line.startswith(f"error: {path}: fold: cannot read manifest: Permission denied")
        _nothing_written(tmp_path)
    finally:
        path.chmod(0o600)


# --- audio ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """8 synthetic clips in EmoBox format (dataset ``synthetic``, 2 folds)."""
    from pldistill.data.synth import synthesize_corpus

    return synthesize_corpus(tmp_path_factory.mktemp("corpus"), speakers=2, teacher_speakers=0, per_class=1, folds=2, seed=5)


def _corrupt_first_test_clip(corpus: Path, tmp_path: Path, how: str) -> tuple[Path, str, str]:
    """A copy of ``corpus`` whose first test clip of fold 1 is corrupt or empty; (root, wav, key)."""
    root = tmp_path / "manifests"
    shutil.copytree(corpus, root)
    rec = json.loads((root / "synthetic" / "fold_1" / "synthetic_test_fold_1.jsonl").read_text().splitlines()[0])
    wav = root / rec["wav"]
    if how == "corrupt":
        wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt not really" * 4)
    elif how == "missing":
        wav.unlink()
    else:
        import soundfile as sf

        sf.write(wav, [], 16000)
    return root, str(wav), rec["key"]


@pytest.mark.parametrize("how", ["corrupt", "empty", "missing"])
def test_bad_wav_fails_naming_the_wav(tmp_path, capsys, corpus, how):
    root, wav, _ = _corrupt_first_test_clip(corpus, tmp_path, how)
    manifest = root / "synthetic" / "fold_1" / "synthetic_test_fold_1.jsonl"
    code, err = _launch(tmp_path, capsys, _emobox_sweep(tmp_path, root, dataset="synthetic"))
    line = _one_line(err)
    assert code == 2 and line.startswith(f"error: {manifest}:1: wav: ") and wav in line
    _nothing_written(tmp_path)


def test_bad_wav_skipped_is_reported_once_and_the_run_goes_on(tmp_path, capsys, corpus, caplog):
    root, wav, key = _corrupt_first_test_clip(corpus, tmp_path, "corrupt")
    content = _emobox_sweep(tmp_path, root, dataset="synthetic", on_bad_audio="skip")
    content["base"]["model"] = {"teacher": str(tmp_path / "no-teacher")}  # the stage after the features
    with caplog.at_level(logging.WARNING, logger="pldistill.data.features"):
        code, err = _launch(tmp_path, capsys, content)
    reports = [r.getMessage() for r in caplog.records if r.name == "pldistill.data.features"]
    assert len(reports) == 1 and "\n" not in reports[0], reports
    assert reports[0].startswith(f"skipping clip {key} ") and wav in reports[0]
    line = _one_line(err)  # the features were computed without the clip; the teacher stage came next
    assert code == 2 and "no-teacher" in line and "model.teacher" in line
    assert len(list((tmp_path / "cache" / "features").glob("features-*.npz"))) == 1
    _nothing_written(tmp_path, cache=False)


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    from pldistill.models.loading import build_tiny_teacher

    path = tmp_path_factory.mktemp("teacher") / "tiny-teacher"
    teacher = build_tiny_teacher(0)
    teacher.model.save_pretrained(path)
    teacher.tokenizer.save_pretrained(path)
    return path


def test_missing_teacher_checkpoint_then_debug_shows_traceback(tmp_path, capsys):
    content = _sweep(tmp_path, model={"teacher": str(tmp_path / "no-teacher")})
    code, err = _launch(tmp_path, capsys, content)
    line = _one_line(err)
    assert code == 2 and "no-teacher" in line and "model.teacher" in line
    with pytest.raises(InputError):
        _launch(tmp_path, capsys, content, "--debug")


@pytest.mark.parametrize("what", ["weights", "config"])
def test_corrupt_teacher_checkpoint(tmp_path, capsys, corpus, teacher_dir, what):
    broken = tmp_path / "teacher"
    shutil.copytree(teacher_dir, broken)
    if what == "weights":
        blob = (broken / "model.safetensors").read_bytes()
        (broken / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    else:
        (broken / "config.json").write_text('{"model_type": "qwen2_audio", ')
    content = _emobox_sweep(tmp_path, corpus, dataset="synthetic")
    content["base"]["model"] = {"teacher": str(broken)}
    code, err = _launch(tmp_path, capsys, content)
    line = _one_line(err)
    assert code == 2 and line.startswith(f"error: {broken}: model.teacher: cannot load checkpoint: "), line
    _nothing_written(tmp_path, cache=False)
    teachers = tmp_path / "cache" / "teachers"  # no teacher entry, whole or half
    assert not teachers.exists() or not [p for p in teachers.iterdir() if p.is_dir()]


def test_student_tokenizer_mismatch_fails_before_anything_is_written(tmp_path, capsys, corpus, teacher_dir,
                                                                     monkeypatch):
    import pldistill.sweep.launch as launch_module
    from pldistill.models.loading import load_student_llm
    from pldistill.models.tokenizer import build_tiny_tokenizer

    def must_not_run(*_a, **_k):
        raise AssertionError("Ray started before the tokenizer check")

    monkeypatch.setattr(launch_module, "_start_ray", must_not_run)
    other = build_tiny_tokenizer(vocab_size=400)
    student = tmp_path / "student"
    load_student_llm("tiny", other).save_pretrained(student)
    other.save_pretrained(student)
    capsys.readouterr()  # save_pretrained's progress bar is not the launch's output
    content = _emobox_sweep(tmp_path, corpus, dataset="synthetic")
    content["base"]["model"] = {"teacher": str(teacher_dir), "student_llm": str(student),
                                "teacher_finetune": {"enabled": False}, "teacher_mode": "online"}
    code, err = _launch(tmp_path, capsys, content)
    line = _one_line(err)
    assert code == 2 and line.startswith(f"error: {student}: tokenizer: disagrees with the teacher's tokenizer: ")
    _nothing_written(tmp_path)


# --- query ----------------------------------------------------------------------------------------


def test_query_sql_error_is_one_line_then_debug_shows_traceback(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert run_app(["query", "SELEC * FROM trials", "--results", str(tmp_path / "results")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: query: Parser Error: syntax error")
    with pytest.raises(InputError):
        run_app(["--debug", "query", "SELEC * FROM trials", "--results", str(tmp_path / "results")])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
