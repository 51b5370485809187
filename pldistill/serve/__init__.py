"""Using a sweep's product: export a trial's student as a standalone folder, classify audio with it.

Sits beside the sweep layer: it reads results (:mod:`.source`) and builds models through the train
layer, and nothing below imports it. ``export`` writes a folder that transformers loads alone
(:mod:`.audio_lm`, with a model card from :mod:`.card`); ``predict`` scores audio files or an EmoBox
manifest with such a folder. Torch and transformers are imported by the functions that need them.
"""

from pldistill.serve.export import EXPORTERS, export_student, student_family
from pldistill.serve.predict import (
    LOADERS,
    ClipPrediction,
    PredictionRun,
    load_exported,
    predict_files,
    predict_manifest,
)
from pldistill.serve.source import TrialStudent, find_trial, run_intervals

__all__ = [
    "EXPORTERS",
    "LOADERS",
    "TrialStudent",
    "ClipPrediction",
    "PredictionRun",
    "find_trial",
    "run_intervals",
    "student_family",
    "export_student",
    "load_exported",
    "predict_files",
    "predict_manifest",
]
