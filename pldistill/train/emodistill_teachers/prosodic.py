"""EmoDistill's prosodic teacher: a small network on a clip's eGeMAPSv02 functionals.

The paper trains a ResNet on eGeMAPS. The 88 functionals are one vector per clip with no time or
frequency axis for a convolution to slide along, so ``arch="resnet"`` here is the residual form of
that idea on a vector (pre-norm residual MLP blocks) and ``arch="mlp"`` the plain stack. The
features are standardised with the mean and standard deviation of the fold's *training* clips
only (no val/test statistics leak into the teacher).

The embedding the student's prosodic head is matched to is the input of the teacher's classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from pldistill.config import config_hash
from pldistill.errors import InputError
from pldistill.train.emodistill_teachers._common import (
    FitOptions,
    FoldClips,
    TeacherOutputs,
    array_digest,
    cached_teacher,
    check_rows,
    fit_teacher,
    outputs_for,
)

__all__ = ["ProsodicSettings", "ProsodicNet", "fit_standardizer", "train_prosodic_teacher",
           "ensure_prosodic_teacher", "prosodic_key"]


@dataclass(frozen=True)
class ProsodicSettings:
    """Architecture and training of the prosodic teacher (all of it goes into the cache key)."""

    arch: Literal["mlp", "resnet"] = "mlp"
    hidden: int = 256
    emb_dim: int = 128  #: width of the embedding the student's prosodic head is matched to
    blocks: int = 2  #: hidden layers (mlp) or residual blocks (resnet)
    dropout: float = 0.2
    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.arch not in ("mlp", "resnet"):
            raise ValueError(f"arch must be 'mlp' or 'resnet', got {self.arch!r}")
        if min(self.hidden, self.emb_dim, self.epochs, self.batch_size) < 1 or self.blocks < 0:
            raise ValueError(f"sizes must be positive: {self}")
        if not (0.0 <= self.dropout < 1.0 and self.lr > 0 and self.weight_decay >= 0):
            raise ValueError(f"bad dropout, lr or weight_decay: {self}")


class _Residual(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(width, width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ProsodicNet(nn.Module):
    """``(B, D)`` standardised functionals -> ``(logits (B, C), embedding (B, emb_dim))``."""

    def __init__(self, in_dim: int, num_classes: int, s: ProsodicSettings) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, s.hidden), nn.GELU(), nn.Dropout(s.dropout)]
        for _ in range(s.blocks):
            layers += ([_Residual(s.hidden, s.dropout)] if s.arch == "resnet"
                       else [nn.Linear(s.hidden, s.hidden), nn.GELU(), nn.Dropout(s.dropout)])
        self.body = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(s.hidden, s.emb_dim), nn.GELU())
        self.dropout = nn.Dropout(s.dropout)
        self.classifier = nn.Linear(s.emb_dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        emb = self.embed(self.body(x))
        return self.classifier(self.dropout(emb)), emb


def fit_standardizer(features: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of the ``train`` rows (float64); a constant feature
    gets std 1 so that it standardises to 0 instead of dividing by zero."""
    rows = np.asarray(features, dtype=np.float64)[train]
    mean, std = rows.mean(0), rows.std(0)
    return mean, np.where(std > 1e-8, std, 1.0)


def _check_features(features: np.ndarray, clips: FoldClips) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D) eGeMAPS functionals, got shape {x.shape}")
    check_rows("features", x, clips)
    bad = int((~np.isfinite(x)).any(axis=1).sum())
    if bad:
        raise InputError(None, "egemaps", f"{bad} clips of {clips.dataset!r} fold {clips.fold} have non-finite "
                                          "eGeMAPS features (rebuild the feature cache)")
    return x


def train_prosodic_teacher(features: np.ndarray, clips: FoldClips, *, seed: int = 0,
                           settings: ProsodicSettings = ProsodicSettings(),
                           log: Callable[[str], None] = print) -> TeacherOutputs:
    """Train the prosodic teacher on the fold's train clips (no cache); outputs for all clips."""
    x = _check_features(features, clips)
    mean, std = fit_standardizer(x, clips.train)
    inputs = torch.from_numpy(((x - mean) / std).astype(np.float32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ProsodicNet(x.shape[1], clips.num_classes, settings)

    def forward(idx: np.ndarray) -> tuple[Tensor, Tensor]:
        return model(inputs[torch.from_numpy(idx)])

    name = f"prosodic teacher {clips.dataset} fold {clips.fold}"
    fit_teacher(model, forward, clips, FitOptions(settings.epochs, settings.lr, settings.batch_size,
                                                  settings.weight_decay, seed, name), log)
    out = outputs_for(model, forward, clips, settings.batch_size,
                      meta={"kind": "prosodic", "settings": asdict(settings), "seed": seed})
    log(f"{name}: val UA {out.metrics['val_ua']:.3f}, test UA {out.metrics['test_ua']:.3f}")
    return out


def prosodic_key(features: np.ndarray, clips: FoldClips, seed: int, settings: ProsodicSettings) -> str:
    return config_hash({"kind": "prosodic", "features": array_digest(np.asarray(features, dtype=np.float32)),
                        "clips": clips.digest(), "seed": seed, "settings": asdict(settings), "v": 1})


def ensure_prosodic_teacher(features: np.ndarray, clips: FoldClips, cache_dir: str | Path, *, seed: int = 0,
                            settings: ProsodicSettings = ProsodicSettings(),
                            log: Callable[[str], None] = print) -> TeacherOutputs:
    """The fold's prosodic teacher outputs: from ``cache_dir/emodistill/prosodic/<key>`` when there,
    else trained once (:func:`train_prosodic_teacher`) and cached. ``features``: ``(N, 88)`` float32
    eGeMAPSv02 functionals, one row per clip of ``clips``. The key hashes the features, labels,
    splits, seed and settings, so any change trains a new teacher."""
    key = prosodic_key(features, clips, seed, settings)
    return cached_teacher(cache_dir, "prosodic", key,
                          lambda: train_prosodic_teacher(features, clips, seed=seed, settings=settings, log=log))
