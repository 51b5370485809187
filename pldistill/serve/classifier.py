"""EmoDistill's classifier student as a standalone folder, and scoring audio with it.

The trial saves its best student standalone already (``model.safetensors``, every tensor, encoder
included, and ``classifier.json`` with its sizes, encoder config and labels; see
``pldistill.models.classifier``). Export loads it (which checks it is whole), writes it again into the
folder with the labels file ``pldistill_labels.json`` (``family: "classifier"``, the encoder's input,
the window) and the model card. Loading needs pldistill's ``load_classifier_student`` (a plain
PyTorch module, no Hugging Face class); the weights are safetensors and nothing is unpickled. The
learned maps of the heads to the teachers' widths were training aids: they are not in the folder.

Audio is read as training read it: 16 kHz mono, cropped to the trial's window; the whisper encoder
takes its log-mels (the same ``log_mel`` as training), HuBERT the waveform.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pldistill.errors import InputError
from pldistill.serve.source import TrialStudent

__all__ = ["FAMILY", "export_classifier", "ExportedClassifier"]

FAMILY = "classifier"
_META_FILE = "pldistill_labels.json"  # the name every exported folder uses (pldistill.serve.audio_lm.META_FILE)
_SAMPLE_RATE = 16000


def export_classifier(src: TrialStudent, out: Path, *, adapter: bool = False) -> dict[str, Any]:
    """Write the trial's saved classifier student into the (empty, temporary) folder ``out``; returns
    what went into the labels file. ``adapter`` has no meaning here (no LoRA): refused."""
    from pldistill.models.classifier import load_classifier_student, save_classifier_student

    if adapter:
        raise InputError(src.best_dir, "--adapter", "the classifier student has no LoRA adapter to keep apart")
    student = load_classifier_student(src.best_dir)
    saved = json.loads((src.best_dir / "classifier.json").read_text())
    labels = saved.get("labels") or []
    window = float(json.loads((src.best_dir / "pldistill_config.json").read_text())["window_s"])
    for module in student.modules():  # the encoder's config names the local folder it was read from
        config = getattr(module, "config", None)
        if hasattr(config, "name_or_path"):
            config.name_or_path = ""
    save_classifier_student(student, out, labels=labels)
    meta = {
        "format": 1, "family": FAMILY, "labels": labels, "window_s": window, "sample_rate": _SAMPLE_RATE,
        "encoder": student.encoder.kind, "input": "log_mel" if student.encoder.kind == "whisper" else "waveform",
        "long_audio": f"cropped to the first {window:g} s (as training cropped it)",
        "source": {"sweep": src.sweep, "trial": src.trial_id, "seed": src.seed, "fold": src.fold, "epoch": src.epoch},
    }
    (out / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


class ExportedClassifier:
    """An exported classifier student: ``score(audios)`` gives each label's log-probability."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        from pldistill.models.classifier import load_classifier_student

        self.model = load_classifier_student(folder)
        self.labels: tuple[str, ...] = tuple(meta["labels"])
        self.window_s = float(meta["window_s"])
        if len(self.labels) != self.model.num_labels:
            raise ValueError(f"{len(self.labels)} labels for a classifier of {self.model.num_labels} classes")

    def inputs(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input for 16 kHz mono clips, as training built it (see the module docstring)."""
        if self.model.encoder.kind == "whisper":
            from pldistill.data.features import log_mel

            mels, valid = zip(*(log_mel(a, self.window_s) for a in audios))
            x = torch.from_numpy(np.stack(mels).astype(np.float32))
            return x, torch.arange(x.shape[-1])[None] < torch.tensor(valid)[:, None]
        limit = int(round(self.window_s * _SAMPLE_RATE))
        waves = [np.asarray(a, dtype=np.float32)[:limit] for a in audios]
        longest = max(len(w) for w in waves)
        x = torch.zeros(len(waves), longest)
        for i, w in enumerate(waves):
            x[i, :len(w)] = torch.from_numpy(w)
        return x, torch.arange(longest)[None] < torch.tensor([len(w) for w in waves])[:, None]

    @torch.no_grad()
    def score(self, audios: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """``(N, C)`` log-probabilities of the labels for each clip; the prediction is the arg-max."""
        out = []
        for s in range(0, len(audios), batch_size):
            x, mask = self.inputs(audios[s:s + batch_size])
            out.append(torch.log_softmax(self.model(x, mask).logits.float(), -1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)
