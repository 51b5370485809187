"""EmoDistill's two teachers, trained once per fold and cached (arXiv 2309.04849).

- :mod:`.prosodic`: an MLP / residual MLP on standardised eGeMAPSv02 functionals;
- :mod:`.linguistic`: a BERT classifier on the transcripts (tiny from a config, or a local checkpoint).

Both take plain per-clip inputs and a :class:`FoldClips`, and return :class:`TeacherOutputs`
(logits and embeddings for every clip of the fold, val/test scores), cached under
``cache_dir/emodistill/<kind>/<content hash>``.
"""

from ._common import FoldClips, TeacherOutputs
from .linguistic import (
    LinguisticSettings,
    build_word_tokenizer,
    ensure_linguistic_teacher,
    require_transcripts,
    train_linguistic_teacher,
)
from .prosodic import ProsodicSettings, ensure_prosodic_teacher, fit_standardizer, train_prosodic_teacher

__all__ = [
    "FoldClips",
    "LinguisticSettings",
    "ProsodicSettings",
    "TeacherOutputs",
    "build_word_tokenizer",
    "ensure_linguistic_teacher",
    "ensure_prosodic_teacher",
    "fit_standardizer",
    "require_transcripts",
    "train_linguistic_teacher",
    "train_prosodic_teacher",
]
