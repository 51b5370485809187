"""Corpora: EmoBox manifests and folds, transcripts, audio loading, the synthetic corpus (eSpeak NG
speech), log-mel and eGeMAPS features.

Importing this package pulls in numpy only; soundfile, scipy, transformers, opensmile and the
eSpeak NG library are loaded by the functions that need them.
"""

from pldistill.data.audio import TARGET_SAMPLE_RATE, load_audio
from pldistill.data.egemaps import EGEMAPS_DIM, Egemaps, compute_egemaps, egemaps_names
from pldistill.data.emobox import (
    DATASETS,
    REQUIRED_FIELDS,
    Clip,
    DatasetSpec,
    FoldSplit,
    fold_paths,
    load_fold,
    load_label_map,
    load_manifest,
    load_transcripts,
    resolve_dataset,
    speaker_of,
)
from pldistill.data.features import (
    FRAMES_PER_SECOND,
    N_MELS,
    FeatureCache,
    Features,
    audio_token_count,
    choose_window,
    compute_features,
    log_mel,
)
from pldistill.data.sentences import EMOTION_SENTENCES, LEXICAL_CONDITIONS, NEUTRAL_SENTENCES, lexical_emotion
from pldistill.data.split import split_labelled, split_validation
from pldistill.data.synth import SYNTH_LABELS, ensure_synthetic, synthesize_corpus

__all__ = [
    "Clip",
    "DatasetSpec",
    "DATASETS",
    "REQUIRED_FIELDS",
    "FoldSplit",
    "fold_paths",
    "load_label_map",
    "resolve_dataset",
    "load_manifest",
    "load_fold",
    "speaker_of",
    "load_transcripts",
    "LEXICAL_CONDITIONS",
    "EMOTION_SENTENCES",
    "NEUTRAL_SENTENCES",
    "lexical_emotion",
    "split_validation",
    "split_labelled",
    "load_audio",
    "TARGET_SAMPLE_RATE",
    "synthesize_corpus",
    "ensure_synthetic",
    "SYNTH_LABELS",
    "N_MELS",
    "FRAMES_PER_SECOND",
    "choose_window",
    "log_mel",
    "audio_token_count",
    "Features",
    "FeatureCache",
    "compute_features",
    "EGEMAPS_DIM",
    "Egemaps",
    "compute_egemaps",
    "egemaps_names",
]
