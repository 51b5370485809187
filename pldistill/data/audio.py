"""Reading a clip's audio: crop, mix to mono, resample to 16 kHz.

Any file that cannot give audio raises :class:`~pldistill.errors.InputError` naming the manifest
line the clip came from, the field ``wav`` and the path.
"""

from __future__ import annotations

from math import gcd
from typing import TYPE_CHECKING

import numpy as np

from pldistill.errors import InputError

if TYPE_CHECKING:
    from pldistill.data.emobox import Clip

__all__ = ["load_audio", "TARGET_SAMPLE_RATE"]

TARGET_SAMPLE_RATE = 16000


def load_audio(clip: Clip, target_sr: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """The clip's samples as float32 mono at ``target_sr``, shape ``(n,)``.

    ``start_time``/``end_time`` crop the file (seconds, at the file's own rate); channels are
    averaged; resampling uses ``scipy.signal.resample_poly`` with the reduced integer ratio.
    """
    import soundfile as sf

    path = clip.wav
    if not path.is_file():
        raise InputError(clip.where, "wav", f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
        rate = int(info.samplerate)
        start = round((clip.start_time or 0.0) * rate)
        stop = round(clip.end_time * rate) if clip.end_time is not None else None
        if start >= info.frames > 0:
            raise InputError(clip.where, "wav", f"start_time {clip.start_time} s is past the end of {path} "
                                                f"({info.frames / rate:.3f} s)")
        data, rate = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except InputError:
        raise
    except Exception as exc:  # libsndfile reports unreadable/corrupt files in several ways
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = detail.replace(f"Error opening {str(path)!r}: ", "")  # libsndfile repeats the path
        raise InputError(clip.where, "wav", f"unreadable or corrupt audio file {path}: {detail}") from None
    if data.size == 0:
        raise InputError(clip.where, "wav", f"empty audio file (no samples in the clip's range): {path}")
    audio = data.mean(axis=1, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise InputError(clip.where, "wav", f"corrupt audio file (non-finite samples): {path}")
    if rate != target_sr:
        from scipy.signal import resample_poly

        g = gcd(int(rate), int(target_sr))
        audio = resample_poly(audio, target_sr // g, int(rate) // g).astype(np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32)
