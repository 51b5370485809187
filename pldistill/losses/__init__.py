"""Loss functions of PL-Distill and its baselines: pure tensor functions, plus named objectives.

- :mod:`.cka`: linear CKA and attention-weighted CKA (paper eq. 1-4)
- :mod:`.weights`: audio-token weights from the teacher's attention (eq. 1)
- :mod:`.kl`: temperature-scaled KL / reverse KL / JSD over masked positions (eq. 5-6)
- :mod:`.relation`: LLaVA-KD relation distillation (baseline)
- :mod:`.objectives`: weighted sums of named terms (eq. 8 and the baselines)
"""

from .cka import CKA_ESTIMATORS, awcka, linear_cka
from .kl import KL_DIRECTIONS, kl_divergence, kl_divergence_from_hidden
from .objectives import (
    OBJECTIVES,
    TERM_INPUTS,
    TERMS,
    DistillBatch,
    ObjectiveOutput,
    TermOptions,
    WeightedSumObjective,
    build_objective,
)
from .relation import relation_distance
from .weights import WEIGHTING_VARIANTS, audio_token_weights

__all__ = [
    "CKA_ESTIMATORS",
    "KL_DIRECTIONS",
    "OBJECTIVES",
    "TERMS",
    "TERM_INPUTS",
    "WEIGHTING_VARIANTS",
    "DistillBatch",
    "ObjectiveOutput",
    "TermOptions",
    "WeightedSumObjective",
    "audio_token_weights",
    "awcka",
    "build_objective",
    "kl_divergence",
    "kl_divergence_from_hidden",
    "linear_cka",
    "relation_distance",
]
