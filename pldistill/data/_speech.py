"""Emotional voices for the synthetic corpus: eSpeak NG prosody plus signal post-processing
(private to :mod:`pldistill.data.synth`).

Emotion moves the cues acted speech carries (after the acted-speech literature's broad
directions: high arousal is higher, wider, faster, louder and tenser; sadness low, narrow, slow,
soft, breathy and full of pauses):

* through eSpeak: pitch level and range, speaking rate, pauses between words and at phrase
  boundaries, exclamatory intonation;
* after eSpeak, on the 16 kHz signal: vocal effort (level), tension (spectral tilt), breathiness
  (aspiration noise that follows the speech envelope), jitter (fast pitch perturbation, as a
  random time warp), shimmer (fast amplitude perturbation) and a formant scale (smiling raises
  formants) folded into the speaker's vocal-tract warp.

Every cue is drawn around the emotion's value with per-utterance spread and added to a
per-speaker baseline, so that no single cue separates the classes. Speakers are eSpeak voice
variants with their own pitch, range and rate offsets, a vocal-tract warp, loudness, tension,
breathiness and a microphone colouring; background noise of random colour and level sits under
every clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pldistill.data.espeak import Utterance

__all__ = ["EmotionProfile", "PROFILES", "Speaker", "make_speaker", "draw_utterance", "draw_post",
           "postprocess", "SAMPLE_RATE"]

SAMPLE_RATE = 16000
_CTRL_HZ = 200  # control rate of the jitter and shimmer contours
_ACCENTS = ("en-us", "en", "en-gb-x-rp")
# eSpeak's variants. ``f2``, ``f3`` and ``f5`` add breath noise from eSpeak's own generator, which
# :class:`~pldistill.data.espeak.Utterance` seeds per clip.
_FEMALE = ("f1", "f2", "f3", "f4", "f5")
_MALE = ("m1", "m2", "m3", "m4", "m6", "m7")


@dataclass(frozen=True)
class EmotionProfile:
    """Where an emotion puts each cue (relative to the speaker's baseline)."""

    pitch: float  # eSpeak base pitch, 0-100 (50: the voice's own)
    range: float  # eSpeak pitch range, 0-100 (50: the voice's own)
    rate: float  # factor on the speaker's words per minute
    wordgap: float  # mean extra pause between words, 10 ms units
    comma: float  # probability of a phrase pause at each word boundary
    exclaim: float  # probability of exclamatory intonation (a final "!" in what eSpeak reads)
    energy_db: float  # vocal effort
    tension: float  # 0 lax/breathy .. 1 pressed: spectral tilt
    breath: float  # aspiration noise relative to the voice
    jitter: float  # fast pitch perturbation (fraction)
    shimmer: float  # fast amplitude perturbation (fraction)
    formant: float  # frequency scale


PROFILES: dict[str, EmotionProfile] = {
    "Neutral": EmotionProfile(50, 45, 1.00, 1.0, 0.08, 0.0, 0.0, 0.45, 0.06, 0.004, 0.04, 1.000),
    "Happy": EmotionProfile(64, 76, 1.07, 0.0, 0.05, 0.5, 2.5, 0.58, 0.05, 0.006, 0.05, 1.030),
    "Angry": EmotionProfile(57, 60, 1.16, 0.0, 0.06, 0.6, 5.0, 0.78, 0.02, 0.012, 0.10, 1.010),
    "Sad": EmotionProfile(39, 22, 0.82, 2.5, 0.20, 0.0, -4.0, 0.28, 0.22, 0.010, 0.07, 0.985),
}


@dataclass(frozen=True)
class Speaker:
    """A speaker's baseline voice."""

    name: str
    voice: str  # eSpeak voice and variant
    pitch: float  # offset on eSpeak's pitch
    range: float  # factor on eSpeak's range
    wpm: float  # words per minute when neutral
    warp: float  # vocal-tract scale (all frequencies)
    loudness_db: float
    tension: float  # offset
    breath: float  # factor
    eq_hz: float  # microphone colouring: a peak or dip at eq_hz ...
    eq_db: float  # ... of eq_db


def make_speaker(index: int, rng: np.random.Generator) -> Speaker:
    """Speaker ``index`` (alternating F/M, cycling through accents and variants), random baseline."""
    female = index % 2 == 0
    k = index // 2
    variant = (_FEMALE if female else _MALE)[k % (5 if female else 6)]
    return Speaker(
        name=f"S{index + 1:02d}{'F' if female else 'M'}",
        voice=f"{_ACCENTS[k % len(_ACCENTS)]}+{variant}",
        pitch=float(rng.normal(0, 7)),
        range=float(np.exp(rng.normal(0, 0.15))),
        wpm=175.0 * float(np.exp(rng.normal(0, 0.08))),
        warp=float(rng.uniform(0.96, 1.04)),
        loudness_db=float(rng.normal(0, 2.5)),
        tension=float(rng.normal(0, 0.08)),
        breath=float(np.exp(rng.normal(0, 0.25))),
        eq_hz=float(np.exp(rng.uniform(np.log(400), np.log(4000)))),
        eq_db=float(rng.uniform(-5, 5)),
    )


def _speakable(rng: np.random.Generator, text: str, e: EmotionProfile) -> str:
    """What eSpeak reads: the sentence with phrase pauses (commas) and perhaps a final "!"."""
    words = text.rstrip(".").split()
    out = [w + ("," if not w.endswith(",") and rng.random() < e.comma else "") for w in words[:-1]]
    end = "!" if rng.random() < e.exclaim else "."
    return " ".join([*out, words[-1]]) + end


def draw_utterance(rng: np.random.Generator, sp: Speaker, e: EmotionProfile, text: str, seed: int,
                   speed: float = 1.0) -> Utterance:
    """eSpeak's settings for one clip (``speed`` > 1 shortens a clip that came out too long)."""
    pitch = e.pitch + sp.pitch + rng.normal(0, 5)
    rng_ = e.range * sp.range * float(np.exp(rng.normal(0, 0.2)))
    wpm = sp.wpm * e.rate * float(np.exp(rng.normal(0, 0.07))) * speed
    gap = max(0.0, e.wordgap * float(np.exp(rng.normal(0, 0.4))) + rng.normal(0, 0.5)) / speed
    return Utterance(text=_speakable(rng, text, e), voice=sp.voice, rate=int(np.clip(round(wpm), 80, 450)),
                     pitch=int(np.clip(round(pitch), 0, 100)), range=int(np.clip(round(rng_), 0, 100)),
                     wordgap=int(round(gap)), seed=seed)


def draw_post(rng: np.random.Generator, sp: Speaker, e: EmotionProfile) -> dict[str, float]:
    """The clip's post-processing cues."""
    return {
        "warp": sp.warp * e.formant * (1 + rng.normal(0, 0.01)),
        "energy_db": sp.loudness_db + e.energy_db + rng.normal(0, 3.5),
        "tension": float(np.clip(e.tension + sp.tension + rng.normal(0, 0.12), 0.02, 0.98)),
        "breath": e.breath * sp.breath * float(np.exp(rng.normal(0, 0.35))),
        "jitter": e.jitter * float(np.exp(rng.normal(0, 0.3))),
        "shimmer": e.shimmer * float(np.exp(rng.normal(0, 0.3))),
        "lead_s": rng.uniform(0.05, 0.3),
        "trail_s": rng.uniform(0.1, 0.35),
        "noise_colour": rng.uniform(0.3, 0.95),
        "noise_db": rng.uniform(-65.0, -45.0),
    }


def trim_silence(audio: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """``audio`` without the silence eSpeak puts around the speech (its own amount varies)."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return audio[loud[0]:loud[-1] + 1] if len(loud) else audio


def _smooth_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance noise at the control rate, linearly interpolated to ``n`` samples."""
    ctrl = rng.standard_normal(int(n / SAMPLE_RATE * _CTRL_HZ) + 2)
    return np.interp(np.arange(n) / SAMPLE_RATE * _CTRL_HZ, np.arange(len(ctrl)), ctrl)


def _tilt(x: np.ndarray, tension: float) -> np.ndarray:
    """Pressed voices keep their high band (a first difference added), lax ones lose it (a
    one-pole low-pass): spectral tilt follows tension."""
    from scipy.signal import lfilter

    if tension >= 0.5:
        return x + 1.5 * (tension - 0.5) * np.diff(x, prepend=0.0)
    a = 1.4 * (0.5 - tension)
    return lfilter([1 - a], [1, -a], x)


def _envelope(x: np.ndarray) -> np.ndarray:
    from scipy.signal import lfilter

    a = np.exp(-1.0 / (0.02 * SAMPLE_RATE))  # 20 ms
    return lfilter([1 - a], [1, -a], np.abs(x))


def postprocess(rng: np.random.Generator, speech: np.ndarray, sp: Speaker, cue: dict[str, float]) -> np.ndarray:
    """Voice quality, microphone, level, silences and background noise on 16 kHz ``speech``."""
    from scipy.signal import butter, iirpeak, lfilter, sosfilt

    x = speech.astype(np.float64)
    n = len(x)
    # Jitter: a random time warp whose instantaneous rate deviates by ~jitter (pitch follows it).
    pos = np.cumsum(1 + cue["jitter"] * _smooth_noise(rng, n))
    x = np.interp(pos - pos[0], np.arange(n), x)
    x *= 1 + cue["shimmer"] * _smooth_noise(rng, n)
    x = _tilt(x, cue["tension"])
    env = _envelope(x)
    hp = butter(2, 1500, btype="highpass", fs=SAMPLE_RATE, output="sos")
    breath = sosfilt(hp, rng.standard_normal(n)) * env
    x += breath * cue["breath"] * 1.2 * np.std(x) / (np.std(breath) + 1e-12)
    b, a = iirpeak(sp.eq_hz, 1.5, fs=SAMPLE_RATE)
    x += (10 ** (sp.eq_db / 20) - 1) * lfilter(b, a, x)
    active = env > env.max() / 30
    x *= 10 ** ((-28.0 + cue["energy_db"]) / 20) / (np.sqrt(np.mean(x[active] ** 2)) + 1e-12)
    x = np.concatenate([np.zeros(int(cue["lead_s"] * SAMPLE_RATE)), x, np.zeros(int(cue["trail_s"] * SAMPLE_RATE))])
    a = cue["noise_colour"]
    noise = lfilter([1 - a], [1, -a], rng.standard_normal(len(x)))
    x += noise / np.std(noise) * 10 ** (cue["noise_db"] / 20)
    return np.clip(x, -1.0, 1.0).astype(np.float32)
