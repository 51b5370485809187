"""The embedded synthetic emotional-speech corpus: spoken sentences (eSpeak NG), in EmoBox format.

Layout under ``out_dir`` (which is then the manifests folder *and* the audio root)::

    synthetic/synth.json                                 parameters it was generated with
    synthetic/label_map.json                             {"neu": "Neutral", "hap": "Happy", ...}
    synthetic/fold_<k>/synthetic_{train,test}_fold_<k>.jsonl
    synthetic/teacher_pool.jsonl                         clips of ``teacher_speakers`` more speakers
    synthetic/wav/<speaker>/<speaker>-<raw>-<nnn>.wav    16 kHz mono PCM-16

Speakers are split into ``folds`` disjoint groups; fold ``k`` tests on group ``k`` and trains on
the rest (as SAVEE and RAVDESS do). ``teacher_speakers`` further speakers go into no fold: their
clips, listed in ``teacher_pool.jsonl``, are heard only by a teacher fine-tuned here (see
:class:`~pldistill.config.SynthConfig`). Every speaker says ``per_class`` clips of every emotion. Each
manifest line carries the EmoBox fields plus ``transcript`` (the sentence) and ``lexical``: how
its words relate to its label, the emotion of the voice (``congruent``, ``neutral`` or
``conflict``; see :mod:`pldistill.data.sentences`). Voices: :mod:`pldistill.data._speech`.

Same parameters, same bytes: every clip draws from its own random stream, derived from
``(seed, speaker, emotion, index)``, and each speaker is spoken in a fresh process of its own
(eSpeak's output depends on the calls made before it in a process; see
:mod:`pldistill.data.espeak`), so neither the order in which workers finish nor their number
changes a byte.
"""

from __future__ import annotations

import json
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pldistill._fs import artifact_lock, atomic_dir, may_build, note_built
from pldistill.config import SynthConfig, config_hash
from pldistill.data._speech import PROFILES, SAMPLE_RATE, make_speaker
from pldistill.data.emobox import TEACHER_POOL_FILE
from pldistill.errors import InputError
from pldistill.progress import StepProgress

if TYPE_CHECKING:
    from pldistill.config import DataConfig

__all__ = ["synthesize_corpus", "ensure_synthetic", "synth_config", "speak_speaker", "SYNTH_LABELS",
           "GENERATOR_VERSION"]

#: Bumped whenever the generator's output changes, so cached corpora are not silently reused.
#: 2: eSpeak NG speech with words, transcripts and lexical conditions (1 was a tone generator).
GENERATOR_VERSION = 2
SYNTH_LABELS: tuple[str, ...] = tuple(SynthConfig.model_fields["labels"].default)
_DATASET = "synthetic"


def _raw_labels(labels: tuple[str, ...]) -> dict[str, str]:
    """Short raw labels as EmoBox corpora use them (``neu`` -> ``Neutral``)."""
    raw = {label: label[:3].lower() for label in labels}
    if len(set(raw.values())) != len(raw):
        raw = {label: label.lower() for label in labels}
    return {r: label for label, r in raw.items()}


def synth_config(config: SynthConfig | None = None, **overrides: Any) -> SynthConfig:
    """``config`` (default: :class:`SynthConfig`'s defaults) with ``overrides``, checked; a bad
    value is an :class:`InputError` naming the field."""
    from pydantic import ValidationError

    base = (config or SynthConfig()).model_dump()
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise TypeError(f"unknown synthetic-corpus parameters {unknown}; known: {sorted(base)}")
    try:
        cfg = SynthConfig(**{**base, **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or _guess_field(err["msg"])
        raise InputError(None, loc, err["msg"]) from None
    unknown_labels = [label for label in cfg.labels if label not in PROFILES]
    if unknown_labels:
        raise InputError(None, "labels", f"no voice profile for {unknown_labels}; choose from {sorted(PROFILES)}")
    return cfg


def _guess_field(message: str) -> str:
    # A model-level check names its fields only in its message; report the first one it names.
    for name in ("folds", "clip_seconds", "labels", "congruent"):
        if name in message:
            return name
    return "synth"


def _params(cfg: SynthConfig) -> dict[str, Any]:
    return {"generator_version": GENERATOR_VERSION, "sample_rate": SAMPLE_RATE, **cfg.model_dump(mode="json")}


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


def _write_wav(path: Path, audio: np.ndarray) -> None:
    """16 kHz mono PCM-16 with the stdlib writer: a plain 44-byte header, no fsync per file."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def speak_speaker(task: tuple[str, int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Speak and write speaker ``s``'s clips into the corpus folder ``corpus`` (the manifests' ``wav``
    paths are relative to its parent, the audio root); their manifest rows, in order. Runs in a
    fresh process per speaker (:func:`~pldistill.data.espeak.map_in_fresh_processes`)."""
    from pldistill.data._clips import plan_speaker, render_clip

    corpus, s, params = task
    labels = tuple(params["labels"])
    raw_of = {label: raw for raw, label in _raw_labels(labels).items()}
    speaker = make_speaker(s, np.random.default_rng([params["seed"], s, 0]))
    (Path(corpus) / "wav" / speaker.name).mkdir(parents=True)
    rows = []
    for clip in plan_speaker(s, params):
        label = labels[clip.emotion]
        audio = render_clip(speaker, PROFILES[label], clip, params)
        name = f"{speaker.name}-{raw_of[label]}-{clip.index:03d}"
        wav = f"{_DATASET}/wav/{speaker.name}/{name}.wav"
        _write_wav(Path(corpus) / "wav" / speaker.name / f"{name}.wav", audio)
        rows.append({"key": f"{_DATASET}-{name}", "dataset": _DATASET, "wav": wav, "type": "raw",
                     "sample_rate": SAMPLE_RATE, "num_frame": float(len(audio)), "task": "category",
                     "length": len(audio) / SAMPLE_RATE, "emo": raw_of[label], "channel": 1,
                     "transcript": clip.text, "lexical": clip.lexical})
    return rows


def _write_corpus(corpus: Path, params: dict[str, Any], processes: int,
                  log: Callable[[str], None] | None = None) -> None:
    """Write the whole corpus into ``corpus`` (a fresh temp folder, renamed to ``<out>/synthetic``)."""
    from pldistill.data.espeak import map_in_fresh_processes

    labels = tuple(params["labels"])
    n = params["speakers"]
    # Pool speakers are numbered after the folds' ones, so adding a pool changes no fold clip.
    pool = params.get("teacher_speakers", 0)
    tasks = [(str(corpus), s, params) for s in range(n + pool)]
    with StepProgress((n + pool) * len(labels) * params["per_class"], "synthesising corpus", unit="clips", log=log) as bar:
        def done(rows: list[dict[str, Any]]) -> None:
            for _ in rows:  # clip by clip, so a plain log still gets its line every 10 %
                bar.advance()

        records = map_in_fresh_processes("pldistill.data.synth:speak_speaker", tasks, processes, on_result=done)
    for k, group in enumerate(np.array_split(np.arange(n), params["folds"]), start=1):
        folder = corpus / f"fold_{k}"
        folder.mkdir()
        test = set(group.tolist())
        for split, keep in (("train", False), ("test", True)):
            lines = [json.dumps(r) for s in range(n) if (s in test) == keep for r in records[s]]
            (folder / f"{_DATASET}_{split}_fold_{k}.jsonl").write_text("\n".join(lines) + "\n")
    if pool:
        lines = [json.dumps(r) for s in range(n, n + pool) for r in records[s]]
        (corpus / TEACHER_POOL_FILE).write_text("\n".join(lines) + "\n")
    (corpus / "label_map.json").write_text(json.dumps(_raw_labels(labels), indent=4) + "\n")
    (corpus / "synth.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")


def synthesize_corpus(out_dir: str | Path, config: SynthConfig | None = None, *, processes: int = 2,
                      log: Callable[[str], None] | None = None, **overrides: Any) -> Path:
    """Generate the synthetic corpus under ``out_dir/synthetic`` and return ``out_dir`` (the
    manifests folder and audio root for ``load_fold(out_dir, "synthetic", k)``).

    Parameters are ``config`` (default: :class:`~pldistill.config.SynthConfig`'s defaults) with
    ``overrides`` of its fields (``speakers=4, per_class=2``). ``processes`` speakers are spoken
    at a time; it does not change the output. An existing corpus generated with the same
    parameters is reused; one generated with other parameters is an error. The corpus is written
    into a temp folder beside the target and renamed into place, so readers never see a
    half-written corpus; it is written under a file lock (``out_dir/.synthetic.lock``), so
    concurrent callers speak it once. Progress (clips written) is a bar in a terminal, else a line
    every 10 % to ``log`` (default: stdout).
    """
    params = _params(synth_config(config, **overrides))
    out_dir = Path(out_dir)
    target = out_dir / _DATASET
    if target.exists():
        _check_existing(target, params)
        return out_dir
    may_build(target, "synthetic corpus")  # inside a trial: preparation speaks it
    # Under a lock, so a process asking for the corpus while another speaks it waits and reuses it
    # instead of speaking it a second time (sweep workers, test workers sharing one cache).
    with artifact_lock(target):
        if target.exists():
            _check_existing(target, params)
            return out_dir
        try:
            with atomic_dir(target, replace=False) as tmp:
                _write_corpus(tmp, params, processes, log)
            note_built(target)
        except FileExistsError:
            _check_existing(target, params)  # written by a process not taking the lock: must match
    return out_dir


def ensure_synthetic(cfg: DataConfig, cache_dir: str | Path, log: Callable[[str], None] | None = None) -> Path:
    """The manifests folder of ``cfg``'s synthetic corpus, generated if missing: ``cfg.manifests``
    when set, else ``cache_dir/synthetic-<hash of the synth parameters>``."""
    if cfg.source != "synthetic":
        raise InputError(None, "data.source", f"expected 'synthetic', got {cfg.source!r}")
    if cfg.manifests is not None:
        out = Path(cfg.manifests)
    else:
        key = config_hash({"synth": cfg.synth.model_dump(mode="json"), "generator_version": GENERATOR_VERSION})
        out = Path(cache_dir) / f"synthetic-{key}"
    return synthesize_corpus(out, cfg.synth, log=log)
