"""The embedded synthetic emotional-speech corpus, written in EmoBox format.

Layout under ``out_dir`` (which is then the manifests folder *and* the audio root)::

    synthetic/synth.json                                 parameters it was generated with
    synthetic/label_map.json                             {"neu": "Neutral", "hap": "Happy", ...}
    synthetic/fold_<k>/synthetic_{train,test}_fold_<k>.jsonl
    synthetic/wav/<speaker>/<speaker>-<raw>-<nnn>.wav    16 kHz mono PCM-16

Speakers are split into ``folds`` disjoint groups; fold ``k`` tests on group ``k`` and trains on
the rest (as SAVEE and RAVDESS do). Every speaker says ``per_class`` clips of every emotion.
The voices come from :mod:`pldistill.data._voice`. Each clip has its own random stream derived
from ``(seed, speaker, emotion, index)``, so the corpus is byte-identical for a given seed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pldistill._fs import private_dirs
from pldistill.config import config_hash
from pldistill.data._voice import PROFILES, SAMPLE_RATE, Speaker, make_speaker, synthesize_utterance
from pldistill.errors import InputError
from pldistill.progress import StepProgress

if TYPE_CHECKING:
    from pldistill.config import DataConfig

__all__ = ["synthesize_corpus", "ensure_synthetic", "SYNTH_LABELS", "GENERATOR_VERSION"]

#: Bumped whenever the generator's output changes, so cached corpora are not silently reused.
GENERATOR_VERSION = 1
SYNTH_LABELS = ("Neutral", "Happy", "Angry", "Sad")
_DATASET = "synthetic"


def _raw_labels(labels: tuple[str, ...]) -> dict[str, str]:
    """Short raw labels as EmoBox corpora use them (``neu`` -> ``Neutral``)."""
    raw = {label: label[:3].lower() for label in labels}
    if len(set(raw.values())) != len(raw):
        raw = {label: label.lower() for label in labels}
    return {r: label for label, r in raw.items()}


def _params(speakers: int, per_class: int, folds: int, seed: int, labels: tuple[str, ...],
            clip_seconds: tuple[float, float]) -> dict[str, Any]:
    return {"generator_version": GENERATOR_VERSION, "sample_rate": SAMPLE_RATE, "speakers": speakers,
            "per_class": per_class, "folds": folds, "seed": seed, "labels": list(labels),
            "clip_seconds": [float(clip_seconds[0]), float(clip_seconds[1])]}


def _check_params(speakers: int, per_class: int, folds: int, labels: tuple[str, ...],
                  clip_seconds: tuple[float, float]) -> None:
    if speakers < 2:
        raise InputError(None, "speakers", f"need at least 2 speakers, got {speakers}")
    if per_class < 1:
        raise InputError(None, "per_class", f"need at least 1 clip per class, got {per_class}")
    if not 2 <= folds <= speakers:
        raise InputError(None, "folds", f"need 2 <= folds <= speakers ({speakers}), got {folds}")
    unknown = [label for label in labels if label not in PROFILES]
    if unknown or len(set(labels)) != len(labels) or len(labels) < 2:
        raise InputError(None, "labels", f"need >= 2 distinct labels from {sorted(PROFILES)}, got {list(labels)}")
    lo, hi = clip_seconds
    if not 0.3 <= lo <= hi <= 30.0:
        raise InputError(None, "clip_seconds", f"need 0.3 <= min <= max <= 30 seconds, got {clip_seconds}")


def _check_existing(corpus: Path, params: dict[str, Any]) -> None:
    meta = corpus / "synth.json"
    if not meta.is_file():
        raise InputError(corpus, "synth.json", "folder exists but holds no synth.json, so it is not a "
                                               "pldistill synthetic corpus; choose another folder")
    try:
        old = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(meta, "synth.json", f"unreadable: {exc}") from None
    for name, value in params.items():
        if old.get(name) != value:
            raise InputError(meta, name, f"the corpus here was generated with {name}={old.get(name)!r}, "
                                         f"asked for {value!r}; use another folder or delete this one")


def _wav_bytes(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    """16 kHz mono PCM-16 with the stdlib writer: a plain 44-byte header, no fsync per file
    (libsndfile syncs on close, which dominated generation time)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def _write_speaker(root: Path, s: int, params: dict[str, Any], labels: tuple[str, ...], raw_of: dict[str, str],
                   records: dict[str, list[dict[str, Any]]], bar: StepProgress) -> Speaker:
    """Write speaker ``s``'s clips and add their manifest rows to ``records``."""
    seed = params["seed"]
    lo, hi = params["clip_seconds"]
    speaker = make_speaker(s, np.random.default_rng([seed, s, 0]))
    (root / _DATASET / "wav" / speaker.name).mkdir(parents=True)
    rows = records.setdefault(speaker.name, [])
    for e, label in enumerate(labels):
        for i in range(params["per_class"]):
            rng = np.random.default_rng([seed, s, e + 1, i])
            audio = _wav_bytes(synthesize_utterance(rng, speaker, PROFILES[label], rng.uniform(lo, hi)))
            name = f"{speaker.name}-{raw_of[label]}-{i:03d}"
            wav = f"{_DATASET}/wav/{speaker.name}/{name}.wav"
            _write_wav(root / wav, audio)
            rows.append({"key": f"{_DATASET}-{name}", "dataset": _DATASET, "wav": wav, "type": "raw",
                         "sample_rate": SAMPLE_RATE, "num_frame": float(len(audio)), "task": "category",
                         "length": len(audio) / SAMPLE_RATE, "emo": raw_of[label], "channel": 1})
            bar.advance()
    return speaker


def _write_corpus(root: Path, params: dict[str, Any], log: Callable[[str], None] | None = None) -> None:
    """Write the whole corpus under ``root/synthetic`` (``root`` is a fresh temp folder)."""
    labels = tuple(params["labels"])
    raw_of = {label: raw for raw, label in _raw_labels(labels).items()}
    corpus = root / _DATASET
    records: dict[str, list[dict[str, Any]]] = {}
    speakers: list[Speaker] = []
    clips = params["speakers"] * len(labels) * params["per_class"]
    with StepProgress(clips, "synthesising corpus", unit="clips", log=log) as bar:
        for s in range(params["speakers"]):
            speakers.append(_write_speaker(root, s, params, labels, raw_of, records, bar))
    groups = np.array_split(np.arange(len(speakers)), params["folds"])
    for k, group in enumerate(groups, start=1):
        test_names = {speakers[j].name for j in group}
        folder = corpus / f"fold_{k}"
        folder.mkdir()
        for split, keep in (("train", False), ("test", True)):
            lines = [json.dumps(r) for sp in speakers if (sp.name in test_names) == keep for r in records[sp.name]]
            (folder / f"{_DATASET}_{split}_fold_{k}.jsonl").write_text("\n".join(lines) + "\n")
    (corpus / "label_map.json").write_text(json.dumps(_raw_labels(labels), indent=4) + "\n")
    (corpus / "synth.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")


def synthesize_corpus(out_dir: str | Path, *, speakers: int = 8, per_class: int = 6, folds: int = 4,
                      seed: int = 0, labels: tuple[str, ...] = SYNTH_LABELS,
                      clip_seconds: tuple[float, float] = (1.0, 2.0),
                      log: Callable[[str], None] | None = None) -> Path:
    """Generate the synthetic corpus under ``out_dir/synthetic`` and return ``out_dir`` (the
    manifests folder and audio root for ``load_fold(out_dir, "synthetic", k)``).

    An existing corpus generated with the same parameters is reused; one generated with other
    parameters is an error. The corpus is written into a temp folder beside the target and
    renamed into place, so readers never see a half-written corpus. Progress (clips written) is a
    bar in a terminal, else a line every 10 % to ``log`` (default: stdout).
    """
    labels = tuple(labels)
    _check_params(speakers, per_class, folds, labels, clip_seconds)
    params = _params(speakers, per_class, folds, seed, labels, clip_seconds)
    out_dir = Path(out_dir)
    target = out_dir / _DATASET
    if target.exists():
        _check_existing(target, params)
        return out_dir
    private_dirs(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_DATASET}.tmp-", dir=out_dir))
    try:
        _write_corpus(tmp, params, log)
        try:
            os.rename(tmp / _DATASET, target)
        except OSError:
            if not target.exists():
                raise
            _check_existing(target, params)  # another process won the race: theirs must match
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_synthetic(cfg: DataConfig, cache_dir: str | Path, log: Callable[[str], None] | None = None) -> Path:
    """The manifests folder of ``cfg``'s synthetic corpus, generated if missing: ``cfg.manifests``
    when set, else ``cache_dir/synthetic-<hash of the synth parameters>``."""
    if cfg.source != "synthetic":
        raise InputError(None, "data.source", f"expected 'synthetic', got {cfg.source!r}")
    s = cfg.synth
    if cfg.manifests is not None:
        out = Path(cfg.manifests)
    else:
        key = config_hash({"synth": s.model_dump(mode="json"), "generator_version": GENERATOR_VERSION})
        out = Path(cache_dir) / f"synthetic-{key}"
    return synthesize_corpus(out, speakers=s.speakers, per_class=s.per_class, folds=s.folds, seed=s.seed, log=log)
