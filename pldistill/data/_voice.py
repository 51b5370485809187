"""A small source-filter voice for the synthetic corpus (private to :mod:`pldistill.data.synth`).

An utterance is a string of syllables. Each syllable is an optional fricative onset (high-passed
noise) and a vowel nucleus: a Rosenberg glottal pulse train (with cycle-to-cycle jitter and
shimmer, and aspiration noise gated by the glottal opening) shaped by four cascaded formant
resonators that glide between vowel targets. Emotion moves the cues acted speech carries:

* pitch level, pitch-accent range and the final rise/fall (F0 contour),
* speaking rate (syllable durations, pauses),
* vocal effort (level, and tension: open quotient and closure speed, hence spectral tilt),
* voice quality (breathiness, jitter, shimmer) and formant scaling (smiling raises formants).

Every cue is drawn around the emotion's value with per-utterance spread and added to a
per-speaker baseline, so that no single cue separates the classes. Each clip's level is
normalised and then given its emotion's effort plus a speaker and a random clip gain, so loudness
helps but does not decide; background noise of random colour and level sits under every clip. All operations are numpy
vector operations on the whole clip (a 2 s clip takes a few milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
_CTRL_HZ = 200  # control rate of contours (F0, formants, envelopes)
_NFFT, _HOP = 512, 256

# Vowel formant targets (Hz, adult male; scaled per speaker): /a e i o u/.
_VOWELS = np.array([[730, 1090, 2440, 3400], [530, 1840, 2480, 3500], [300, 2200, 2950, 3600],
                    [570, 840, 2410, 3300], [320, 900, 2300, 3300]], dtype=np.float64)
_UPPER_FORMANTS = np.array([4500.0, 5500.0, 6500.0])
_BANDWIDTHS = np.array([80.0, 100.0, 150.0, 250.0, 300.0, 400.0, 500.0])


@dataclass(frozen=True)
class EmotionProfile:
    """Where an emotion puts each cue (relative to the speaker's baseline)."""

    f0_st: float  # pitch level shift, semitones
    range_st: float  # pitch-accent excursion, semitones
    final_st: float  # utterance-final rise (+) or fall (-), semitones
    rate: float  # speaking-rate factor
    energy_db: float  # vocal effort, dB (before the per-clip random gain)
    tension: float  # 0 lax/breathy .. 1 pressed: open quotient, closure speed, spectral tilt
    breath: float  # aspiration noise relative to voicing
    jitter: float  # cycle-to-cycle F0 perturbation (fraction)
    shimmer: float  # cycle-to-cycle amplitude perturbation (fraction)
    formant: float  # formant frequency factor
    pause: float  # probability of a pause between syllables


#: Profiles after the acted-speech literature's broad directions (high-arousal emotions: higher,
#: wider pitch, faster, louder, tenser; sadness: low, narrow, slow, soft, breathy).
PROFILES: dict[str, EmotionProfile] = {
    "Neutral": EmotionProfile(0.0, 1.8, -1.5, 1.00, 0.0, 0.45, 0.06, 0.006, 0.04, 1.000, 0.15),
    "Calm": EmotionProfile(-1.3, 1.3, -2.1, 0.87, -2.6, 0.32, 0.12, 0.005, 0.03, 0.987, 0.20),
    "Happy": EmotionProfile(4.5, 5.3, 2.4, 1.13, 2.6, 0.62, 0.05, 0.009, 0.05, 1.065, 0.10),
    "Sad": EmotionProfile(-3.2, 0.6, -3.5, 0.68, -5.2, 0.15, 0.25, 0.015, 0.07, 0.961, 0.30),
    "Angry": EmotionProfile(2.6, 2.8, -2.8, 1.34, 6.5, 0.92, 0.02, 0.021, 0.11, 1.026, 0.08),
    "Fear": EmotionProfile(5.9, 2.3, 1.1, 1.34, 0.7, 0.58, 0.15, 0.029, 0.10, 1.026, 0.15),
    "Disgust": EmotionProfile(-1.3, 2.6, -2.8, 0.81, 1.3, 0.65, 0.09, 0.012, 0.07, 0.974, 0.25),
    "Surprise": EmotionProfile(5.2, 6.0, 5.7, 1.07, 2.6, 0.65, 0.05, 0.009, 0.05, 1.039, 0.10),
}


@dataclass(frozen=True)
class Speaker:
    """A speaker's baseline voice."""

    name: str
    f0: float  # Hz
    rate: float  # syllables per second
    formant: float  # vocal-tract scale (female voices ~15 % higher)
    loudness_db: float
    tension: float  # offset
    breath: float  # factor
    range: float  # factor on pitch-accent range


def make_speaker(index: int, rng: np.random.Generator) -> Speaker:
    """Speaker ``index`` (alternating F/M) with a random baseline."""
    female = index % 2 == 0
    return Speaker(
        name=f"S{index + 1:02d}{'F' if female else 'M'}",
        f0=(205.0 if female else 115.0) * 2 ** (rng.normal(0, 1.5) / 12),
        rate=4.0 * float(np.exp(rng.normal(0, 0.12))),
        formant=(1.15 if female else 1.0) * (1 + rng.normal(0, 0.03)),
        loudness_db=rng.normal(0, 2.5),
        tension=rng.normal(0, 0.06),
        breath=float(np.exp(rng.normal(0, 0.25))),
        range=float(np.exp(rng.normal(0, 0.15))),
    )


def _utterance_cues(rng: np.random.Generator, sp: Speaker, e: EmotionProfile) -> dict[str, float]:
    return {
        "f0_st": e.f0_st + rng.normal(0, 1.0),
        "range_st": e.range_st * sp.range * float(np.exp(rng.normal(0, 0.25))),
        "final_st": e.final_st + rng.normal(0, 1.2),
        "rate": sp.rate * e.rate * float(np.exp(rng.normal(0, 0.08))),
        "energy_db": sp.loudness_db + e.energy_db + rng.normal(0, 2.5),
        "tension": float(np.clip(e.tension + sp.tension + rng.normal(0, 0.08), 0.02, 0.98)),
        "breath": e.breath * sp.breath * float(np.exp(rng.normal(0, 0.35))),
        "jitter": e.jitter * float(np.exp(rng.normal(0, 0.3))),
        "shimmer": e.shimmer * float(np.exp(rng.normal(0, 0.3))),
        "formant": sp.formant * e.formant * (1 + rng.normal(0, 0.015)),
        "pause": e.pause,
    }


def _syllables(rng: np.random.Generator, duration: float, rate: float, pause: float) -> np.ndarray:
    """Rows ``(onset, nucleus_start, end, vowel, accent, stress_db)`` in seconds."""
    rows = []
    t = rng.uniform(0.04, 0.15)
    stop = duration - rng.uniform(0.04, 0.12)
    while t < stop - 0.08:
        d = min(float(np.exp(rng.normal(0, 0.25))) / rate, stop - t)
        onset = d * rng.uniform(0.15, 0.35) if rng.random() < 0.5 else 0.0
        accent = rng.uniform(0.5, 1.0) if rng.random() < 0.45 else rng.uniform(-0.3, 0.3)
        rows.append((t, t + onset, t + d, rng.integers(len(_VOWELS)), accent, rng.normal(0, 2.0)))
        t += d + (rng.uniform(0.10, 0.25) if rng.random() < pause else rng.uniform(0.01, 0.04))
    if not rows:  # a very short clip still gets one syllable
        rows.append((0.02, 0.02, max(duration - 0.02, 0.03), 0, 0.5, 0.0))
    return np.array(rows, dtype=np.float64)


def _contours(syl: np.ndarray, tc: np.ndarray, sp: Speaker, cue: dict[str, float],
              duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Control-rate voicing envelope, fricative envelope, F0 (Hz) and formants (frames, 7)."""
    voice = np.zeros_like(tc)
    fric = np.zeros_like(tc)
    accents = np.zeros_like(tc)
    for onset, nucleus, end, _, accent, stress_db in syl:
        inside = (tc >= nucleus) & (tc < end)
        voice[inside] = np.sin(np.pi * (tc[inside] - nucleus) / (end - nucleus)) ** 0.6 * 10 ** (stress_db / 20)
        if nucleus > onset:
            on = (tc >= onset) & (tc < nucleus)
            fric[on] = np.sin(np.pi * (tc[on] - onset) / (nucleus - onset))
        centre, width = (nucleus + end) / 2, max((end - nucleus) / 2.5, 0.02)
        accents += accent * cue["range_st"] * np.exp(-0.5 * ((tc - centre) / width) ** 2)
    x = tc / duration
    semitones = cue["f0_st"] + accents - 1.5 * x + cue["final_st"] * np.clip((x - 0.7) / 0.3, 0, 1) ** 2
    f0 = sp.f0 * 2 ** (semitones / 12)
    centres = (syl[:, 1] + syl[:, 2]) / 2
    targets = _VOWELS[syl[:, 3].astype(int)] * cue["formant"]
    vowels = np.stack([np.interp(tc, centres, targets[:, i]) for i in range(4)], axis=1)
    upper = np.minimum(_UPPER_FORMANTS * cue["formant"], 7600.0)
    formants = np.concatenate([vowels, np.broadcast_to(upper, (len(tc), 3))], axis=1)
    return voice, fric, np.clip(f0, 50.0, 600.0), formants


def _glottal_source(rng: np.random.Generator, f0: np.ndarray, cue: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Differentiated Rosenberg flow with jitter and shimmer, and the flow itself (0..1)."""
    from scipy.signal import lfilter

    phase = np.cumsum(f0) / SAMPLE_RATE
    cycles = int(phase[-1]) + 2
    f0 = f0 * (1 + cue["jitter"] * rng.standard_normal(cycles)[phase.astype(np.int64)])
    phase = np.cumsum(f0) / SAMPLE_RATE
    cycle = phase.astype(np.int64)
    cycles = int(cycle[-1]) + 1  # jitter may have added a cycle
    p = phase - cycle
    oq = 0.85 - 0.45 * cue["tension"]  # open quotient: lax voices stay open longer
    tn = oq * (0.5 - 0.42 * cue["tension"])  # closing phase: pressed voices close abruptly
    tp = oq - tn
    flow = np.where(p < tp, 0.5 * (1 - np.cos(np.pi * p / tp)),
                    np.where(p < oq, np.cos(0.5 * np.pi * (p - tp) / tn), 0.0))
    flow *= 1 + cue["shimmer"] * rng.standard_normal(cycles)[cycle]
    source = np.diff(flow, prepend=0.0)
    a = 0.8 * (1 - cue["tension"])  # extra spectral tilt for lax phonation
    return lfilter([1 - a], [1, -a], source), flow


def _formant_filter(x: np.ndarray, formants: np.ndarray, tc: np.ndarray, breath: float) -> np.ndarray:
    """Cascade of resonators (unit gain at DC, Klatt-style) gliding with ``formants``, applied by
    STFT. Three fixed upper formants stand in for the rest of the tube so the cascade does not
    cut the high band; the source keeps the spectral tilt, so tilt stays a cue."""
    from scipy.signal import istft, stft

    freqs, times, spec = stft(x, fs=SAMPLE_RATE, nperseg=_NFFT, noverlap=_NFFT - _HOP, boundary="even")
    fmt = np.stack([np.interp(times, tc, formants[:, i]) for i in range(formants.shape[1])], axis=1)
    bw = _BANDWIDTHS * (1 + 1.5 * breath)
    r = np.exp(-np.pi * bw / SAMPLE_RATE)  # (K,)
    c = -(r**2)
    b = 2 * r * np.cos(2 * np.pi * fmt / SAMPLE_RATE)  # (T, K)
    w = 2 * np.pi * freqs / SAMPLE_RATE  # (F,)
    # |1 - b e^{-jw} - c e^{-2jw}|^2 = (1 + b^2 + c^2) + 2 b (c - 1) cos w - 2 c cos 2w
    den2 = ((1 + b**2 + c**2)[:, :, None] + (2 * b * (c - 1))[:, :, None] * np.cos(w)
            - 2 * c[None, :, None] * np.cos(2 * w))  # (T, K, F)
    gain = np.prod(np.abs(1 - b - c), axis=1)[:, None] / np.sqrt(np.prod(den2, axis=1))  # (T, F)
    _, y = istft(spec * gain.T, fs=SAMPLE_RATE, nperseg=_NFFT, noverlap=_NFFT - _HOP, boundary=True)
    return y[: len(x)]


def _rms(x: np.ndarray, mask: np.ndarray) -> float:
    part = x[mask] if mask.any() else x
    return float(np.sqrt(np.mean(part**2))) + 1e-12


def synthesize_utterance(rng: np.random.Generator, speaker: Speaker, emotion: EmotionProfile,
                         duration: float) -> np.ndarray:
    """One utterance of ``duration`` seconds as float32 in [-1, 1] at 16 kHz."""
    from scipy.signal import butter, lfilter, sosfilt  # scipy.signal takes ~1 s to import

    n = int(round(duration * SAMPLE_RATE))
    cue = _utterance_cues(rng, speaker, emotion)
    syl = _syllables(rng, duration, cue["rate"], cue["pause"])
    tc = np.arange(int(duration * _CTRL_HZ) + 2) / _CTRL_HZ
    voice_c, fric_c, f0_c, formants = _contours(syl, tc, speaker, cue, duration)
    ts = np.arange(n) / SAMPLE_RATE
    voice = np.interp(ts, tc, voice_c)
    source, flow = _glottal_source(rng, np.interp(ts, tc, f0_c), cue)
    active = voice > 0.1
    source /= _rms(source, active)
    aspiration = rng.standard_normal(n) * (0.3 + flow) * cue["breath"] * 2.0
    speech = _formant_filter((source + aspiration) * voice, formants, tc, cue["breath"])
    hp = butter(2, min(2600 * cue["formant"], 7000), btype="highpass", fs=SAMPLE_RATE, output="sos")
    speech += sosfilt(hp, rng.standard_normal(n)) * np.interp(ts, tc, fric_c) * 0.35 * np.std(speech)
    # Level: normalised over the voiced part, then vocal effort plus speaker and clip gain.
    speech *= 10 ** ((-30.0 + cue["energy_db"]) / 20) / _rms(speech, active)
    a = rng.uniform(0.3, 0.95)  # background noise: a random colour and level
    noise = lfilter([1 - a], [1, -a], rng.standard_normal(n))
    speech += noise / np.std(noise) * 10 ** (rng.uniform(-65.0, -45.0) / 20)
    return np.clip(speech, -1.0, 1.0).astype(np.float32)
