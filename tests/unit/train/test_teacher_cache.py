"""The teacher cache: cached and online steps agree exactly; the cache is keyed, idempotent, atomic.

Tiny random-weight models and random log-mel features made in-process; no fine-tuning, no Ray.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _clips import LABELS, WINDOW, random_examples
from _objectives import objective as build
from _pseudo import pseudo_targets
from _steps import assert_same_step, step_and_grads

from pldistill.config import TrialConfig
from pldistill.losses import OBJECTIVES, WEIGHTING_VARIANTS
from pldistill.models.audiolm import AudioLMHead, encode_audio
from pldistill.models.inputs import collate, pseudo_target_inputs
from pldistill.models.loading import build_student, build_tiny_teacher, load_student_llm, set_encoder_window
from pldistill.train.dataset import FoldData
from pldistill.train.step import DistillModels, distill_step
from pldistill.train.teacher_cache import (
    TeacherCache,
    ensure_teacher_cache,
    read_rows,
    teacher_cache_key,
    write_rows,
)


def _fold(seed: int = 0) -> FoldData:
    return FoldData(dataset="synthetic", fold=1, labels=LABELS, window_s=WINDOW, features_key=f"feat{seed}",
                    train=random_examples(10, seed, "tr"), val=random_examples(3, seed + 1, "va"),
                    test=random_examples(3, seed + 2, "te"))


def _cfg(tmp_path, **model) -> TrialConfig:
    return TrialConfig.model_validate({"cache_dir": str(tmp_path / "cache"), "output_dir": str(tmp_path / "run"),
                                       "model": {"teacher_finetune": {"enabled": False}, **model}})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("tc")
    teacher = build_tiny_teacher(seed=3)
    set_encoder_window(teacher.audio_tower, WINDOW)
    teacher.model.eval().requires_grad_(False)
    tok = teacher.tokenizer
    student = build_student(teacher, load_student_llm("tiny", tok, seed=1), lora_rank=4, lora_alpha=8.0)
    head = AudioLMHead(student.base_model.model)
    data, cfg = _fold(), _cfg(tmp)
    # batch size 3 when building: the cache's padding differs from the training batch's
    cache = TeacherCache(ensure_teacher_cache(cfg, data, teacher, log=lambda m: None, batch_size=3))
    return teacher, head, data, cfg, cache


@pytest.fixture(scope="module")
def metadata_setup(setup, tmp_path_factory):
    """``setup``'s fold cached under ``pseudo_target: metadata``: the teacher forced on pseudo targets."""
    teacher, head, data, _, _ = setup
    cfg = _cfg(tmp_path_factory.mktemp("tc_meta"))
    cfg.hparams.pseudo_target = "metadata"
    targets = pseudo_targets(data.train + data.val + data.test, LABELS)
    cache = TeacherCache(ensure_teacher_cache(cfg, data, teacher, log=lambda m: None, batch_size=3,
                                              pseudo_targets=targets))
    return teacher, head, data, cfg, cache, targets




CASES = [(o, w, 1.0) for o in OBJECTIVES if OBJECTIVES[o].family == "audiolm" for w in WEIGHTING_VARIANTS
         if w == "attention_last" or "cka" in OBJECTIVES[o].weights]
# CAAD: online mixes the two teacher paths' logits, cached their stored hidden states; several a
CASES += [("caad", "attention_last", a) for a in (0.0, 0.5, 2.0)]


@pytest.mark.parametrize(("objective", "weighting", "contrast"), CASES)
@pytest.mark.parametrize("chunk", [None, 7])
def test_cached_step_equals_online_step(setup, objective, weighting, contrast, chunk):
    """Every term, the total and every student gradient agree in fp32 to 1e-5."""
    teacher, head, data, _, cache = setup
    obj = build(objective, alpha=0.7, beta=0.8, gamma=1.1, temperature=2.0, kl_chunk_size=chunk,
                llava_kd_relation=0.5, caad_contrast=contrast)
    common = dict(student=head, vocab=len(teacher.tokenizer), objective=obj, weighting=weighting, sharpen_p=3.0)
    online = DistillModels(audio_tower=teacher.audio_tower, teacher=AudioLMHead(teacher.model), **common)
    cached = DistillModels(audio_tower=None, teacher=None, cache=cache, **common)
    batch = collate([data.train[i] for i in (4, 0, 7, 2, 9)], teacher.tokenizer, LABELS)
    out_on, g_on = step_and_grads(online, head, batch)
    out_ca, g_ca = step_and_grads(cached, head, batch)
    assert set(out_on.terms) == set(out_ca.terms) == set(OBJECTIVES[objective].weights)
    assert_same_step(out_ca, g_ca, out_on, g_on)


@pytest.mark.parametrize(("objective", "contrast"), [("caad", 0.0), ("caad", 0.5), ("caad", 2.0), ("pl_distill", 1.0)])
@pytest.mark.parametrize("chunk", [None, 7])
def test_cached_step_equals_online_step_on_a_metadata_pseudo_target(metadata_setup, objective, contrast, chunk):
    """CAAD with ``pseudo_target: metadata``: the cache holds both teacher paths' hidden states at the
    pseudo target's response rows; every term, the total and every student gradient as online, to 1e-5.
    (PL-Distill too: its AwCKA weights then read the attention of the pseudo target's rows.)"""
    teacher, head, data, _, cache, targets = metadata_setup
    obj = build(objective, alpha=0.7, beta=0.8, gamma=1.1, temperature=2.0, kl_chunk_size=chunk,
                caad_contrast=contrast)
    common = dict(student=head, vocab=len(teacher.tokenizer), objective=obj, sharpen_p=3.0)
    online = DistillModels(audio_tower=teacher.audio_tower, teacher=AudioLMHead(teacher.model), **common)
    cached = DistillModels(audio_tower=None, teacher=None, cache=cache, **common)
    examples = [data.train[i] for i in (4, 0, 7, 2, 9)]
    batch = collate(examples, teacher.tokenizer, LABELS)
    pseudo = pseudo_target_inputs(examples, teacher.tokenizer, LABELS, targets)
    assert int(pseudo.response_mask.sum()) > int(batch.response_mask.sum())
    out_on, g_on = step_and_grads(online, head, batch, pseudo)
    out_ca, g_ca = step_and_grads(cached, head, batch, pseudo)
    assert list(out_on.terms) == list(out_ca.terms) == list(OBJECTIVES[objective].weights)
    assert_same_step(out_ca, g_ca, out_on, g_on)
    # the rows are the pseudo target's: the gold batch does not fit them
    with pytest.raises(ValueError, match="do not match"):
        distill_step(cached, batch)


def test_cached_encoder_output_equals_the_encoder(setup):
    teacher, _, data, _, cache = setup
    batch = collate(data.test, teacher.tokenizer, LABELS)
    with torch.no_grad():
        enc = encode_audio(teacher.audio_tower, batch.input_features, batch.feature_attention_mask)
    got = cache.encoded(batch.keys)
    assert torch.equal(got.num_tokens, enc.num_tokens)
    for i, n in enumerate(enc.num_tokens.tolist()):
        torch.testing.assert_close(got.features[i, :n], enc.features[i, :n], rtol=1e-5, atol=1e-5)
        assert not got.features[i, n:].any()


def test_build_is_idempotent_and_complete(setup, tmp_path):
    teacher, _, data, cfg, cache = setup
    again = ensure_teacher_cache(cfg, data, teacher, log=lambda m: None,
                                 write_rows=lambda d: pytest.fail("a complete cache must be reused"))
    assert again == cache.path
    assert len(cache) == 16 and cache.meta["rows"] == 16 and cache.meta["teacher_rows"] == 10
    assert not [p for p in cache.path.parent.iterdir() if ".tmp-" in p.name]


def test_key_changes_with_what_the_outputs_depend_on(tmp_path):
    data, cfg = _fold(), _cfg(tmp_path)
    base = teacher_cache_key(cfg, data)
    assert base == teacher_cache_key(_cfg(tmp_path), _fold())
    changed = [
        teacher_cache_key(cfg, dataclasses.replace(data, window_s=2.0)),
        teacher_cache_key(cfg, dataclasses.replace(data, features_key="other")),
        teacher_cache_key(cfg, dataclasses.replace(data, labels=LABELS[::-1])),
        teacher_cache_key(_cfg(tmp_path, init_seed=1), data),
        teacher_cache_key(_cfg(tmp_path, teacher="/some/other/teacher"), data),
        teacher_cache_key(_cfg(tmp_path, teacher_cache_dtype="bfloat16"), data),
        teacher_cache_key(cfg.model_copy(update={"hparams": cfg.hparams.model_copy(
            update={"pseudo_target": "metadata"})}), data),  # the teacher forced on another answer
        teacher_cache_key(cfg, dataclasses.replace(data, test=data.test[:2])),
        # the same clips, one moved from train to val: the teacher runs on a different set
        teacher_cache_key(cfg, dataclasses.replace(data, train=data.train[1:], val=data.val + data.train[:1])),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_key_changes_with_the_prompt(tmp_path, monkeypatch):
    import pldistill.models.inputs as inputs
    import pldistill.train.teacher_cache as tc

    data, cfg = _fold(), _cfg(tmp_path)
    before = teacher_cache_key(cfg, data)
    other = dataclasses.replace(inputs.PromptTemplate(), prompt="Which emotion? {labels}.")
    monkeypatch.setattr(tc, "PromptTemplate", lambda: other)
    monkeypatch.setattr("pldistill.train.teacher.PromptTemplate", lambda: other)
    assert teacher_cache_key(cfg, data) != before


def test_failed_build_leaves_no_folder(setup, tmp_path):
    teacher, _, data, _, _ = setup
    cfg = _cfg(tmp_path)

    def half(rows_dir):
        write_rows(read_rows(setup[4].path / "rows").slice(0, 5), rows_dir / "part.arrow")

    with pytest.raises(RuntimeError, match="5 rows written, 16 clips expected"):
        ensure_teacher_cache(cfg, data, teacher, log=lambda m: None, write_rows=half)
    assert not list((cfg.cache_dir / "teacher_outputs").iterdir()) or \
        all(p.name.startswith(".") and p.name.endswith(".lock")
            for p in (cfg.cache_dir / "teacher_outputs").iterdir())


def test_rows_join_by_sample_id_whatever_their_order(setup, tmp_path):
    """Shuffle the stored rows across files: every clip still gets its own arrays."""
    _, _, data, _, cache = setup
    table = read_rows(cache.path / "rows")
    perm = np.random.default_rng(0).permutation(table.num_rows)
    shuffled = tmp_path / "shuffled"
    (shuffled / "rows").mkdir(parents=True)
    write_rows(table.take(perm[:7]), shuffled / "rows" / "b.arrow")
    write_rows(table.take(perm[7:]), shuffled / "rows" / "a.arrow")
    for name in ("meta.json", "lm_head.safetensors"):
        (shuffled / name).write_bytes((cache.path / name).read_bytes())
    other = TeacherCache(shuffled)
    for ex in data.train + data.test:
        for col in ("encoded", "hidden_response", "hidden_response_text", "attention") if ex in data.train \
                else ("encoded",):
            assert torch.equal(other.row(ex.key, col), cache.row(ex.key, col))
    with pytest.raises(KeyError, match="not in the teacher cache"):
        other.row("nope", "encoded")


def test_bfloat16_storage_is_close(setup, tmp_path):
    teacher, _, data, _, cache = setup
    cfg = _cfg(tmp_path, teacher_cache_dtype="bfloat16")
    half = TeacherCache(ensure_teacher_cache(cfg, data, teacher, log=lambda m: None))
    a, b = half.row("tr1", "hidden_audio"), cache.row("tr1", "hidden_audio")
    assert not torch.equal(a, b)
    torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(("model", "expected"), [({}, "cached"), ({"teacher_mode": "online"}, "online"),
                                                 ({"teacher_mode": "cached"}, "cached")])
def test_sweeps_default_to_cached_unless_the_file_says_otherwise(model, expected):
    from pldistill.sweep.config import SweepConfig
    from pldistill.sweep.space import resolve_trial_config

    sweep = SweepConfig.model_validate({"name": "s", "base": {"model": model},
                                        "search": {"algorithm": "random", "num_samples": 1,
                                                   "space": {"alpha": {"type": "uniform", "low": 0, "high": 1}}}})
    assert resolve_trial_config(sweep, {"alpha": 0.5}, trial_id="t").model.teacher_mode == expected
    assert TrialConfig().model.teacher_mode == "online"


def test_teacher_outputs_only_for_training_clips(setup):
    """The losses see only training clips: val and test rows hold the encoder output alone, and asking
    for their teacher outputs is a clear error (never a silently empty array)."""
    _, _, data, _, cache = setup
    table = read_rows(cache.path / "rows")
    flags = dict(zip(table.column("key").to_pylist(), table.column("teacher").to_pylist()))
    assert flags == {ex.key: ex in data.train for ex in data.train + data.val + data.test}
    for ex in data.val + data.test:
        assert cache.row(ex.key, "encoded").shape[0] == ex.num_audio_tokens
        for col in ("teacher_audio", "attention", "hidden_audio", "hidden_response", "hidden_response_text"):
            with pytest.raises(KeyError, match="not a training clip"):
                cache.row(ex.key, col)
    with pytest.raises(KeyError, match="not a training clip"):
        cache.batch([data.train[0].key, data.val[0].key])


def test_missing_teacher_outputs_fail_the_build(setup, tmp_path):
    """A writer that skipped the teacher for a training clip leaves no cache behind."""
    import pyarrow as pa

    teacher, _, data, _, cache = setup
    cfg = _cfg(tmp_path)

    def no_teacher(rows_dir):
        table = read_rows(cache.path / "rows")
        table = table.set_column(table.schema.get_field_index("teacher"), "teacher",
                                 pa.array([False] * table.num_rows))
        write_rows(table, rows_dir / "part.arrow")

    with pytest.raises(RuntimeError, match="teacher outputs for 0 clips, expected for the 10 training clips"):
        ensure_teacher_cache(cfg, data, teacher, log=lambda m: None, write_rows=no_teacher)
    assert not [p for p in (cfg.cache_dir / "teacher_outputs").iterdir() if not p.name.endswith(".lock")]


def _mapped_ranges(files) -> list[tuple[int, int]]:
    names = {str(f.resolve()) for f in files}
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5] in names:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((lo, hi))
    return ranges


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the process's mappings (Linux)")
def test_reader_memory_maps_the_rows(setup):
    """Opening a cache copies none of the arrays into memory: they stay views of the mapped files,
    and a clip's values are copied out only when asked for (and are then writable tensors)."""
    import pyarrow as pa

    _, _, data, _, cache = setup
    files = sorted((cache.path / "rows").glob("*.arrow"))
    assert len(files) > 1  # batch 3 when built: several files, so several chunks to look up
    size = sum(f.stat().st_size for f in files)
    before = pa.total_allocated_bytes()
    again = TeacherCache(cache.path)
    assert pa.total_allocated_bytes() - before < size / 20
    mapped = _mapped_ranges(files)  # address ranges of the files' mappings in this process
    for chunks in again._arrays.values():
        for _, values in chunks:
            assert not values.flags.writeable
            if values.size:
                assert any(lo <= values.ctypes.data < hi for lo, hi in mapped), "values not in a mapped file"
    ex = data.train[-1]
    row = again.row(ex.key, "hidden_audio")
    assert row.shape == (ex.num_audio_tokens, again.meta["hidden"])
    row += 1.0  # a copy: the file's pages are untouched
    assert torch.equal(again.row(ex.key, "hidden_audio"), cache.row(ex.key, "hidden_audio"))


def test_a_checkpoint_teacher_is_scored_once_per_fold_and_loads_light(tmp_path, monkeypatch):
    """A real teacher used as is: its val/test figures are computed once (then read from the cache
    folder), and a trial that reads the teacher cache loads it without its language model."""
    import pldistill.train.teacher as teacher_mod
    from pldistill.train.teacher import ensure_teacher

    path = tmp_path / "teacher"
    saved = build_tiny_teacher(seed=3)
    saved.model.save_pretrained(path, safe_serialization=True)
    saved.tokenizer.save_pretrained(path)
    data, cfg = _fold(), _cfg(tmp_path, teacher=str(path))
    full, metrics = ensure_teacher(cfg, data, log=lambda m: None)
    assert set(metrics) >= {"val_ua", "test_ua"}
    assert all(p.device.type == "cpu" for p in full.model.parameters())
    assert len(list((cfg.cache_dir / "teachers").glob("*/metrics.json"))) == 1

    monkeypatch.setattr(teacher_mod, "_teacher_metrics", lambda *a: pytest.fail("scored twice"))
    light, again = ensure_teacher(cfg, data, log=lambda m: None, encoder_only=True)
    assert again == metrics
    assert light.audio_tower.embed_positions.weight.shape[0] == int(WINDOW * 50)  # window set
    llm = light.model.model.language_model
    assert all(p.device.type == "meta" for p in llm.parameters())
    for (name, a), b in zip(full.audio_tower.named_parameters(), light.audio_tower.parameters()):
        assert torch.equal(a, b), name
    assert ensure_teacher(cfg, data, log=lambda m: None)[1] == metrics
