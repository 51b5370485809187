"""EmoDistill teachers: they learn a learnable label, are cached per fold, are deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pldistill.errors import InputError
from pldistill.train.emodistill_teachers import (
    FoldClips,
    LinguisticSettings,
    ProsodicSettings,
    build_word_tokenizer,
    ensure_linguistic_teacher,
    ensure_prosodic_teacher,
    fit_standardizer,
    train_linguistic_teacher,
    train_prosodic_teacher,
)
from pldistill.train.emodistill_teachers import linguistic as linguistic_mod
from pldistill.train.emodistill_teachers import prosodic as prosodic_mod

N, C = 120, 4
PROSODIC = ProsodicSettings(hidden=64, emb_dim=32, epochs=20)
LINGUISTIC = LinguisticSettings(epochs=25)  # hidden 64: narrower tiny BERTs learn this unreliably
_WORDS = {0: ["happy", "joy", "great"], 1: ["angry", "hate", "furious"], 2: ["sad", "cry", "lost"],
          3: ["okay", "fine", "table"]}
_FILLER = ["the", "a", "we", "it", "is", "was", "today", "then", "so", "and"]


def _quiet(_: str) -> None:
    pass


def _clips(seed: int = 0) -> FoldClips:
    labels = np.arange(N) % C
    perm = np.random.default_rng(seed).permutation(N)
    return FoldClips("synthetic", 1, labels, C, perm[:80], perm[80:100], perm[100:])


def _features(clips: FoldClips, seed: int = 0) -> np.ndarray:
    """Class prototypes plus noise, each of the 88 columns on its own scale (1e-2 .. 1e3), as raw
    eGeMAPS functionals are: learnable only after standardisation."""
    rng = np.random.default_rng(seed)
    protos = 0.7 * rng.normal(size=(C, 88))
    x = protos[clips.labels] + rng.normal(size=(N, 88))
    return (x * rng.uniform(0.01, 1000, size=88)).astype(np.float32)


def _transcripts(clips: FoldClips, seed: int = 0) -> list[str]:
    """Filler words around one emotion word of the clip's class."""
    rng = np.random.default_rng(seed)
    return [" ".join([*rng.choice(_FILLER, 4), str(rng.choice(_WORDS[int(y)])), *rng.choice(_FILLER, 3)])
            for y in clips.labels]


def test_prosodic_teacher_learns_the_label(monkeypatch: pytest.MonkeyPatch) -> None:
    clips = _clips()
    seen: list[np.ndarray] = []

    def spy(features: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(train)
        return fit_standardizer(features, train)

    monkeypatch.setattr(prosodic_mod, "fit_standardizer", spy)
    out = train_prosodic_teacher(_features(clips), clips, settings=PROSODIC, log=_quiet)
    assert len(seen) == 1 and np.array_equal(seen[0], clips.train)  # statistics of the train clips only
    assert out.logits.shape == (N, C) and out.embeddings.shape == (N, 32)
    assert out.logits.dtype == np.float32 and out.embedding_dim == 32
    assert out.metrics["val_ua"] > 0.6 and out.metrics["test_ua"] > 0.6  # chance: 0.25
    assert set(out.metrics) == {f"{s}_{m}" for s in ("val", "test") for m in ("ua", "wa", "f1")}


def test_prosodic_resnet_learns_the_label() -> None:
    clips = _clips()
    settings = ProsodicSettings(arch="resnet", hidden=64, emb_dim=16, epochs=20)
    out = train_prosodic_teacher(_features(clips), clips, settings=settings, log=_quiet)
    assert out.embeddings.shape == (N, 16) and out.metrics["test_ua"] > 0.6


def test_standardizer_uses_train_rows_only() -> None:
    clips = _clips()
    x = _features(clips)
    mean, std = fit_standardizer(x, clips.train)
    z = (x[clips.train] - mean) / std
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-9)
    shifted = x.copy()
    shifted[np.concatenate([clips.val, clips.test])] += 1e6  # val/test must not move the statistics
    mean2, std2 = fit_standardizer(shifted, clips.train)
    assert np.array_equal(mean, mean2) and np.array_equal(std, std2)
    x[:, 5] = 3.0  # a constant feature standardises to 0, not NaN
    assert fit_standardizer(x, clips.train)[1][5] == 1.0


def test_prosodic_rejects_non_finite_features() -> None:
    clips = _clips()
    x = _features(clips)
    x[3, 7] = np.nan
    with pytest.raises(InputError, match="non-finite eGeMAPS"):
        train_prosodic_teacher(x, clips, settings=PROSODIC, log=_quiet)


def test_linguistic_teacher_learns_the_label() -> None:
    clips = _clips()
    out = train_linguistic_teacher(_transcripts(clips), clips, settings=LINGUISTIC, log=_quiet)
    assert out.logits.shape == (N, C) and out.embeddings.shape == (N, 64)
    assert out.metrics["val_ua"] > 0.8 and out.metrics["test_ua"] > 0.8


def test_word_tokenizer_vocabulary_is_the_training_texts() -> None:
    tok = build_word_tokenizer(["Happy days, happy!", "sad day"], max_length=16)
    vocab = tok.get_vocab()
    assert sorted(vocab, key=vocab.get)[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert vocab["happy"] == 5  # most frequent first; lower-cased; punctuation split off
    ids = tok("HAPPY furious")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "happy", "[UNK]", "[SEP]"]
    same = build_word_tokenizer(["sad day", "Happy days, happy!"], max_length=16)
    assert same.get_vocab() == vocab  # order of texts does not matter


def test_missing_transcripts_is_a_one_line_input_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def must_not_train(*a: object, **k: object) -> None:
        raise AssertionError("trained without transcripts")

    monkeypatch.setattr(linguistic_mod, "train_linguistic_teacher", must_not_train)
    clips = _clips()
    with pytest.raises(InputError) as err:
        ensure_linguistic_teacher(None, clips, tmp_path, log=_quiet)
    msg = str(err.value)
    assert "'synthetic'" in msg and "base.data.transcripts" in msg and "JSONL" in msg and "\n" not in msg
    texts: list[str | None] = list(_transcripts(clips))
    texts[4] = None
    with pytest.raises(InputError, match="1 of the 120 clips"):
        ensure_linguistic_teacher(texts, clips, tmp_path, log=_quiet)


def test_teachers_are_cached_per_fold(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clips = _clips()
    x, texts = _features(clips), _transcripts(clips)
    small_l = LinguisticSettings(hidden=16, intermediate=32, epochs=2)
    first_p = ensure_prosodic_teacher(x, clips, tmp_path, settings=PROSODIC, log=_quiet)
    first_l = ensure_linguistic_teacher(texts, clips, tmp_path, settings=small_l, log=_quiet)
    assert len(list((tmp_path / "emodistill" / "prosodic").glob("[!.]*"))) == 1

    def must_not_train(*a: object, **k: object) -> None:
        raise AssertionError("trained again instead of reading the cache")

    monkeypatch.setattr(prosodic_mod, "train_prosodic_teacher", must_not_train)
    monkeypatch.setattr(linguistic_mod, "train_linguistic_teacher", must_not_train)
    again_p = ensure_prosodic_teacher(x, clips, tmp_path, settings=PROSODIC, log=_quiet)
    again_l = ensure_linguistic_teacher(texts, clips, tmp_path, settings=small_l, log=_quiet)
    for a, b in ((first_p, again_p), (first_l, again_l)):
        assert np.array_equal(a.logits, b.logits) and np.array_equal(a.embeddings, b.embeddings)
        assert a.metrics == b.metrics
    # any change of input, split, seed or setting is another teacher
    other_split = _clips(seed=1)
    for call in (lambda: ensure_prosodic_teacher(x, clips, tmp_path, seed=1, settings=PROSODIC, log=_quiet),
                 lambda: ensure_prosodic_teacher(x * 2, clips, tmp_path, settings=PROSODIC, log=_quiet),
                 lambda: ensure_prosodic_teacher(x, other_split, tmp_path, settings=PROSODIC, log=_quiet),
                 lambda: ensure_linguistic_teacher([t + " x" for t in texts], clips, tmp_path, settings=small_l,
                                                   log=_quiet)):
        with pytest.raises(AssertionError, match="trained again"):
            call()


def test_teachers_are_deterministic_for_a_seed() -> None:
    clips = _clips()
    x, texts = _features(clips), _transcripts(clips)
    small_p = ProsodicSettings(hidden=32, emb_dim=16, epochs=3)
    small_l = LinguisticSettings(hidden=16, intermediate=32, epochs=2)
    a, b = (train_prosodic_teacher(x, clips, seed=5, settings=small_p, log=_quiet) for _ in range(2))
    c = train_prosodic_teacher(x, clips, seed=6, settings=small_p, log=_quiet)
    assert np.array_equal(a.logits, b.logits) and np.array_equal(a.embeddings, b.embeddings)
    assert not np.array_equal(a.logits, c.logits)
    d, e = (train_linguistic_teacher(texts, clips, seed=5, settings=small_l, log=_quiet) for _ in range(2))
    assert np.array_equal(d.logits, e.logits) and np.array_equal(d.embeddings, e.embeddings)


def test_linguistic_teacher_from_a_local_bert_checkpoint(tmp_path: Path) -> None:
    clips = _clips()
    texts = _transcripts(clips)
    tok = build_word_tokenizer([texts[i] for i in clips.train], max_length=32)
    model = linguistic_mod._tiny_bert(tok, 2, LinguisticSettings(max_length=32), 0)
    model.save_pretrained(tmp_path / "bert")  # a 2-class head: the teacher replaces it with a C-class one
    tok.save_pretrained(tmp_path / "bert")
    settings = LinguisticSettings(model=str(tmp_path / "bert"), max_length=32, epochs=25, lr=1e-3)
    out = train_linguistic_teacher(texts, clips, settings=settings, log=_quiet)
    assert out.logits.shape == (N, C) and out.embeddings.shape == (N, 64)
    assert out.metrics["test_ua"] > 0.8
    with pytest.raises(InputError, match="model.linguistic_teacher"):
        train_linguistic_teacher(texts, clips, settings=LinguisticSettings(model=str(tmp_path / "nope")),
                                 log=_quiet)


def test_fold_clips_are_checked() -> None:
    labels = np.arange(10) % 2
    with pytest.raises(ValueError, match="disjoint"):
        FoldClips("d", 1, labels, 2, [0, 1, 2], [2, 3], [4])
    with pytest.raises(ValueError, match="class ids"):
        FoldClips("d", 1, labels + 5, 2, [0], [1], [2])
    with pytest.raises(ValueError, match="at least one clip"):
        FoldClips("d", 1, labels, 2, [0], [], [2])
