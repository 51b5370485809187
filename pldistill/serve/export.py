"""Export a sweep's student as one standalone folder: weights, processor, labels file and model card.

The folder is built aside and renamed into place (``atomic_dir``): a failure midway leaves no
half-written folder. A folder that already holds files is replaced only with ``force``.

Students of several families: a trial's config says which family its student is
(``TrialConfig.student_family``); :data:`EXPORTERS` maps the family to the function that writes it:
the audio-LLM student (:mod:`.audio_lm`, a Hugging Face folder) or EmoDistill's classifier
(:mod:`.classifier`: ``model.safetensors`` + ``classifier.json`` + the labels file with
``family: "classifier"``), each with its loader in :mod:`pldistill.serve.predict`'s ``LOADERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pldistill.errors import InputError
from pldistill.serve.source import TrialStudent, find_trial

__all__ = ["EXPORTERS", "student_family", "export_student"]


def _export_audio_lm(src: TrialStudent, out: Path, *, adapter: bool) -> dict[str, Any]:
    from pldistill.serve.audio_lm import export_audio_lm

    return export_audio_lm(src, out, adapter=adapter)


def _export_classifier(src: TrialStudent, out: Path, *, adapter: bool) -> dict[str, Any]:
    from pldistill.serve.classifier import export_classifier

    return export_classifier(src, out, adapter=adapter)


#: family -> ``(trial student, empty temp folder, adapter=) -> labels-file dict``.
EXPORTERS: dict[str, Callable[..., dict[str, Any]]] = {"audio_lm": _export_audio_lm, "classifier": _export_classifier}


def student_family(src: TrialStudent) -> str:
    """The family of a trial's student, as exported folders name it: ``audio_lm`` (the config's
    ``audiolm``; the name folders exported before the classifier family carry) or ``classifier``."""
    return "classifier" if src.config.student_family == "classifier" else "audio_lm"


def _check_target(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, None, "exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise InputError(out_dir, None, "folder is not empty (pass --force to replace it)")


def export_student(results: Path, sweep: str, out_dir: Path, *, trial: str | None = None, fold: int | None = None,
                   seed: int | None = None, adapter: bool = False, force: bool = False) -> tuple[TrialStudent, Path]:
    """Write the student of ``trial`` (None: the sweep's best) and its run (``seed``, ``fold``; None:
    the run best by the sweep's metric) into ``out_dir``.

    Returns the trial found and the folder. InputError for an unknown sweep, trial or fold, a missing
    saved student, or a non-empty ``out_dir`` without ``force``.
    """
    from pldistill._fs import atomic_dir
    from pldistill.serve.card import model_card

    out_dir = Path(out_dir)
    _check_target(out_dir, force)
    src = find_trial(Path(results), sweep, trial=trial, fold=fold, seed=seed)
    family = student_family(src)
    if family not in EXPORTERS:
        raise InputError(src.best_dir, "student family", f"cannot export a {family!r} student yet; "
                                                         f"known: {', '.join(EXPORTERS)}")
    with atomic_dir(out_dir) as tmp:
        meta = EXPORTERS[family](src, tmp, adapter=adapter)
        (tmp / "README.md").write_text(model_card(src, meta, adapter=adapter, folder=out_dir.name))
    return src, out_dir
