"""Classify audio files with an exported student: per file the predicted emotion and every label's score.

Audio is read as training reads it (``data.audio``: any rate libsndfile opens, mixed to mono,
resampled to 16 kHz), then cropped to the student's window. A file that cannot be read becomes one
error line naming it, and the other files are still predicted. With an EmoBox manifest, the clips'
labels give UA/WA/F1 as the sweep's evaluation computes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pldistill.errors import InputError

__all__ = ["ClipPrediction", "PredictionRun", "LOADERS", "load_exported", "predict_files", "predict_manifest"]


@dataclass
class ClipPrediction:
    file: str
    key: str
    prediction: str
    scores: dict[str, float]  # label -> log-likelihood of its answer
    label: str | None = None  # the manifest's label


@dataclass
class PredictionRun:
    labels: tuple[str, ...]
    window_s: float
    predictions: list[ClipPrediction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line per file that could not be predicted
    metrics: dict[str, float] | None = None  # ua, wa, f1 (manifest only)


def _audio_lm(folder: Path, meta: dict[str, Any]) -> Any:
    from pldistill.serve.audio_lm import ExportedAudioLM

    return ExportedAudioLM(folder, meta)


def _classifier(folder: Path, meta: dict[str, Any]) -> Any:
    from pldistill.serve.classifier import ExportedClassifier

    return ExportedClassifier(folder, meta)


#: family -> loader of an exported folder; the result has ``labels``, ``window_s`` and
#: ``score(audios) -> (N, C)``.
LOADERS: dict[str, Callable[[Path, dict[str, Any]], Any]] = {"audio_lm": _audio_lm, "classifier": _classifier}


def load_exported(folder: Path) -> Any:
    """The student in ``folder`` (written by ``pldistill-sweep export``); InputError naming the folder
    when it is not one."""
    from pldistill.serve.audio_lm import META_FILE

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, None, "model folder not found")
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise InputError(folder, None, f"not an exported pldistill model (no {META_FILE}; "
                                       "make one with pldistill-sweep export)")
    try:
        meta = json.loads(meta_path.read_text())
        family, labels = meta["family"], meta["labels"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(meta_path, None, f"unreadable labels file ({type(exc).__name__}: {exc})") from None
    if family not in LOADERS:
        raise InputError(meta_path, "family", f"unknown student family {family!r}; known: {', '.join(LOADERS)}")
    if not labels:
        raise InputError(meta_path, "labels", "no labels")
    from safetensors import SafetensorError

    try:
        return LOADERS[family](folder, meta)
    except (OSError, ValueError, SafetensorError) as exc:  # missing or corrupt weights, config or tokenizer
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(folder, None, f"cannot load the exported model: {detail}") from None


def _file_clip(path: Path) -> Any:
    from pldistill.data.emobox import Clip

    return Clip(key=path.name, dataset="", wav=path.absolute(), label="", speaker=None, sample_rate=0, length=0.0,
                start_time=None, end_time=None, manifest=path, line=0)


def _read(clips: Sequence[Any], *, name_file: bool) -> tuple[list[tuple[Any, np.ndarray]], list[str]]:
    """Audio of each readable clip; one error line per other clip (the file named in it)."""
    from pldistill.data.audio import load_audio

    ok, errors = [], []
    for clip in clips:
        try:
            ok.append((clip, load_audio(clip)))
        except InputError as exc:
            errors.append(exc.problem if name_file else str(exc))  # a file: the problem names it
    return ok, errors


def _run(model: Any, clips: Sequence[Any], *, name_file: bool, truth: bool, batch_size: int) -> PredictionRun:
    ok, errors = _read(clips, name_file=name_file)
    run = PredictionRun(labels=tuple(model.labels), window_s=float(model.window_s), errors=errors)
    if not ok:
        return run
    scores = model.score([audio for _, audio in ok], batch_size=batch_size)
    for (clip, _), row in zip(ok, scores):
        run.predictions.append(ClipPrediction(
            file=str(clip.wav if not name_file else clip.manifest), key=clip.key,
            prediction=run.labels[int(np.argmax(row))], scores={lab: float(s) for lab, s in zip(run.labels, row)},
            label=clip.label if truth else None))
    return run


def predict_files(model: Any, paths: Sequence[Path], *, batch_size: int = 16) -> PredictionRun:
    """Predictions for audio files (WAV, FLAC, ... at any rate); unreadable ones become error lines."""
    return _run(model, [_file_clip(Path(p)) for p in paths], name_file=True, truth=False, batch_size=batch_size)


def predict_manifest(model: Any, manifest: Path, *, audio_root: Path | None = None,
                     batch_size: int = 16) -> PredictionRun:
    """Predictions for the clips of an EmoBox JSONL manifest, and UA/WA/F1 against its labels.

    Its ``label_map.json`` is read from the dataset folder (``<manifests>/<dataset>/``, two levels
    above a ``fold_<k>/`` manifest) when there is one; audio paths resolve against ``audio_root``
    (default: the manifests folder, as for a sweep)."""
    from pldistill.data.emobox import load_manifest
    from pldistill.train.metrics import classification_metrics

    manifest = Path(manifest)
    dataset_dir = manifest.absolute().parent.parent
    map_file = dataset_dir / "label_map.json"
    labels = tuple(model.labels)
    if map_file.is_file():
        try:
            label_map = {str(k): str(v) for k, v in json.loads(map_file.read_text()).items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise InputError(map_file, None, f"unreadable label map ({exc})") from None
    else:
        label_map = {lab: lab for lab in labels}
    clips = load_manifest(manifest, label_map, audio_root if audio_root is not None else dataset_dir.parent)
    unknown = sorted({c.label for c in clips} - set(labels))
    if unknown:
        raise InputError(manifest, "emo", f"labels {unknown} are not among the model's {list(labels)}")
    run = _run(model, clips, name_file=False, truth=True, batch_size=batch_size)
    if run.predictions:
        index = {lab: i for i, lab in enumerate(labels)}
        run.metrics = classification_metrics([index[str(p.label)] for p in run.predictions],
                                             [index[p.prediction] for p in run.predictions])
    return run
