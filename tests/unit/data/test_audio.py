"""Audio loading: cropping, mono mixing, resampling, and one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pldistill.data import Clip, load_audio
from pldistill.errors import InputError


def _clip(wav: Path, start: float | None = None, end: float | None = None, rate: int = 44100) -> Clip:
    return Clip(key="toy-1", dataset="toy", wav=wav, label="Neutral", speaker=None, sample_rate=rate, length=3.0,
                start_time=start, end_time=end, manifest=wav.parent / "toy_test_fold_1.jsonl", line=7)


def _peak_hz(x: np.ndarray, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    return float(np.fft.rfftfreq(8 * len(x), 1 / sr)[np.argmax(spec)])


def test_crops_mixes_and_resamples(tmp_path: Path) -> None:
    sr = 44100
    t = np.arange(3 * sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.5 * np.sin(2 * np.pi * 440 * t) * (t >= 1.0)  # silent during the first second
    wav = tmp_path / "stereo.wav"
    sf.write(wav, np.stack([left, right], axis=1), sr, subtype="PCM_16")

    audio = load_audio(_clip(wav, start=1.25, end=2.5))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 1.25 * 16000) <= 1
    assert _peak_hz(audio) == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(audio[100:-100] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)  # both channels on

    early = load_audio(_clip(wav, start=0.0, end=0.5))  # only the left channel sounds: mixed to half
    assert np.sqrt(np.mean(early[100:-100] ** 2)) == pytest.approx(0.25 / np.sqrt(2), rel=0.02)
    assert abs(len(load_audio(_clip(wav))) - 3 * 16000) <= 1
    assert abs(len(load_audio(_clip(wav, start=2.0))) - 16000) <= 1


def test_resamples_48k_and_keeps_16k(tmp_path: Path) -> None:
    for sr in (48000, 16000, 22050):
        t = np.arange(sr) / sr
        wav = tmp_path / f"tone{sr}.wav"
        sf.write(wav, 0.3 * np.sin(2 * np.pi * 1000 * t), sr)
        audio = load_audio(_clip(wav, rate=sr))
        assert abs(len(audio) - 16000) <= 1
        assert _peak_hz(audio) == pytest.approx(1000, abs=2)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), dtype=np.float32), 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00not a wave file at all" * 10)
    zero = tmp_path / "zero_bytes.wav"
    zero.write_bytes(b"")
    truncated = tmp_path / "truncated.wav"
    sf.write(truncated, np.zeros(16000, dtype=np.float32), 16000)
    truncated.write_bytes(truncated.read_bytes()[:30])
    return {"missing": tmp_path / "missing.wav", "empty": empty, "garbage": garbage, "zero": zero,
            "truncated": truncated}


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "zero", "truncated"])
def test_bad_audio_is_an_input_error_naming_manifest_line_field_and_path(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(InputError) as exc:
        load_audio(_clip(path))
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path / 'toy_test_fold_1.jsonl'}:7: wav: ") and str(path) in msg
    assert "\n" not in msg and exc.value.field == "wav"


def test_start_past_the_end(tmp_path: Path) -> None:
    wav = tmp_path / "short.wav"
    sf.write(wav, np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="past the end"):
        load_audio(_clip(wav, start=0.5))
