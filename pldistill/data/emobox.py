"""EmoBox manifests: label maps, fold files and the clips they list.

The benchmark ships, per dataset::

    <manifests>/<dataset>/label_map.json
    <manifests>/<dataset>/fold_<k>/<dataset>_{train,test}_fold_<k>.jsonl

Each JSONL line describes one clip (``key, dataset, wav, type, sample_rate, num_frame, task,
length, emo, channel`` and optionally ``start_time``, ``end_time``); ``wav`` is relative to an
audio root. ``label_map.json`` maps raw labels (``exc``) to canonical names (``Happy``).

Two optional fields go beyond EmoBox (the synthetic corpus writes them): ``transcript`` (what is
said) and ``lexical`` (how the words relate to the label: ``congruent``, ``neutral`` or
``conflict``). Real EmoBox manifests have neither; their transcripts can come from a separate
JSONL file, one ``{"key": "<clip key>", "transcript": "<text>"}`` per line
(:func:`load_transcripts`, ``data.transcripts``); a manifest line's own transcript wins.

Every problem with these files raises :class:`~pldistill.errors.InputError` naming the file (and
line) and the field. Nothing here opens audio: see :mod:`pldistill.data.audio`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pldistill.data.sentences import LEXICAL_CONDITIONS
from pldistill.data.split import split_labelled, split_validation
from pldistill.errors import InputError

__all__ = [
    "Clip",
    "DatasetSpec",
    "DATASETS",
    "FoldSplit",
    "REQUIRED_FIELDS",
    "fold_paths",
    "load_label_map",
    "resolve_dataset",
    "load_manifest",
    "load_fold",
    "speaker_of",
    "load_transcripts",
    "load_teacher_pool",
    "TEACHER_POOL_FILE",
    "LEXICAL_CONDITIONS",
]

#: Clips that only a teacher fine-tuned by pldistill trains on, beside ``label_map.json`` (optional).
TEACHER_POOL_FILE = "teacher_pool.jsonl"
#: Fields every manifest line must carry (``start_time``/``end_time`` are optional).
REQUIRED_FIELDS = ("key", "dataset", "wav", "type", "sample_rate", "num_frame", "task", "length", "emo",
                   "channel")


@dataclass(frozen=True)
class Clip:
    """One labelled clip of a manifest. ``wav`` is absolute; ``manifest:line`` is where it came from."""

    key: str
    dataset: str
    wav: Path
    label: str  # canonical label, after label_map
    speaker: str | None  # derived from the key (see speaker_of); None when the key does not say
    sample_rate: int  # as the manifest states it (the file's own rate is what audio loading uses)
    length: float  # seconds, as the manifest states it
    start_time: float | None
    end_time: float | None
    manifest: Path
    line: int
    transcript: str | None = None  # what is said, when the manifest or a transcripts file tells
    lexical: str | None = None  # congruent / neutral / conflict (words vs label), when known

    @property
    def where(self) -> str:
        """``manifest:line``, the file part of an error message about this clip."""
        return f"{self.manifest}:{self.line}"

    @property
    def duration(self) -> float:
        """Seconds of audio the clip covers (its start/end crop when given, else its length)."""
        start = self.start_time or 0.0
        end = self.end_time if self.end_time is not None else self.length
        return max(0.0, end - start)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's canonical label set (in class-index order) and fold count."""

    name: str
    labels: tuple[str, ...]
    num_folds: int


#: The datasets the paper reports on, as EmoBox defines them. Label order is the class index order.
DATASETS: dict[str, DatasetSpec] = {
    "iemocap": DatasetSpec("iemocap", ("Neutral", "Happy", "Angry", "Sad"), 5),
    # RAVDESS's own emotion-code order (01 neutral ... 08 surprised).
    "ravdess": DatasetSpec("ravdess", ("Neutral", "Calm", "Happy", "Sad", "Angry", "Fear", "Disgust",
                                       "Surprise"), 6),
    "savee": DatasetSpec("savee", ("Neutral", "Happy", "Sad", "Angry", "Fear", "Disgust", "Surprise"), 4),
}


@dataclass
class FoldSplit:
    """One fold: train (minus validation), validation carved from train, and the benchmark's test.
    With a labelled fraction below 1, ``train`` holds the labelled training clips and ``unlabelled``
    the rest, whose labels no student may read (only the teacher's answers for them)."""

    dataset: str
    fold: int
    labels: tuple[str, ...]
    train: list[Clip]
    val: list[Clip]
    test: list[Clip]
    label_map: dict[str, str] = field(default_factory=dict)
    unlabelled: list[Clip] = field(default_factory=list)

    def label_index(self, label: str) -> int:
        return self.labels.index(label)


# --- speakers ------------------------------------------------------------------------------------

_IEMOCAP_KEY = re.compile(r"(Ses\d+)[FM]_.*_([FM])\d+$")


def _iemocap_speaker(key: str) -> str | None:
    # Ses01F_impro04_M003: session 1, the *male* actor speaks (the last segment's letter; the letter
    # after the session says who wore the motion capture).
    m = _IEMOCAP_KEY.search(key)
    return f"{m.group(1)}{m.group(2)}" if m else None


def _ravdess_speaker(key: str) -> str | None:
    # ravdess-03-01-07-02-02-02-11: the seventh field is the actor.
    parts = key.split("-")
    return f"Actor_{parts[-1]}" if len(parts) >= 7 and parts[-1].isdigit() else None


def _savee_speaker(key: str) -> str | None:
    # savee-JE-n23
    parts = key.split("-")
    return parts[1] if len(parts) >= 3 and parts[1] in ("DC", "JE", "JK", "KL") else None


def _synthetic_speaker(key: str) -> str | None:
    # synthetic-S01F-hap-003 (see pldistill.data.synth)
    parts = key.split("-")
    return parts[1] if len(parts) >= 4 and parts[1] else None


_SPEAKER_RULES: dict[str, Callable[[str], str | None]] = {
    "iemocap": _iemocap_speaker,
    "ravdess": _ravdess_speaker,
    "savee": _savee_speaker,
    "synthetic": _synthetic_speaker,
}


def speaker_of(dataset: str, key: str) -> str | None:
    """The speaker a clip key names, by the dataset's naming scheme; None when unknown."""
    rule = _SPEAKER_RULES.get(dataset.lower())
    return rule(key) if rule else None


# --- label maps and dataset specs ----------------------------------------------------------------

def _dataset_dir(manifests_dir: Path, dataset: str) -> Path:
    path = Path(manifests_dir) / dataset
    if not path.is_dir():
        known = ", ".join([*DATASETS, "synthetic"])
        raise InputError(path, "dataset", f"no manifests folder for dataset {dataset!r} at {path} "
                                          f"(known datasets: {known})")
    return path


def load_label_map(manifests_dir: Path, dataset: str) -> dict[str, str]:
    """``<manifests>/<dataset>/label_map.json``: raw label -> canonical label, checked against the
    known dataset's label set."""
    dataset = dataset.lower()
    path = _dataset_dir(manifests_dir, dataset) / "label_map.json"
    if not path.is_file():
        raise InputError(path, "label_map", f"missing label map (expected {path})")
    try:
        mapping = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, "label_map", f"not readable JSON: {exc}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise InputError(path, "label_map", "expected a non-empty JSON object of raw label -> label")
    for raw, label in mapping.items():
        if not isinstance(label, str) or not label:
            raise InputError(path, raw, f"canonical label must be a non-empty string, got {label!r}")
    spec = DATASETS.get(dataset)
    if spec is not None and set(mapping.values()) != set(spec.labels):
        raise InputError(path, "labels", f"canonical labels {sorted(set(mapping.values()))} disagree with "
                                         f"{dataset}'s label set {sorted(spec.labels)}")
    return mapping


def _count_folds(dataset_dir: Path) -> int:
    folds = sorted(int(m.group(1)) for p in dataset_dir.iterdir()
                   if p.is_dir() and (m := re.fullmatch(r"fold_(\d+)", p.name)))
    if not folds:
        raise InputError(dataset_dir, "fold", "no fold_<k> folders")
    if folds != list(range(1, len(folds) + 1)):
        raise InputError(dataset_dir, "fold", f"fold folders must be numbered 1..K without gaps, found {folds}")
    return len(folds)


def resolve_dataset(manifests_dir: Path, dataset: str) -> tuple[DatasetSpec, dict[str, str]]:
    """The spec and label map of ``dataset``: known datasets use :data:`DATASETS`; others
    (``synthetic``, further EmoBox corpora) read labels and fold count from their own files,
    labels in the label map's order."""
    dataset = dataset.lower()
    label_map = load_label_map(manifests_dir, dataset)
    spec = DATASETS.get(dataset)
    if spec is None:
        labels = tuple(dict.fromkeys(label_map.values()))
        spec = DatasetSpec(dataset, labels, _count_folds(Path(manifests_dir) / dataset))
    return spec, label_map


def fold_paths(manifests_dir: Path, dataset: str, fold: int) -> tuple[Path, Path]:
    """The train and test JSONL files of a fold, as EmoBox names them."""
    folder = Path(manifests_dir) / dataset / f"fold_{fold}"
    return (folder / f"{dataset}_train_fold_{fold}.jsonl", folder / f"{dataset}_test_fold_{fold}.jsonl")


# --- manifests -----------------------------------------------------------------------------------

def _number(where: str, rec: dict[str, Any], name: str, *, optional: bool = False) -> float | None:
    value = rec.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InputError(where, name, f"expected a number, got {value!r}")
    return float(value)


def _parse_line(where: str, rec: Any, label_map: dict[str, str], audio_root: Path,
                dataset: str | None, manifest: Path, line: int) -> Clip:
    if not isinstance(rec, dict):
        raise InputError(where, "line", f"expected a JSON object, got {type(rec).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in rec:
            raise InputError(where, name, "missing field")
    for name in ("key", "dataset", "wav", "emo"):
        if not isinstance(rec[name], str) or not rec[name]:
            raise InputError(where, name, f"expected a non-empty string, got {rec[name]!r}")
    if dataset is not None and rec["dataset"].lower() != dataset:
        raise InputError(where, "dataset", f"expected {dataset!r}, got {rec['dataset']!r}")
    rate = _number(where, rec, "sample_rate")
    if rate is None or rate <= 0 or rate != int(rate):
        raise InputError(where, "sample_rate", f"expected a positive integer, got {rec['sample_rate']!r}")
    length = _number(where, rec, "length")
    if length is None or length <= 0:
        raise InputError(where, "length", f"expected seconds > 0, got {rec['length']!r}")
    start = _number(where, rec, "start_time", optional=True)
    end = _number(where, rec, "end_time", optional=True)
    if start is not None and start < 0:
        raise InputError(where, "start_time", f"expected seconds >= 0, got {start}")
    if end is not None and end <= (start or 0.0):
        raise InputError(where, "end_time", f"must be after start_time ({start or 0.0}), got {end}")
    emo = rec["emo"]
    if emo not in label_map:
        raise InputError(where, "emo", f"unknown label {emo!r}; label_map.json knows {sorted(label_map)}")
    transcript, lexical = rec.get("transcript"), rec.get("lexical")
    if transcript is not None and not isinstance(transcript, str):
        raise InputError(where, "transcript", f"expected a string, got {transcript!r}")
    if lexical is not None and lexical not in LEXICAL_CONDITIONS:
        raise InputError(where, "lexical", f"expected one of {list(LEXICAL_CONDITIONS)}, got {lexical!r}")
    name = rec["dataset"].lower()
    return Clip(key=rec["key"], dataset=name, wav=(audio_root / rec["wav"]).absolute(),
                label=label_map[emo], speaker=speaker_of(name, rec["key"]), sample_rate=int(rate),
                length=length, start_time=start, end_time=end, manifest=manifest, line=line,
                transcript=transcript, lexical=lexical)


def _jsonl(path: Path, field: str, what: str) -> Iterator[tuple[str, int, Any]]:
    """``(path:line, line number, parsed record)`` of each non-blank line of a JSONL file; a missing
    file, bytes that are not UTF-8 or a line that is not JSON is one InputError naming the line."""
    if not path.is_file():
        raise InputError(path, field, f"missing {what} file (expected {path})")
    try:
        with path.open(encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except UnicodeDecodeError as exc:
        raise InputError(path, field, f"{what} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(path, field, f"cannot read {what}: {exc.strerror or exc}") from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(where, "line", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        yield where, number, rec


def load_manifest(path: str | Path, label_map: dict[str, str], audio_root: str | Path, *,
                  dataset: str | None = None) -> list[Clip]:
    """All clips of one JSONL manifest, labels mapped to canonical names, ``wav`` made absolute
    under ``audio_root``. Blank lines are skipped; every other line must be a complete record.
    With ``dataset`` given, each line's ``dataset`` field must name it."""
    path = Path(path)
    audio_root = Path(audio_root)
    clips: list[Clip] = []
    seen: dict[str, int] = {}
    for where, number, rec in _jsonl(path, "fold", "manifest"):
        clip = _parse_line(where, rec, label_map, audio_root, dataset.lower() if dataset else None, path, number)
        if clip.key in seen:
            raise InputError(where, "key", f"duplicate key {clip.key!r} (first on line {seen[clip.key]})")
        seen[clip.key] = number
        clips.append(clip)
    return clips


def load_transcripts(path: str | Path) -> dict[str, str]:
    """A transcripts JSONL file: one ``{"key": "<clip key>", "transcript": "<text>"}`` per line
    (other fields are ignored; blank lines skipped) -> ``{key: transcript}``."""
    out: dict[str, str] = {}
    for where, _, rec in _jsonl(Path(path), "transcripts", "transcripts"):
        if not isinstance(rec, dict):
            raise InputError(where, "line", f"expected a JSON object, got {type(rec).__name__}")
        for name in ("key", "transcript"):
            if not isinstance(rec.get(name), str) or (name == "key" and not rec[name]):
                raise InputError(where, name, f"expected a {'non-empty ' if name == 'key' else ''}string, "
                                              f"got {rec.get(name)!r}")
        if rec["key"] in out:
            raise InputError(where, "key", f"duplicate key {rec['key']!r}")
        out[rec["key"]] = rec["transcript"]
    return out


def _with_transcripts(clips: list[Clip], transcripts: dict[str, str]) -> list[Clip]:
    from dataclasses import replace

    return [replace(c, transcript=transcripts.get(c.key)) if c.transcript is None else c for c in clips]


def load_fold(manifests_dir: str | Path, dataset: str, fold: int, *, audio_root: str | Path | None = None,
              val_fraction: float = 0.15, val_seed: int = 0, labelled_fraction: float = 1.0,
              labelled_seed: int = 0, transcripts: str | Path | None = None) -> FoldSplit:
    """Fold ``fold`` (numbered from 1) of ``dataset``: the benchmark's train and test files, and a
    validation set carved from train by :func:`split_validation` (``val_fraction=0``: none). With
    ``labelled_fraction < 1``, what train keeps is split by :func:`split_labelled` into ``train``
    (labelled) and ``unlabelled``; validation stays labelled (it selects the epoch).

    ``audio_root`` defaults to ``manifests_dir``. ``transcripts`` names a JSONL file
    (:func:`load_transcripts`) that fills in the transcript of clips whose line has none.
    """
    manifests_dir = Path(manifests_dir)
    dataset = dataset.lower()
    spec, label_map = resolve_dataset(manifests_dir, dataset)
    if not 1 <= fold <= spec.num_folds:
        raise InputError(manifests_dir / dataset, "fold",
                         f"fold {fold} out of range: {dataset} has {spec.num_folds} folds (1..{spec.num_folds})")
    root = Path(audio_root) if audio_root is not None else manifests_dir
    train_path, test_path = fold_paths(manifests_dir, dataset, fold)
    text_of = load_transcripts(transcripts) if transcripts is not None else None
    parts = []
    for path in (train_path, test_path):
        clips = load_manifest(path, label_map, root, dataset=dataset)
        if text_of is not None:
            clips = _with_transcripts(clips, text_of)
        if not clips:
            raise InputError(path, "lines", f"empty fold: fold {fold} lists no clips here")
        parts.append(clips)
    train, test = parts
    test_keys = {c.key: c.line for c in test}
    for clip in train:
        if clip.key in test_keys:
            raise InputError(clip.where, "key", f"{clip.key!r} is also in the test file "
                                                f"({test_path}:{test_keys[clip.key]})")
    if val_fraction > 0:
        train, val = split_validation(train, val_fraction, val_seed)
    else:
        val = []
    train, unlabelled = split_labelled(train, labelled_fraction, labelled_seed)
    return FoldSplit(dataset=dataset, fold=fold, labels=spec.labels, train=train, val=val, test=test,
                     label_map=dict(label_map), unlabelled=unlabelled)


def load_teacher_pool(manifests_dir: str | Path, dataset: str, *, audio_root: str | Path | None = None,
                      exclude: Sequence[Clip] = ()) -> list[Clip]:
    """The clips of ``<dataset>/teacher_pool.jsonl`` (EmoBox lines; none when the file is absent):
    extra data for a teacher that is fine-tuned here, never part of a fold. A pool clip whose key
    is also one of ``exclude`` (a fold's clips) is an error: the teacher would have trained on it."""
    dataset = dataset.lower()
    path = Path(manifests_dir) / dataset / TEACHER_POOL_FILE
    if not path.is_file():
        return []
    _, label_map = resolve_dataset(Path(manifests_dir), dataset)
    root = Path(audio_root) if audio_root is not None else Path(manifests_dir)
    pool = load_manifest(path, label_map, root, dataset=dataset)
    fold_keys = {c.key: c for c in exclude}
    for clip in pool:
        if clip.key in fold_keys:
            raise InputError(clip.where, "key", f"{clip.key!r} is also a fold clip ({fold_keys[clip.key].where}); "
                                                "the teacher pool must hold other clips")
    return pool
