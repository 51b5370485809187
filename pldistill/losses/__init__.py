"""Loss functions of PL-Distill and its baselines: pure tensor functions, plus named objectives.

- :mod:`.cka`: linear CKA and attention-weighted CKA (paper eq. 1-4)
- :mod:`.weights`: audio-token weights from the teacher's attention (eq. 1)
- :mod:`.kl`: temperature-scaled KL / reverse KL / JSD over masked positions (eq. 5-6)
- :mod:`.relation`: LLaVA-KD relation distillation (baseline)
- :mod:`.contrastive`: CAAD's contrastive teacher, ``(1 + a) z_audio - a z_text``
- :mod:`.objectives`: weighted sums of named terms (eq. 8 and the baselines)
- :mod:`.emodistill`: EmoDistill's class-logit KL and cosine terms and its objective (classifier student)
- :mod:`.fused`, :mod:`.fused_objective`: the student's ``lm_head`` fused with CE and the KL terms,
  chunk by chunk, so its logits never exist whole (the objective's path for a batch of hidden states)
"""

from . import distill_terms, emodistill  # noqa: F401  (they register their terms and objectives, in this order)
from .cka import CKA_ESTIMATORS, awcka, linear_cka
from .contrastive import contrastive_hidden, contrastive_logits
from .kl import KL_DIRECTIONS, kl_divergence, kl_divergence_from_hidden
from .objectives import (
    BATCH_TYPES,
    OBJECTIVES,
    TERMS,
    ClassifierBatch,
    DistillBatch,
    Objective,
    ObjectiveOutput,
    Term,
    TermOptions,
    WeightedSumObjective,
    build_objective,
    register_objective,
    register_term,
)
from .relation import relation_distance
from .weights import (
    WEIGHTING_VARIANTS,
    WEIGHTINGS,
    attention_layers_for,
    audio_token_weights,
    audio_weights_from_rows,
)

__all__ = [
    "BATCH_TYPES",
    "ClassifierBatch",
    "CKA_ESTIMATORS",
    "KL_DIRECTIONS",
    "OBJECTIVES",
    "TERMS",
    "WEIGHTINGS",
    "WEIGHTING_VARIANTS",
    "attention_layers_for",
    "audio_weights_from_rows",
    "DistillBatch",
    "Objective",
    "Term",
    "register_objective",
    "register_term",
    "ObjectiveOutput",
    "TermOptions",
    "WeightedSumObjective",
    "audio_token_weights",
    "awcka",
    "build_objective",
    "contrastive_hidden",
    "contrastive_logits",
    "kl_divergence",
    "kl_divergence_from_hidden",
    "linear_cka",
    "relation_distance",
]
