"""The corpus the tests train on: the embedded spoken corpus at the size of the old tone corpus (8
speakers x 4 emotions x 6 clips, 4 folds, 192 clips), so a test trial costs seconds, not minutes.
The default (``SynthConfig``) is sized for comparisons that need a CI of a few points."""

SMALL_CORPUS = {"speakers": 8, "teacher_speakers": 0, "per_class": 6, "folds": 4}
