"""The synthetic corpus: EmoBox layout, balance, speaker-independent folds, determinism, reuse,
speed, and emotion that is learnable from acoustics but not from any single cue."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pldistill.config import DataConfig, SynthConfig
from pldistill.data import REQUIRED_FIELDS, ensure_synthetic, load_audio, load_fold, synthesize_corpus
from pldistill.errors import InputError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_manifests(small_corpus: Path) -> None:
    corpus = small_corpus / "synthetic"
    assert json.loads((corpus / "label_map.json").read_text()) == {
        "neu": "Neutral", "hap": "Happy", "ang": "Angry", "sad": "Sad"}
    assert sorted(p.name for p in corpus.iterdir()) == ["fold_1", "fold_2", "label_map.json", "synth.json", "wav"]
    assert not [p for p in small_corpus.iterdir() if p.name != "synthetic"]  # no temp folders left
    line = json.loads((corpus / "fold_1" / "synthetic_test_fold_1.jsonl").read_text().splitlines()[0])
    assert set(REQUIRED_FIELDS) <= set(line) and line["dataset"] == "synthetic"
    info = sf.info(str(small_corpus / line["wav"]))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
    assert info.frames == line["num_frame"] and info.frames / 16000 == pytest.approx(line["length"])
    assert 1.0 <= line["length"] <= 2.0


def test_balanced_and_speaker_independent(small_corpus: Path) -> None:
    tested: Counter[str] = Counter()
    for k in (1, 2):
        split = load_fold(small_corpus, "synthetic", k, val_fraction=0.0)
        for part in (split.train, split.test):
            per_speaker = Counter((c.speaker, c.label) for c in part)
            assert set(per_speaker.values()) == {2}  # every speaker says 2 clips of every emotion
            assert len(per_speaker) == 2 * 4
        assert not {c.speaker for c in split.train} & {c.speaker for c in split.test}
        tested.update({c.speaker for c in split.test})
        audio = load_audio(split.test[0])
        assert audio.dtype == np.float32 and 0.01 < np.abs(audio).max() <= 1.0
    assert tested == Counter({"S01F": 1, "S02M": 1, "S03F": 1, "S04M": 1})  # each speaker tested once


def test_deterministic_byte_identical(small_corpus: Path, tmp_path: Path) -> None:
    again = synthesize_corpus(tmp_path, speakers=4, per_class=2, folds=2, seed=3)
    assert _files(again / "synthetic") == _files(small_corpus / "synthetic")
    other = synthesize_corpus(tmp_path / "other", speakers=4, per_class=2, folds=2, seed=4)
    a, b = _files(other / "synthetic"), _files(small_corpus / "synthetic")
    assert a.keys() == b.keys() and a["wav/S01F/S01F-neu-000.wav"] != b["wav/S01F/S01F-neu-000.wav"]


def test_reuse_and_conflicting_parameters(small_corpus: Path, tmp_path: Path) -> None:
    wav = small_corpus / "synthetic" / "wav" / "S01F" / "S01F-neu-000.wav"
    before = wav.stat().st_mtime_ns
    assert synthesize_corpus(small_corpus, speakers=4, per_class=2, folds=2, seed=3) == small_corpus
    assert wav.stat().st_mtime_ns == before  # reused, not rewritten
    with pytest.raises(InputError) as exc:
        synthesize_corpus(small_corpus, speakers=4, per_class=3, folds=2, seed=3)
    assert str(small_corpus / "synthetic" / "synth.json") in str(exc.value) and exc.value.field == "per_class"
    (tmp_path / "synthetic").mkdir()
    with pytest.raises(InputError, match="no synth.json"):
        synthesize_corpus(tmp_path)


@pytest.mark.parametrize(("kwargs", "field"), [({"speakers": 1}, "speakers"), ({"folds": 9}, "folds"),
                                                ({"labels": ("Neutral", "Bored")}, "labels"),
                                                ({"clip_seconds": (2.0, 1.0)}, "clip_seconds")])
def test_bad_parameters(tmp_path: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as exc:
        synthesize_corpus(tmp_path, **kwargs)
    assert exc.value.field == field
    assert not (tmp_path / "synthetic").exists()


def test_ensure_synthetic_caches_by_parameters(tmp_path: Path) -> None:
    cfg = DataConfig(synth=SynthConfig(speakers=2, per_class=1, folds=2, seed=5))
    first = ensure_synthetic(cfg, tmp_path)
    assert first.parent == tmp_path and first.name.startswith("synthetic-")
    assert ensure_synthetic(cfg, tmp_path) == first
    other = ensure_synthetic(DataConfig(synth=SynthConfig(speakers=2, per_class=1, folds=2, seed=6)), tmp_path)
    assert other != first
    assert len(load_fold(first, "synthetic", 2, val_fraction=0.0).test) == 4
    explicit = ensure_synthetic(DataConfig(manifests=tmp_path / "mine", synth=cfg.synth), tmp_path)
    assert explicit == tmp_path / "mine" and (explicit / "synthetic" / "synth.json").is_file()
    with pytest.raises(InputError):
        ensure_synthetic(DataConfig(source="emobox", dataset="iemocap"), tmp_path)


def test_generation_is_fast(tmp_path: Path) -> None:
    start = time.process_time()
    synthesize_corpus(tmp_path, speakers=2, per_class=4, folds=2, seed=0)  # 32 clips of 1-2 s
    per_clip = (time.process_time() - start) / 32
    # ~10-15 ms of CPU per clip on an idle 2-core machine; the bound leaves room for a busy one.
    assert per_clip < 0.1


# --- learnable, but not from one cue ----------------------------------------------------------

FEATURES = ("f0_level", "f0_range", "energy", "centroid", "modulation")


def _acoustics(x: np.ndarray, sr: int = 16000) -> np.ndarray:
    """Median F0 and F0 range (semitones, autocorrelation), level (dB), spectral centroid (log Hz)
    and syllable rate (centroid of the 1-12 Hz envelope spectrum), over 40 ms frames every 10 ms."""
    n, hop = 640, 160
    frames = x[np.arange(n)[None, :] + hop * np.arange(1 + (len(x) - n) // hop)[:, None]] * np.hanning(n)
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    active = level > level.max() - 25
    power = np.abs(np.fft.rfft(frames, 2 * n)) ** 2
    ac = np.fft.irfft(power)[:, :n]
    ac /= ac[:, :1] + 1e-12
    lag = 32 + np.argmax(ac[:, 32:320], axis=1)  # 50-500 Hz
    voiced = active & (ac[np.arange(len(lag)), lag] > 0.5)
    f0 = 12 * np.log2(sr / lag[voiced]) if voiced.any() else np.zeros(1)
    freqs = np.fft.rfftfreq(2 * n, 1 / sr)
    centroid = (power[active] * freqs).sum(axis=1) / power[active].sum(axis=1)
    env = np.sqrt((frames**2).mean(axis=1))
    mod = np.abs(np.fft.rfft(env - env.mean(), 1024))
    mf = np.fft.rfftfreq(1024, hop / sr)
    band = (mf >= 1) & (mf <= 12)
    return np.array([np.median(f0), np.percentile(f0, 85) - np.percentile(f0, 15), level[active].mean(),
                     np.log(centroid.mean()), (mod[band] * mf[band]).sum() / mod[band].sum()])


def _logistic_regression(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, classes: int) -> np.ndarray:
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    x, x_test = (x - mu) / sd, (x_test - mu) / sd
    w, b, onehot = np.zeros((x.shape[1], classes)), np.zeros(classes), np.eye(classes)[y]
    for _ in range(400):
        z = x @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(x)
        w -= 0.5 * (x.T @ g + 1e-3 * w)
        b -= 0.5 * g.sum(axis=0)
    return np.argmax(x_test @ w + b, axis=1)


@pytest.fixture(scope="module")
def learn_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8 speakers x 4 emotions x 8 clips, 4 folds of 2 speakers: acoustics, labels, test fold."""
    root = synthesize_corpus(tmp_path_factory.mktemp("learn"), speakers=8, per_class=8, folds=4, seed=0)
    rows, labels, folds = [], [], []
    for k in range(1, 5):
        split = load_fold(root, "synthetic", k, val_fraction=0.0)
        for clip in split.test:
            rows.append(_acoustics(load_audio(clip)))
            labels.append(split.labels.index(clip.label))
            folds.append(k)
    return np.array(rows), np.array(labels), np.array(folds)


def _cross_validated(x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> float:
    """Mean accuracy over speaker-independent folds (train on 6 speakers, test on the other 2)."""
    scores = [(_logistic_regression(x[folds != k], y[folds != k], x[folds == k], 4) == y[folds == k]).mean()
              for k in np.unique(folds)]
    return float(np.mean(scores))


def test_emotion_is_learnable_but_not_from_a_single_cue(learn_set) -> None:
    x, y, folds = learn_set
    assert np.isfinite(x).all()
    together = _cross_validated(x, y, folds)
    alone = {name: _cross_validated(x[:, [i]], y, folds) for i, name in enumerate(FEATURES)}
    # Observed with seed 0: all five cues 0.61; alone f0_range 0.50, energy 0.49, modulation 0.46,
    # centroid 0.28, f0_level 0.25 (the speakers' F0 spread hides the emotion's shift). Chance 0.25.
    # Seeds 0-7: all cues 0.61-0.75, best single cue 0.50-0.58, gap 0.11-0.21.
    assert together >= 0.5, (together, alone)
    assert max(alone.values()) <= together - 0.08, (together, alone)
    assert alone["f0_level"] < 0.4 and alone["centroid"] < 0.45, alone
