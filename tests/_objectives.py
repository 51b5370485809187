"""Tests build objectives the way a trial does: from :class:`Hyperparameters`, whose defaults are
the only ones (``build_objective`` has none of its own)."""

from __future__ import annotations

from collections.abc import Mapping

from pldistill.config import Hyperparameters
from pldistill.losses import WeightedSumObjective, build_objective


def objective(name: str, *, kl_chunk_size: int | None = None, term_weights: Mapping[str, float] | None = None,
              labelled_share: float = 1.0, **hparams: object) -> WeightedSumObjective:
    """The objective ``name`` with ``hparams`` over the defaults of :class:`Hyperparameters`. Values
    the config would refuse go straight to ``build_objective`` (to test its own checks)."""
    base = Hyperparameters(objective=name if name in _valid() else "sft").model_dump()
    return build_objective(name, {**base, **hparams}, kl_chunk_size=kl_chunk_size, term_weights=term_weights,
                           labelled_share=labelled_share)


def _valid() -> tuple[str, ...]:
    from pldistill.losses import OBJECTIVES

    return tuple(OBJECTIVES)


def audiolm_objectives() -> list[str]:
    """The objectives of the audio-LLM student (EmoDistill's classifier family reads another batch)."""
    from pldistill.losses import OBJECTIVES

    return [n for n, o in OBJECTIVES.items() if o.family == "audiolm"]
