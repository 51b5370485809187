"""The eSpeak NG wrapper: speech comes out, its settings act, resampling and warping are right,
workers run in fresh processes."""

from __future__ import annotations

import numpy as np
import pytest

from pldistill.data.espeak import ESPEAK_SAMPLE_RATE, Utterance, map_in_fresh_processes, speak, to_16k

SENTENCE = "Kids are talking by the door."


def _median_f0(audio: np.ndarray, sr: int) -> float:
    """Median F0 (Hz) of the clearly voiced 40 ms frames, by autocorrelation (60-400 Hz)."""
    n, hop = int(0.04 * sr), int(0.01 * sr)
    frames = audio[np.arange(n)[None, :] + hop * np.arange(1 + (len(audio) - n) // hop)[:, None]] * np.hanning(n)
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * n)) ** 2)[:, :n]
    ac /= ac[:, :1] + 1e-12
    lo, hi = sr // 400, sr // 60
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    voiced = ac[np.arange(len(lag)), lag] > 0.6
    return float(np.median(sr / lag[voiced]))


def test_speaks_int16_at_22050() -> None:
    (pcm,) = speak([Utterance(SENTENCE)])
    assert pcm.dtype == np.int16 and 1.0 < len(pcm) / ESPEAK_SAMPLE_RATE < 3.5
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 300  # speech, not silence


def test_settings_change_rate_pauses_and_pitch() -> None:
    slow, fast, gaps = speak([Utterance(SENTENCE, "en+m3", rate=110), Utterance(SENTENCE, "en+m3", rate=260),
                              Utterance(SENTENCE, "en+m3", rate=260, wordgap=20)])
    # 5 gaps of 200 ms at the default rate; eSpeak scales them with the rate (260 wpm: ~0.13 s each)
    assert len(slow) > 1.8 * len(fast) and len(gaps) > len(fast) + 0.4 * ESPEAK_SAMPLE_RATE
    low, high = speak([Utterance(SENTENCE, "en+m3", pitch=50, range=0), Utterance(SENTENCE, "en+m3", pitch=90, range=0)])
    assert _median_f0(high.astype(np.float64), ESPEAK_SAMPLE_RATE) > 1.3 * _median_f0(low.astype(np.float64),
                                                                                          ESPEAK_SAMPLE_RATE)
    loud, soft = speak([Utterance(SENTENCE, volume=150), Utterance(SENTENCE, volume=50)])
    assert np.abs(loud.astype(np.float64)).mean() > 2 * np.abs(soft.astype(np.float64)).mean()


def test_bad_voice_and_settings() -> None:
    with pytest.raises(ValueError, match="no voice 'xx-nowhere'"):
        speak([Utterance(SENTENCE, voice="xx-nowhere")])
    with pytest.raises(ValueError, match="pitch"):
        Utterance(SENTENCE, pitch=101)
    with pytest.raises(ValueError, match="empty"):
        Utterance("  ")


def test_to_16k_resamples_and_warps() -> None:
    t = np.arange(ESPEAK_SAMPLE_RATE) / ESPEAK_SAMPLE_RATE  # 1 s of a 441 Hz tone at half scale
    pcm = np.round(16384 * np.sin(2 * np.pi * 441 * t)).astype(np.int16)
    for warp in (1.0, 1.05, 0.95):
        y = to_16k(pcm, warp)
        assert y.dtype == np.float32 and len(y) == pytest.approx(16000 / warp, abs=2)
        spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        peak = np.argmax(spectrum) * 16000 / len(y)
        assert peak == pytest.approx(441 * warp, abs=2), warp
        assert np.abs(y[2000:-2000]).max() == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError):
        to_16k(pcm, 2.0)


def test_map_in_fresh_processes_keeps_order_and_reports_failures() -> None:
    seen: list[float] = []
    assert map_in_fresh_processes("math:sqrt", [16, 4, 9], 2, on_result=seen.append) == [4.0, 2.0, 3.0]
    assert seen == [4.0, 2.0, 3.0]
    assert map_in_fresh_processes("math:sqrt", []) == []
    with pytest.raises(RuntimeError, match="math domain error"):
        map_in_fresh_processes("math:sqrt", [4, -1])
