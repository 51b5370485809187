"""eGeMAPSv02 functionals (88 per clip) with openSMILE, cached per clip set.

The Geneva Minimalistic Acoustic Parameter Set (Eyben et al., 2016): F0, loudness, spectral
balance, formants, jitter, shimmer, HNR and rhythm statistics of a whole clip. EmoDistill's
prosodic teacher reads them. :func:`compute_egemaps` gives an ``(N, 88)`` float32 array and the
feature names for a list of clips, and keeps them in ``<cache_dir>/egemaps-<content key>.npz``
(same conventions as the log-mel cache of :mod:`pldistill.data.features`: content-keyed, atomic
writes, loaded without pickle). The key does not depend on the clips' order, so every fold of
a corpus that lists the same clips shares one file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pldistill._fs import artifact_lock, atomic_write, may_build, note_built
from pldistill.data.audio import TARGET_SAMPLE_RATE, load_audio
from pldistill.data.features import _file_digest
from pldistill.errors import InputError

if TYPE_CHECKING:
    from pldistill.data.emobox import Clip

__all__ = ["EGEMAPS_DIM", "Egemaps", "compute_egemaps", "egemaps_names"]

log = logging.getLogger(__name__)

EGEMAPS_DIM = 88
_VERSION = 1  # bump when the stored values would change


@lru_cache(maxsize=1)
def _smile() -> Any:
    import opensmile

    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                           feature_level=opensmile.FeatureLevel.Functionals)


def egemaps_names() -> tuple[str, ...]:
    """The 88 feature names in column order (``F0semitoneFrom27.5Hz_sma3nz_amean``, ...)."""
    return tuple(_smile().feature_names)


@dataclass(frozen=True, eq=False)
class Egemaps:
    """eGeMAPS functionals of a clip set: ``values[i]`` belongs to ``keys[i]``."""

    keys: tuple[str, ...]
    names: tuple[str, ...]  # 88 feature names, the columns of values
    values: np.ndarray  # (N, 88) float32
    skipped: tuple[str, ...] = ()  # keys of clips left out for unreadable audio
    content_key: str = ""

    def __len__(self) -> int:
        return len(self.keys)

    def column(self, name: str) -> np.ndarray:
        """One feature for every clip, ``(N,)``."""
        return self.values[:, self.names.index(name)]

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        """``(len(keys), 88)``: the rows of ``keys``, in that order."""
        pos = {k: i for i, k in enumerate(self.keys)}
        return self.values[[pos[k] for k in keys]]


def _content_key(clips: Sequence[Clip], on_bad_audio: str) -> str:
    import opensmile

    h = hashlib.sha256(json.dumps({"v": _VERSION, "opensmile": opensmile.__version__, "set": "eGeMAPSv02",
                                   "sr": TARGET_SAMPLE_RATE, "bad": on_bad_audio}).encode())
    for c in sorted(clips, key=lambda c: c.key):
        h.update(json.dumps([c.key, c.start_time, c.end_time, _file_digest(c.wav)]).encode())
    return h.hexdigest()[:24]


def _save(path: Path, feats: Egemaps) -> None:
    def write(fh) -> None:
        np.savez(fh, keys=np.array(feats.keys, dtype=str), names=np.array(feats.names, dtype=str),
                 values=feats.values, skipped=np.array(feats.skipped, dtype=str))

    atomic_write(path, write, durable=False)  # a cache: rebuilt if lost


def _load(path: Path, key: str) -> Egemaps:
    with np.load(path, allow_pickle=False) as z:
        return Egemaps(tuple(str(k) for k in z["keys"]), tuple(str(n) for n in z["names"]),
                       z["values"].astype(np.float32, copy=False), tuple(str(k) for k in z["skipped"]), key)


def _compute(clips: Sequence[Clip], on_bad_audio: str, key: str) -> Egemaps:
    smile = _smile()
    keys, rows, skipped = [], [], []
    for clip in clips:
        try:
            audio = load_audio(clip)
        except InputError as exc:
            if on_bad_audio != "skip":
                raise
            log.warning("skipping clip %s (data.on_bad_audio: skip): %s", clip.key, exc)
            skipped.append(clip.key)
            continue
        keys.append(clip.key)
        rows.append(smile.process_signal(audio, TARGET_SAMPLE_RATE).to_numpy(dtype=np.float32)[0])
    if not keys:
        raise InputError(None, "wav", f"no readable audio among {len(clips)} clips")
    return Egemaps(tuple(keys), egemaps_names(), np.stack(rows), tuple(skipped), key)


def compute_egemaps(clips: Sequence[Clip], cache_dir: str | Path | None = None, *,
                    on_bad_audio: Literal["fail", "skip"] = "fail") -> Egemaps:
    """eGeMAPSv02 functionals of ``clips`` (in their order), cached under ``cache_dir`` when given.

    ``result.values`` is ``(N, 88)`` float32 and ``result.names`` the 88 column names. With
    ``on_bad_audio="skip"`` clips whose audio cannot be read are left out (``result.skipped``).
    About 60 ms per 3 s clip on one core.
    """
    key = _content_key(clips, on_bad_audio)
    path = Path(cache_dir) / f"egemaps-{key}.npz" if cache_dir is not None else None
    feats: Egemaps | None = None
    if path is not None and path.is_file():
        try:
            feats = _load(path, key)
        except (OSError, ValueError, KeyError) as exc:  # a damaged cache file is recomputed
            log.warning("recomputing eGeMAPS: cannot read %s (%s)", path, exc)
    if feats is None:
        ordered = sorted(clips, key=lambda c: c.key)
        if path is None:
            feats = _compute(ordered, on_bad_audio, key)
        else:
            may_build(path, "eGeMAPS functionals")  # inside a trial: preparation computes them
            with artifact_lock(path):  # also clears the temp file of a writer killed mid-save
                feats = _compute(ordered, on_bad_audio, key)
                _save(path, feats)
            note_built(path)
    skipped = set(feats.skipped)
    wanted = [c.key for c in clips if c.key not in skipped]
    return Egemaps(tuple(wanted), feats.names, feats.rows(wanted), feats.skipped, key)
