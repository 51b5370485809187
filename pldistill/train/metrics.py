"""SER metrics as the benchmark defines them: WA = accuracy, UA = balanced accuracy, macro-F1.

Definitions match scikit-learn's ``accuracy_score``, ``balanced_accuracy_score`` and
``f1_score(average="macro")`` (a unit test checks this): UA averages recall over the classes
present in the true labels; macro-F1 averages F1 over the classes present in either the true or
the predicted labels, with F1 = 0 for a class never predicted or never present.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["classification_metrics", "closed_set_metrics"]


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """``{"ua", "wa", "f1"}`` for integer class labels."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.size == 0:
        raise ValueError("y_true and y_pred must be non-empty and of equal length")
    wa = float(np.mean(t == p))
    present = np.unique(t)
    recalls = [np.mean(p[t == c] == c) for c in present]
    ua = float(np.mean(recalls))
    f1s = []
    for c in np.union1d(present, np.unique(p)):
        tp = np.sum((p == c) & (t == c))
        denom = np.sum(p == c) + np.sum(t == c)
        f1s.append(0.0 if denom == 0 else 2.0 * tp / denom)
    return {"ua": ua, "wa": wa, "f1": float(np.mean(f1s))}


def closed_set_metrics(y_true: Sequence[int], scores: np.ndarray,
                       lexical: Sequence[str | None] | None = None) -> dict[str, float]:
    """``{"ua", "wa", "f1", "loss"}`` from closed-set scores ``(N, C)``: each label's summed response
    log-likelihood. The prediction is the arg-max; ``loss`` is the CE of the gold answer as eq. 7
    defines it (summed over the answer's tokens, mean over clips): a real validation loss, computed
    from the scores evaluation has anyway. With each clip's ``lexical`` condition, ``conflict_ua`` is
    the UA over the clips marked ``conflict`` (absent when none is)."""
    scores = np.asarray(scores, dtype=np.float64)
    t = np.asarray(y_true, dtype=np.int64)
    if scores.ndim != 2 or scores.shape[0] != t.size:
        raise ValueError(f"scores must be (N, C) with N = {t.size} labels, got {scores.shape}")
    pred = scores.argmax(-1)
    metrics = {**classification_metrics(t, pred), "loss": float(-scores[np.arange(t.size), t].mean())}
    conflict = np.array([c == "conflict" for c in lexical]) if lexical is not None else np.zeros(0, bool)
    if conflict.any():
        metrics["conflict_ua"] = classification_metrics(t[conflict], pred[conflict])["ua"]
    return metrics
