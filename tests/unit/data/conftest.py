"""Fixtures of the data tests: the real EmoBox manifests, small synthetic corpora, fixture datasets."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pldistill.data.synth import synthesize_corpus

#: ``shared/`` beside the checkout (``../shared`` from the repository root).
SHARED = Path(__file__).parents[3] / ".." / "shared"
EMOBOX = SHARED / "emobox"


@pytest.fixture(scope="session")
def emobox_dir() -> Path:
    if not (EMOBOX / "iemocap" / "label_map.json").is_file():
        pytest.skip(f"real EmoBox manifests not found at {EMOBOX.resolve()} (the shared folder beside the checkout)")
    return EMOBOX


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 speakers x 4 emotions x 2 clips, 2 folds: for loaders, features and the CLI."""
    return synthesize_corpus(tmp_path_factory.mktemp("small"), speakers=4, teacher_speakers=0, per_class=2, folds=2, seed=3)


def _record(key: str, emo: str = "neu", *, dataset: str = "toy", wav: str | None = None, **extra: Any) -> dict[str, Any]:
    """One EmoBox manifest record."""
    rec: dict[str, Any] = {"key": key, "dataset": dataset, "wav": wav or f"audio/{key}.wav", "type": "raw",
                           "sample_rate": 16000, "num_frame": 16000.0, "task": "category", "length": 1.0,
                           "emo": emo, "channel": 1}
    rec.update(extra)
    return rec


WriteDataset = Callable[..., Path]


@pytest.fixture
def record() -> Callable[..., dict[str, Any]]:
    """``record(key, emo="neu", dataset="toy", wav=None, **extra)``: one EmoBox manifest record."""
    return _record


@pytest.fixture
def write_dataset(tmp_path: Path) -> WriteDataset:
    """Write ``<tmp>/manifests/<name>/`` with a label map and folds ``{k: (train, test)}``;
    records may be dicts or raw lines (str). Returns the manifests folder."""

    def write(name: str, label_map: dict[str, str] | None,
              folds: dict[int, tuple[Sequence[dict[str, Any] | str], Sequence[dict[str, Any] | str]]]) -> Path:
        root = tmp_path / "manifests"
        ds = root / name
        ds.mkdir(parents=True, exist_ok=True)
        if label_map is not None:
            (ds / "label_map.json").write_text(json.dumps(label_map))
        for k, (train, test) in folds.items():
            (ds / f"fold_{k}").mkdir(exist_ok=True)
            for split, rows in (("train", train), ("test", test)):
                lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
                (ds / f"fold_{k}" / f"{name}_{split}_fold_{k}.jsonl").write_text(
                    "".join(line + "\n" for line in lines))
        return root

    return write
