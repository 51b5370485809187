"""Bad input below the CLI: checkpoints (tokenizer mismatch, corrupt weights), skipped audio, and
the resources a local Ray would have. Each is one InputError line naming the file and the field."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pldistill.errors import InputError
from pldistill.sweep import load_sweep

# --- teacher and student tokenizers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_tok(tmp_path_factory):
    """The teacher's tokenizer as loading a saved tiny teacher checkpoint gives it."""
    from pldistill.models.loading import build_tiny_teacher, load_teacher

    path = tmp_path_factory.mktemp("ckpt") / "teacher"
    teacher = build_tiny_teacher(0)
    teacher.model.save_pretrained(path)
    teacher.tokenizer.save_pretrained(path)
    return load_teacher(str(path)).tokenizer


def _student(tmp_path: Path, tokenizer, name: str = "student") -> Path:
    """A tiny student LLM checkpoint saved with ``tokenizer`` (None: no tokenizer files)."""
    from pldistill.models.loading import load_student_llm
    from pldistill.models.tokenizer import build_tiny_tokenizer

    path = tmp_path / name
    load_student_llm("tiny", tokenizer or build_tiny_tokenizer()).save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def _reordered_audio_token():
    import pldistill.models.tokenizer as tokmod

    order = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|audio_eos|>", tokmod.AUDIO_TOKEN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tokmod, "SPECIAL_TOKENS", order)
        return tokmod.build_tiny_tokenizer()


def _extra_special_token():
    from pldistill.models.tokenizer import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|extra|>"]})
    return tok


def _other_vocabulary():
    from pldistill.models.tokenizer import build_tiny_tokenizer

    return build_tiny_tokenizer(vocab_size=400)


MISMATCHES = {
    "audio_token": (_reordered_audio_token, "audio token '<|AUDIO|>' has id 5, the teacher's 4"),
    "special_token": (_extra_special_token, "special token '<|extra|>' has id 320, the teacher's none"),
    "vocabulary": (_other_vocabulary, "vocabulary: "),
}


@pytest.mark.parametrize("case", MISMATCHES, ids=list(MISMATCHES))
def test_student_whose_tokenizer_differs_is_refused(tmp_path, teacher_tok, case):
    from pldistill.models.loading import load_student_llm

    make, words = MISMATCHES[case]
    path = _student(tmp_path, make())
    with pytest.raises(InputError) as info:
        load_student_llm(str(path), teacher_tok)
    msg = str(info.value)
    assert info.value.file == str(path) and info.value.field == "tokenizer" and "\n" not in msg
    assert msg.startswith(f"{path}: tokenizer: disagrees with the teacher's tokenizer: {words}"), msg


def test_student_with_the_teachers_tokenizer_or_none_loads(tmp_path, teacher_tok):
    from pldistill.models.loading import load_student_llm

    same = load_student_llm(str(_student(tmp_path, teacher_tok, "same")), teacher_tok)
    bare = load_student_llm(str(_student(tmp_path, None, "bare")), teacher_tok)
    assert same.get_input_embeddings().weight.shape[0] >= len(teacher_tok)
    assert bare.get_input_embeddings().weight.shape[0] >= len(teacher_tok)


def test_teacher_may_know_more_tokens_than_the_student(tmp_path):
    """Qwen2-Audio adds audio tokens to Qwen2's vocabulary: a student without them is fine."""
    from pldistill.models.loading import check_student_tokenizer
    from pldistill.models.tokenizer import build_tiny_tokenizer

    student = build_tiny_tokenizer()
    teacher = build_tiny_tokenizer()
    teacher.add_special_tokens({"additional_special_tokens": ["<|audio_extra|>"]})
    for name, tok in (("small", student), ("big", teacher)):
        tok.save_pretrained(tmp_path / name)
        (tmp_path / name / "config.json").write_text("{}")  # the check reads no weights
    check_student_tokenizer(tmp_path / "small", teacher)  # no error
    with pytest.raises(InputError, match="tokenizer: disagrees"):  # ... but not the other way round
        check_student_tokenizer(tmp_path / "big", student)


def test_missing_student_checkpoint_and_teacher_tokenizer(tmp_path):
    from pldistill.models.loading import check_student_tokenizer, load_teacher_tokenizer
    from pldistill.models.tokenizer import build_tiny_tokenizer

    with pytest.raises(InputError) as info:
        check_student_tokenizer(tmp_path / "no-student", build_tiny_tokenizer())
    assert str(info.value).startswith(f"{tmp_path / 'no-student'}: model.student_llm: checkpoint folder not found")
    with pytest.raises(InputError, match="model.teacher: checkpoint folder not found"):
        load_teacher_tokenizer(str(tmp_path / "no-teacher"))
    assert load_teacher_tokenizer("tiny").get_vocab() == build_tiny_tokenizer().get_vocab()


def test_unloadable_student_tokenizer(tmp_path, teacher_tok):
    from pldistill.models.loading import check_student_tokenizer

    path = tmp_path / "student"
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "tokenizer.json").write_text("{not json")
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    with pytest.raises(InputError) as info:
        check_student_tokenizer(path, teacher_tok)
    assert str(info.value).startswith(f"{path}: tokenizer: cannot load the student's tokenizer: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["teacher", "student_llm"])
def test_corrupt_weights_are_one_line(tmp_path, teacher_tok, spec):
    from pldistill.models.loading import load_student_llm, load_teacher

    path = _student(tmp_path, teacher_tok)
    if spec == "teacher":
        from pldistill.models.loading import build_tiny_teacher

        path = tmp_path / "teacher"
        build_tiny_teacher(0).model.save_pretrained(path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError) as info:
        load_teacher(str(path)) if spec == "teacher" else load_student_llm(str(path), teacher_tok)
    assert str(info.value).startswith(f"{path}: model.{spec}: cannot load checkpoint: ")
    assert "\n" not in str(info.value)


# --- audio: skip reports the clip by name ---------------------------------------------------------


def test_skipped_clip_is_reported_on_one_line_and_the_fold_goes_on(tmp_path, caplog):
    from pldistill.config import DataConfig, TrialConfig
    from pldistill.data.synth import synthesize_corpus
    from pldistill.train.dataset import prepare_fold

    root = synthesize_corpus(tmp_path / "corpus", speakers=2, teacher_speakers=0, per_class=1, folds=2, seed=5)
    rec = json.loads((root / "synthetic" / "fold_1" / "synthetic_test_fold_1.jsonl").read_text().splitlines()[0])
    (root / rec["wav"]).write_bytes(b"")
    data = DataConfig(source="emobox", dataset="synthetic", manifests=root, folds=[1], on_bad_audio="skip")
    cfg = TrialConfig(data=data, cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="pldistill.data.features"):
        fold = prepare_fold(cfg, 1)
    reports = [r.getMessage() for r in caplog.records]
    assert len(reports) == 1 and reports[0].startswith(f"skipping clip {rec['key']} (data.on_bad_audio: skip): ")
    assert str(root / rec["wav"]) in reports[0] and "\n" not in reports[0]
    keys = [ex.key for ex in fold.train + fold.val + fold.test]
    assert rec["key"] not in keys and len(keys) == 7
    failing = cfg.model_copy(update={"data": data.model_copy(update={"on_bad_audio": "fail"})})
    with pytest.raises(InputError) as info:  # the default fails on the same clip, naming it
        prepare_fold(failing, 1)
    assert info.value.field == "wav" and str(root / rec["wav"]) in str(info.value)


# --- resources of a local Ray, known before it starts ---------------------------------------------


def _sweep(tmp_path: Path, concurrent: int, workers: int, gpus: float = 0.0):
    text = (f"name: r\nsearch:\n  algorithm: random\n  num_samples: 4\n  max_concurrent_trials: {concurrent}\n"
            "  space: {alpha: {type: uniform, low: 0.0, high: 1.0}}\n"
            f"resources: {{workers_per_trial: {workers}, gpus_per_worker: {gpus}}}\n")
    (tmp_path / "r.yaml").write_text(text)
    return load_sweep(tmp_path / "r.yaml")


def test_local_resources_checked_before_ray_starts(tmp_path):
    from pldistill.sweep.resources import check_local_resources, require_local_resources

    assert check_local_resources(_sweep(tmp_path, 2, 2), num_cpus=4) == []
    sweep = _sweep(tmp_path, 3, 2)
    with pytest.raises(InputError) as info:
        require_local_resources(sweep, num_cpus=4)
    msg = str(info.value)
    assert msg == (f"{tmp_path / 'r.yaml'}: search.max_concurrent_trials: 3 trials x 2 CPU (2 worker(s) x 1 CPU) "
                   "= 6 CPU, but the cluster has 4; at most 2 fit at once")
    too_big = check_local_resources(_sweep(tmp_path, 1, 8), num_cpus=4)
    assert too_big == [f"{tmp_path / 'r.yaml'}: resources: one trial needs 8 CPU (8 worker(s) x 1 CPU), "
                       "but the cluster has 4"]


def test_local_resources_default_to_this_machine(tmp_path, monkeypatch):
    import pldistill.sweep.resources as space

    monkeypatch.setattr(space.os, "cpu_count", lambda: 2)
    assert space.check_local_resources(_sweep(tmp_path, 1, 2)) == []
    assert "at most 1 fit" in space.check_local_resources(_sweep(tmp_path, 2, 2))[0]
    monkeypatch.setattr(space, "_visible_gpus", lambda: 0)
    gpu = space.check_local_resources(_sweep(tmp_path, 1, 1, gpus=1.0))
    assert gpu and "resources.gpus_per_worker: 1 GPU per worker asked for, but the cluster has no GPU" in gpu[0]
