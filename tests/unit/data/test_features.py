"""Log-mel features: window choice, shapes, valid frames, token counts, the on-disk cache."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pldistill.data import (
    FeatureCache,
    Features,
    audio_token_count,
    choose_window,
    compute_features,
    load_audio,
    load_fold,
    log_mel,
)
from pldistill.data import features as features_module
from pldistill.errors import InputError


def test_choose_window(caplog: pytest.LogCaptureFixture) -> None:
    assert choose_window([1.2, 3.99]) == 4.0
    assert choose_window([4.0]) == 4.0
    assert choose_window([0.3]) == 1.0
    assert choose_window([5.27, 3.0], granularity=2.0) == 6.0
    assert choose_window([2.1], granularity=0.5) == 2.5
    with caplog.at_level(logging.WARNING, logger="pldistill.data.features"):
        assert choose_window([4.5, 34.14, 31.0, 2.0]) == 30.0
    assert "2 of 4 clips are longer than the 30 s window" in caplog.text
    assert choose_window([12.0], max_window=8.0) == 8.0
    with pytest.raises(ValueError):
        choose_window([])


@pytest.mark.parametrize(("valid", "tokens"), [(400, 100), (3000, 750), (250, 62), (200, 50), (1, 0), (3, 1)])
def test_audio_token_count(valid: int, tokens: int) -> None:
    assert audio_token_count(valid) == tokens


def test_log_mel_shape_and_valid_frames() -> None:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(40000)).astype(np.float32)  # 2.5 s
    mel, valid = log_mel(audio, 4.0)
    assert mel.shape == (128, 400) and mel.dtype == np.float32 and valid == 250
    assert audio_token_count(valid) == 62
    assert np.all(mel[:, 252:] == mel[0, -1])  # beyond the audio: Whisper's constant padding
    mel2, valid2 = log_mel(audio, 2.0)  # truncated to the window
    assert mel2.shape == (128, 200) and valid2 == 200
    mel3, _ = log_mel(audio, 3.5)  # fractional windows are fine when 100 * W is even
    assert mel3.shape == (128, 350)
    with pytest.raises(ValueError, match="even whole number"):
        log_mel(audio, 2.05)


def test_compute_features_matches_log_mel_and_caches(small_corpus: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clips = load_fold(small_corpus, "synthetic", 1, val_fraction=0.0).test[:5]
    feats = compute_features(clips, 2.0, cache_dir=tmp_path)
    assert feats.keys == tuple(c.key for c in clips) and len(feats) == 5 and feats.frames == 200
    for i, clip in enumerate(clips):
        mel, valid = log_mel(load_audio(clip), 2.0)
        assert feats.valid_frames[i] == valid
        np.testing.assert_array_equal(feats.get(i), mel)  # ragged storage restores the window exactly
    assert feats.stack([0, 2]).shape == (2, 128, 200) and feats.index(clips[3].key) == 3
    assert list(feats.token_counts()) == [audio_token_count(int(v)) for v in feats.valid_frames]

    cached = list(tmp_path.glob("features-*.npz"))
    assert len(cached) == 1
    with zipfile.ZipFile(cached[0]) as z:  # plain arrays only: loadable without pickle
        assert sorted(z.namelist()) == sorted(f"{k}.npy" for k in (
            "keys", "window_s", "valid_frames", "stored", "offsets", "pad_values", "skipped"))

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("features recomputed")

    monkeypatch.setattr(features_module, "_log_mel_batch", fail)
    again = FeatureCache(tmp_path).get(clips, 2.0)
    np.testing.assert_array_equal(again.stack(), feats.stack())
    assert again.keys == feats.keys
    # the content key travels with the features (the teacher cache keys on it), same on a cache hit
    assert len(feats.content_key) == 24 and again.content_key == feats.content_key
    assert features_module._content_key(clips[:4], 2.0, "fail") != feats.content_key
    with pytest.raises(AssertionError, match="recomputed"):  # another window is another entry
        compute_features(clips, 3.0, cache_dir=tmp_path)


def test_bad_audio_fails_or_is_skipped(small_corpus: Path, tmp_path: Path) -> None:
    clips = load_fold(small_corpus, "synthetic", 2, val_fraction=0.0).test[:3]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    from dataclasses import replace

    clips[1] = replace(clips[1], wav=broken)
    with pytest.raises(InputError) as exc:
        compute_features(clips, 2.0)
    assert exc.value.field == "wav" and str(broken) in str(exc.value)
    feats = compute_features(clips, 2.0, on_bad_audio="skip")
    assert feats.keys == (clips[0].key, clips[2].key) and feats.skipped == (clips[1].key,)


def test_features_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    audios = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 16000, 70000)]
    dense = [log_mel(a, 4.0) for a in audios]
    feats = Features.from_dense(["a", "b", "c"], 4.0, np.stack([m for m, _ in dense]),
                                np.array([v for _, v in dense]))
    assert feats.stored.shape[1] == (50 + 2) + (100 + 2) + 400  # the padding is not stored
    feats.save(tmp_path / "f.npz")
    back = Features.load(tmp_path / "f.npz")
    for i, (mel, valid) in enumerate(dense):
        np.testing.assert_array_equal(back.get(i), mel)
        assert back.valid_frames[i] == valid
