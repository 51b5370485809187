"""Whisper log-mel features for the Qwen2-Audio encoder, on a clip window shorter than 30 s.

The encoder wants exactly ``max_source_positions * 2`` mel frames at 100 frames per second, so a
window of ``W`` seconds gives ``100 * W`` frames (``W = 4``: 400 frames, 200 positions, 100 audio
tokens). Features are computed once per (clip set, window) and shared by every trial of a sweep
through a ``.npz`` cache keyed by a content hash (loaded with ``allow_pickle=False``).

Storage is ragged: each clip keeps only the frames its audio reaches (plus the two that straddle
its end); the rest of the window is Whisper's constant padding value, restored on access. That
keeps IEMOCAP, whose longest clips force the 30 s window, at about its real length on disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pldistill._fs import artifact_lock, atomic_write, may_build, note_built
from pldistill.data.audio import TARGET_SAMPLE_RATE, load_audio
from pldistill.errors import InputError

if TYPE_CHECKING:
    from pldistill.data.emobox import Clip

__all__ = ["N_MELS", "FRAMES_PER_SECOND", "choose_window", "log_mel", "audio_token_count", "Features",
           "FeatureCache", "compute_features"]

log = logging.getLogger(__name__)

N_MELS = 128
FRAMES_PER_SECOND = 100  # hop of 160 samples at 16 kHz
_FEATURE_VERSION = 1  # bump when the stored features would change
_BATCH = 32


def choose_window(lengths_seconds: Sequence[float], *, max_window: float = 30.0, granularity: float = 1.0) -> float:
    """The smallest multiple of ``granularity`` seconds that covers the longest clip, capped at
    ``max_window`` (the real encoder's 30 s); longer clips will be truncated (logged)."""
    if not lengths_seconds:
        raise ValueError("choose_window needs at least one clip length")
    if granularity <= 0 or max_window <= 0:
        raise ValueError("granularity and max_window must be positive")
    longest = max(lengths_seconds)
    window = max(granularity, math.ceil(round(longest / granularity, 9)) * granularity)
    if window > max_window:
        over = sum(1 for x in lengths_seconds if x > max_window)
        log.warning("%d of %d clips are longer than the %.0f s window (longest %.2f s) and will be truncated",
                    over, len(lengths_seconds), max_window, longest)
        window = max_window
    return float(window)


def _frames(window_s: float) -> int:
    frames = window_s * FRAMES_PER_SECOND
    if abs(frames - round(frames)) > 1e-6 or round(frames) % 2 or frames <= 0:
        raise ValueError(f"a {window_s} s window gives {frames:g} mel frames; the encoder needs a positive "
                         "even whole number (window a multiple of 0.02 s)")
    return int(round(frames))


@lru_cache(maxsize=8)
def _extractor(window_s: float) -> Any:
    from transformers import WhisperFeatureExtractor

    chunk = int(window_s) if float(window_s).is_integer() else window_s
    fe = WhisperFeatureExtractor(feature_size=N_MELS, sampling_rate=TARGET_SAMPLE_RATE, chunk_length=chunk)
    fe.n_samples = int(round(window_s * TARGET_SAMPLE_RATE))  # whole samples for fractional windows
    fe.nb_max_frames = fe.n_samples // fe.hop_length
    return fe


def _log_mel_batch(audios: Sequence[np.ndarray], window_s: float) -> tuple[np.ndarray, np.ndarray]:
    frames = _frames(window_s)
    fe = _extractor(window_s)
    out = fe([np.asarray(a, dtype=np.float32) for a in audios], sampling_rate=TARGET_SAMPLE_RATE,
             return_tensors="np", padding="max_length", truncation=True, return_attention_mask=True)
    mel = np.asarray(out["input_features"], dtype=np.float32)
    valid = np.asarray(out["attention_mask"]).sum(axis=1).astype(np.int64)
    assert mel.shape[1:] == (N_MELS, frames), mel.shape
    return mel, valid


def log_mel(audio: np.ndarray, window_s: float) -> tuple[np.ndarray, int]:
    """Whisper log-mel of 16 kHz mono ``audio`` padded (or truncated) to ``window_s``:
    ``(128, 100 * window_s)`` float32, and the number of frames the real audio covers (the
    ``feature_attention_mask`` sum)."""
    if len(audio) == 0:
        raise ValueError("log_mel needs at least one sample")
    mel, valid = _log_mel_batch([audio], window_s)
    return mel[0], int(valid[0])


def audio_token_count(valid_frames: int) -> int:
    """Audio tokens Qwen2-Audio's encoder yields for ``valid_frames`` mel frames (conv stride 2,
    then pooling by 2): ``N = ((L - 1) // 2 + 1 - 2) // 2 + 1``; 100 for 400 frames (4 s)."""
    return ((valid_frames - 1) // 2 + 1 - 2) // 2 + 1


@dataclass(frozen=True, eq=False)
class Features:
    """Log-mel features of a clip set. ``get(i)`` gives ``(128, frames)``, ``stack`` a batch."""

    keys: tuple[str, ...]
    window_s: float
    valid_frames: np.ndarray  # (N,) int64
    stored: np.ndarray  # (128, sum of stored frames) float32, clips one after another
    offsets: np.ndarray  # (N + 1,) int64: clip i is stored[:, offsets[i]:offsets[i + 1]]
    pad_values: np.ndarray  # (N,) float32: the window's constant padding value per clip
    skipped: tuple[str, ...] = ()  # keys of clips left out for unreadable audio
    #: Hash of what these features depend on (audio bytes, crops, window, extractor); set by
    #: :class:`FeatureCache`, so downstream caches (the fine-tuned teacher) key on it without
    #: reading the features again.
    content_key: str = ""

    @property
    def frames(self) -> int:
        return _frames(self.window_s)

    def __len__(self) -> int:
        return len(self.keys)

    def index(self, key: str) -> int:
        return self._positions()[key]

    def _positions(self) -> dict[str, int]:
        cached = self.__dict__.get("_pos")
        if cached is None:
            cached = {k: i for i, k in enumerate(self.keys)}
            object.__setattr__(self, "_pos", cached)
        return cached

    def get(self, i: int) -> np.ndarray:
        out = np.full((N_MELS, self.frames), self.pad_values[i], dtype=np.float32)
        part = self.stored[:, self.offsets[i]:self.offsets[i + 1]]
        out[:, : part.shape[1]] = part
        return out

    def stack(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """``(B, 128, frames)`` for ``indices`` (default: all clips)."""
        idx = range(len(self)) if indices is None else indices
        return np.stack([self.get(i) for i in idx]) if len(idx) else np.zeros((0, N_MELS, self.frames), np.float32)

    def token_counts(self) -> np.ndarray:
        return np.array([audio_token_count(int(v)) for v in self.valid_frames], dtype=np.int64)

    @classmethod
    def from_dense(cls, keys: Sequence[str], window_s: float, mel: np.ndarray, valid: np.ndarray,
                   skipped: Sequence[str] = ()) -> Features:
        """Pack dense ``(N, 128, frames)`` features (see :func:`_pack`)."""
        parts, pads = _pack(mel, valid)
        return cls._assemble(keys, window_s, parts, pads, valid, skipped)

    @classmethod
    def _assemble(cls, keys: Sequence[str], window_s: float, parts: list[np.ndarray], pads: np.ndarray,
                  valid: np.ndarray, skipped: Sequence[str]) -> Features:
        offsets = np.concatenate([[0], np.cumsum([p.shape[1] for p in parts])]).astype(np.int64)
        stored = np.concatenate(parts, axis=1) if parts else np.zeros((N_MELS, 0), np.float32)
        return cls(tuple(keys), float(window_s), np.asarray(valid, dtype=np.int64),
                   stored.astype(np.float32, copy=False), offsets, np.asarray(pads, dtype=np.float32),
                   tuple(skipped))

    def save(self, path: Path) -> None:
        """Atomically write a ``.npz`` (strings as unicode arrays: loads without pickle); folders it
        creates are user-only (0o700)."""
        def write(fh) -> None:
            np.savez(fh, keys=np.array(self.keys, dtype=str), window_s=np.float64(self.window_s),
                     valid_frames=self.valid_frames, stored=self.stored, offsets=self.offsets,
                     pad_values=self.pad_values, skipped=np.array(self.skipped, dtype=str))

        atomic_write(path, write, durable=False)  # a cache: rebuilt if lost

    @classmethod
    def load(cls, path: Path) -> Features:
        with np.load(path, allow_pickle=False) as z:
            return cls(tuple(str(k) for k in z["keys"]), float(z["window_s"]), z["valid_frames"], z["stored"],
                       z["offsets"], z["pad_values"], tuple(str(k) for k in z["skipped"]))



def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return "missing"  # load_audio reports it properly
    return h.hexdigest()


def _content_key(clips: Sequence[Clip], window_s: float, on_bad_audio: str) -> str:
    """A hash of what the features depend on: audio bytes, crops, window and extractor."""
    h = hashlib.sha256(json.dumps({"v": _FEATURE_VERSION, "window": window_s, "mels": N_MELS,
                                   "sr": TARGET_SAMPLE_RATE, "bad": on_bad_audio}).encode())
    for c in clips:
        h.update(json.dumps([c.key, c.start_time, c.end_time, _file_digest(c.wav)]).encode())
    return h.hexdigest()[:24]


class FeatureCache:
    """Computes features once per (clip set, window); with ``cache_dir`` also across processes."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def get(self, clips: Sequence[Clip], window_s: float, *,
            on_bad_audio: Literal["fail", "skip"] = "fail") -> Features:
        _frames(window_s)
        key = _content_key(clips, window_s, on_bad_audio)
        path = self.cache_dir / f"features-{key}.npz" if self.cache_dir is not None else None
        if path is not None and path.is_file():
            try:
                return dataclasses.replace(Features.load(path), content_key=key)
            except (OSError, ValueError, KeyError) as exc:  # a damaged cache file is recomputed
                log.warning("recomputing features: cannot read %s (%s)", path, exc)
        if path is None:
            return dataclasses.replace(self._compute(clips, window_s, on_bad_audio), content_key=key)
        may_build(path, "log-mel features")  # inside a trial: preparation computes them
        with artifact_lock(path):  # also clears the temp file of a writer killed mid-save
            feats = dataclasses.replace(self._compute(clips, window_s, on_bad_audio), content_key=key)
            feats.save(path)
        note_built(path)
        return feats

    @staticmethod
    def _compute(clips: Sequence[Clip], window_s: float, on_bad_audio: str) -> Features:
        keys: list[str] = []
        skipped: list[str] = []
        parts: list[np.ndarray] = []
        pads: list[np.ndarray] = []
        valids: list[np.ndarray] = []
        pending: list[tuple[str, np.ndarray]] = []
        for n, clip in enumerate(clips):
            try:
                pending.append((clip.key, load_audio(clip)))
            except InputError as exc:
                if on_bad_audio != "skip":
                    raise
                log.warning("skipping clip %s (data.on_bad_audio: skip): %s", clip.key, exc)
                skipped.append(clip.key)
            if pending and (len(pending) == _BATCH or n == len(clips) - 1):
                mel, valid = _log_mel_batch([a for _, a in pending], window_s)
                batch_parts, batch_pads = _pack(mel, valid)  # ragged per batch: never all dense
                parts.extend(batch_parts)
                pads.append(batch_pads)
                valids.append(valid)
                keys.extend(k for k, _ in pending)
                pending = []
        if not keys:
            raise InputError(None, "wav", f"no readable audio among {len(clips)} clips")
        return Features._assemble(keys, window_s, parts, np.concatenate(pads), np.concatenate(valids), skipped)


def _pack(mel: np.ndarray, valid: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per clip, the frames up to ``valid + 2`` and the constant that fills the rest: an STFT
    frame ``j`` spans samples ``160 j +- 200``, so from ``valid + 2`` on it sees only the zero
    padding, which Whisper's log-mel clamps to one value per clip (its max - 8)."""
    frames = mel.shape[2]
    keep = np.minimum(np.asarray(valid) + 2, frames)
    return [np.ascontiguousarray(m[:, :k]) for m, k in zip(mel, keep, strict=True)], mel[:, 0, -1].astype(np.float32)


def compute_features(clips: Sequence[Clip], window_s: float, cache_dir: str | Path | None = None, *,
                     on_bad_audio: Literal["fail", "skip"] = "fail") -> Features:
    """Features of ``clips`` in a ``window_s`` window, cached under ``cache_dir`` when given."""
    return FeatureCache(cache_dir).get(clips, window_s, on_bad_audio=on_bad_audio)
