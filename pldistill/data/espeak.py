"""eSpeak NG, the shared library shipped by the ``espeakng-loader`` wheel, through ctypes.

:func:`speak` turns :class:`Utterance` s into int16 audio at eSpeak's 22,050 Hz and :func:`to_16k`
resamples it. The library keeps global state: it is initialised once per process and calls are
serialised by a lock.

Determinism (../shared/STACK-NOTES.md, checked again here): the bytes of an utterance depend on
every call made before it in the same process (``espeak_Terminate`` and re-initialising do not
reset that), and variants with breath noise (``f2``, ``f3``, ``f5``) draw from a generator seeded
by the clock unless ``espeak_ng_SetRandSeed`` is called. So each :class:`Utterance` carries a seed
that is set before it is spoken, and :func:`map_in_fresh_processes` runs each batch of utterances
in a process of its own: a batch's audio then depends only on the batch.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ESPEAK_SAMPLE_RATE", "Utterance", "speak", "to_16k", "map_in_fresh_processes"]

ESPEAK_SAMPLE_RATE = 22050

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
# espeak_PARAMETER
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Utterance:
    """One call to ``espeak_Synth`` and the settings made before it (eSpeak's own units)."""

    text: str
    voice: str = "en"  # a voice name, optionally with a variant: "en+f1", "en-us+m3"
    rate: int = 175  # words per minute, 80-450
    volume: int = 100  # 0-200
    pitch: int = 50  # base pitch, 0-100
    range: int = 50  # pitch range, 0 (monotone) - 100
    wordgap: int = 0  # extra pause between words, in 10 ms units at the default rate
    seed: int = 0  # eSpeak's noise generator (breathy variants), set before speaking

    def __post_init__(self) -> None:
        checks = {"rate": (80, 450), "volume": (0, 200), "pitch": (0, 100), "range": (0, 100),
                  "wordgap": (0, 100)}
        for name, (lo, hi) in checks.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"Utterance.{name} must be in [{lo}, {hi}], got {value}")
        if not self.text.strip():
            raise ValueError("Utterance.text is empty")


class _Engine:
    """The initialised library, one per process (eSpeak's state is global)."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != ESPEAK_SAMPLE_RATE:
            raise RuntimeError(f"eSpeak NG initialised at {rate} Hz, expected {ESPEAK_SAMPLE_RATE}")
        self._chunks: list[bytes] = []
        # The library keeps only a raw pointer to the callback: this object must outlive it.
        self._callback = _CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib

    def _collect(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        return 0  # 0: go on synthesising

    def say(self, u: Utterance) -> np.ndarray:
        lib = self.lib
        if lib.espeak_SetVoiceByName(u.voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {u.voice!r}")
        for param, value in ((_RATE, u.rate), (_VOLUME, u.volume), (_PITCH, u.pitch), (_RANGE, u.range),
                             (_WORDGAP, u.wordgap)):
            lib.espeak_SetParameter(param, value, 0)
        lib.espeak_ng_SetRandSeed(u.seed)
        text = u.text.encode("utf-8")
        self._chunks = []
        status = lib.espeak_Synth(text, len(text) + 1, 0, 1, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {u.text!r}")
        return np.frombuffer(b"".join(self._chunks), dtype="<i2").copy()


_ENGINE: _Engine | None = None
_LOCK = threading.Lock()


def speak(utterances: Sequence[Utterance]) -> list[np.ndarray]:
    """Each utterance as int16 mono at :data:`ESPEAK_SAMPLE_RATE`, spoken in this process, in order."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return [_ENGINE.say(u) for u in utterances]


def to_16k(pcm: np.ndarray, warp: float = 1.0) -> np.ndarray:
    """int16 audio at 22,050 Hz as float32 in [-1, 1] at 16 kHz (``scipy.signal.resample_poly``).

    ``warp`` != 1 plays the audio that much faster before resampling, which scales every
    frequency (pitch and formants, like a shorter vocal tract) by ``warp`` and the duration by
    ``1 / warp``; it is rounded to a ratio of 2560 / k.
    """
    from math import gcd

    from scipy.signal import resample_poly

    if not 0.8 <= warp <= 1.25:
        raise ValueError(f"warp must be in [0.8, 1.25], got {warp}")
    # 16000 / 22050 = 320 / 441 = 2560 / 3528; warping keeps the denominator and moves the numerator.
    up, down = int(round(2560 / warp)), 3528
    g = gcd(up, down)
    audio = np.asarray(pcm, dtype=np.float32) / 32768.0
    return resample_poly(audio, up // g, down // g).astype(np.float32)


def map_in_fresh_processes(fn: str, tasks: Sequence[Any], processes: int = 2, *,
                           on_result: Callable[[Any], None] | None = None) -> list[Any]:
    """``[fn(t) for t in tasks]``, each call in a new Python process of its own (so eSpeak's global
    state starts fresh per task), at most ``processes`` at a time; ``on_result`` sees each result
    in task order as it is ready.

    ``fn`` names a module-level function as ``"package.module:function"``; tasks and results
    travel as JSON over the child's stdin and stdout. Plain subprocesses rather than a
    multiprocessing pool: they work from any caller (a script without a ``__main__`` guard, a
    daemonic worker) because the child imports only ``fn``'s module.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not tasks:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(processes, len(tasks)))) as pool:
        futures = [pool.submit(_run_child, fn, task) for task in tasks]
        out = []
        for future in futures:
            out.append(future.result())
            if on_result is not None:
                on_result(out[-1])
    return out


def _run_child(fn: str, task: Any) -> Any:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    module, _, name = fn.partition(":")
    code = f"import json, sys; from {module} import {name}; json.dump({name}(json.load(sys.stdin)), sys.stdout)"
    import site

    env = dict(os.environ)
    # The child must import this very copy of pldistill: a checkout on the parent's path is put on
    # the child's (an installed copy is found there anyway; site-packages must not go before the stdlib).
    root = str(Path(__file__).resolve().parents[2])
    if root not in {str(Path(p).resolve()) for p in site.getsitepackages()}:
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(task), capture_output=True, text=True,
                          env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{fn} failed in its worker process (exit {done.returncode}):\n{tail}")
    return json.loads(done.stdout)
