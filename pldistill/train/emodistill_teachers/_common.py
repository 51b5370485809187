"""What both EmoDistill teachers share: the fold's clips, their outputs, one training loop, the cache.

Inputs are plain arrays (one row per clip of the fold), so this module does not depend on how the
data layer stores corpora. A teacher is a module whose forward over a batch of clip indices gives
``(logits, embedding)``; the embedding is what its classifier reads (the student's heads are
matched to it). Training keeps the epoch of best validation UA.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pldistill._fs import build_once
from pldistill.progress import StepProgress
from pldistill.train.metrics import classification_metrics

__all__ = ["FoldClips", "TeacherOutputs", "BatchForward", "FitOptions", "array_digest", "fit_teacher",
           "predict_teacher", "outputs_for", "cached_teacher", "score", "check_rows"]

#: ``forward(indices)`` of a teacher: class logits ``(b, C)`` and embeddings ``(b, E)`` of those clips.
BatchForward = Callable[[np.ndarray], tuple[Tensor, Tensor]]


def array_digest(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (a cache-key ingredient)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class FoldClips:
    """The ``N`` clips of one fold: their class ids and three disjoint index sets into them.

    ``labels``: ``(N,)`` ints in ``[0, num_classes)``; ``train`` / ``val`` / ``test``: indices into
    the ``N`` rows (every per-clip input and output of the teachers has one row per clip).
    """

    dataset: str
    fold: int
    labels: np.ndarray
    num_classes: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        for name in ("labels", "train", "val", "test"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64).reshape(-1))
        n = len(self.labels)
        if self.num_classes < 2 or n == 0 or self.labels.min() < 0 or self.labels.max() >= self.num_classes:
            raise ValueError(f"labels must be class ids in [0, {self.num_classes}) for at least one clip")
        parts = (self.train, self.val, self.test)
        if any(len(p) == 0 for p in parts):
            raise ValueError("train, val and test must each hold at least one clip")
        joined = np.concatenate(parts)
        if joined.min() < 0 or joined.max() >= n or len(np.unique(joined)) != len(joined):
            raise ValueError(f"train/val/test must be disjoint indices into the {n} clips")

    @property
    def size(self) -> int:
        return len(self.labels)

    def digest(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "fold": self.fold, "num_classes": self.num_classes,
                **{k: array_digest(getattr(self, k)) for k in ("labels", "train", "val", "test")}}


@dataclass
class TeacherOutputs:
    """A trained teacher's outputs for every clip of the fold, and its own scores.

    ``logits (N, C)`` and ``embeddings (N, E)`` float32, rows in :class:`FoldClips` order;
    ``metrics``: ``val_ua``, ``val_wa``, ``val_f1``, ``test_ua``, ``test_wa``, ``test_f1``.
    """

    logits: np.ndarray
    embeddings: np.ndarray
    metrics: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)
    #: The cache entry it was loaded from (None: trained, not yet saved).
    path: Path | None = None

    @property
    def embedding_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({"logits": torch.from_numpy(np.ascontiguousarray(self.logits, dtype=np.float32)),
                   "embeddings": torch.from_numpy(np.ascontiguousarray(self.embeddings, dtype=np.float32))},
                  str(folder / "outputs.safetensors"))
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        # written last: its presence marks a complete entry
        (folder / "metrics.json").write_text(json.dumps(self.metrics, indent=2))

    @classmethod
    def load(cls, folder: Path) -> TeacherOutputs:
        from safetensors.torch import load_file

        tensors = load_file(str(folder / "outputs.safetensors"))
        return cls(logits=tensors["logits"].numpy(), embeddings=tensors["embeddings"].numpy(),
                   metrics=json.loads((folder / "metrics.json").read_text()),
                   meta=json.loads((folder / "meta.json").read_text()), path=Path(folder))


def cached_teacher(cache_dir: str | Path, kind: str, key: str, train: Callable[[], TeacherOutputs]) -> TeacherOutputs:
    """``cache_dir/emodistill/<kind>/<key>``: loaded when complete, else ``train()``-ed once and
    written atomically; a lock makes concurrent trials wait for the first instead of training twice."""
    final = Path(cache_dir) / "emodistill" / kind / key
    build_once(final, "metrics.json", lambda tmp: train().save(tmp), what=f"EmoDistill {kind} teacher")
    return TeacherOutputs.load(final)


def predict_teacher(model: nn.Module, forward: BatchForward, indices: np.ndarray,
                    batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of ``indices`` in eval mode, as float32 arrays (the model's mode is kept)."""
    was_training = model.training
    model.eval()
    logits, embs = [], []
    with torch.no_grad():
        for s in range(0, len(indices), batch_size):
            lg, em = forward(indices[s:s + batch_size])
            logits.append(lg.float().cpu().numpy())
            embs.append(em.float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(logits), np.concatenate(embs)


def score(logits: np.ndarray, clips: FoldClips, split: str) -> dict[str, float]:
    """``{split}_ua`` / ``_wa`` / ``_f1`` of the rows of ``split`` in full-fold ``logits``."""
    idx = getattr(clips, split)
    m = classification_metrics(clips.labels[idx], logits[idx].argmax(-1))
    return {f"{split}_{k}": v for k, v in m.items()}


@dataclass(frozen=True)
class FitOptions:
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    seed: int
    name: str  #: for progress lines, e.g. "prosodic teacher IEMOCAP fold 1"


def fit_teacher(model: nn.Module, forward: BatchForward, clips: FoldClips, opts: FitOptions,
                log: Callable[[str], None] = print) -> dict[str, float]:
    """Train ``model`` with cross-entropy on the train clips (AdamW, linear warm-up 10 % then linear
    decay) and leave it holding the weights of the epoch with the best val UA (the earliest on ties).

    Deterministic for ``opts.seed``: shuffling from a NumPy generator, dropout and init-free torch
    randomness inside a forked, seeded RNG. Returns the chosen epoch's val metrics.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    per_epoch = -(-len(clips.train) // opts.batch_size)
    total = max(1, opts.epochs * per_epoch)
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm))))
    rng = np.random.default_rng(opts.seed)
    labels = torch.from_numpy(clips.labels)
    best: tuple[float, dict[str, Tensor] | None, dict[str, float]] = (-1.0, None, {})
    with torch.random.fork_rng(devices=[]), StepProgress(total, opts.name, unit="steps", log=log) as bar:
        torch.manual_seed(opts.seed)
        for _ in range(opts.epochs):
            model.train()
            order = clips.train[rng.permutation(len(clips.train))]
            for s in range(0, len(order), opts.batch_size):
                idx = order[s:s + opts.batch_size]
                logits, _ = forward(idx)
                loss = nn.functional.cross_entropy(logits.float(), labels[idx].to(logits.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                bar.advance()
            val_logits, _ = predict_teacher(model, forward, clips.val, opts.batch_size)
            full = np.zeros((clips.size, val_logits.shape[1]), dtype=np.float32)
            full[clips.val] = val_logits
            val = score(full, clips, "val")
            if val["val_ua"] > best[0]:
                best = (val["val_ua"], copy.deepcopy(model.state_dict()), val)
    assert best[1] is not None
    model.load_state_dict(best[1])
    model.eval()
    return best[2]


def outputs_for(model: nn.Module, forward: BatchForward, clips: FoldClips, batch_size: int,
                meta: dict[str, Any]) -> TeacherOutputs:
    """Every clip's logits and embeddings from the trained ``model``, with its val/test scores."""
    logits, embs = predict_teacher(model, forward, np.arange(clips.size), batch_size)
    metrics = {**score(logits, clips, "val"), **score(logits, clips, "test")}
    return TeacherOutputs(logits=logits, embeddings=embs, metrics=metrics, meta=meta)


def check_rows(name: str, rows: Sequence[Any] | np.ndarray, clips: FoldClips) -> None:
    if len(rows) != clips.size:
        raise ValueError(f"{name} has {len(rows)} rows for the fold's {clips.size} clips")
