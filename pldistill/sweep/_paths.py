"""``validate --check-paths``'s audio check: every clip the sweep's EmoBox manifests name exists.

The pre-flight check ``cluster.yaml`` asks for before renting GPUs: a missing WAV would otherwise
fail the first trial seconds into ``launch``. Stat only (no audio is read), so thousands of clips
take well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pldistill.errors import InputError

__all__ = ["audio_problems"]

#: Missing files named in the message; the rest are counted.
_NAMED = 3


def audio_problems(data: Any) -> list[tuple[tuple[str, ...], str]]:
    """Problems (key path, message) for ``data`` (an EmoBox ``base.data``): clips whose audio file is
    missing under its audio root, with a count and the first few named; or the first problem of a
    label map or manifest that ``launch`` would refuse (its file and line). Missing files are the
    manifests check's."""
    from pldistill.data.emobox import fold_paths, load_label_map, load_manifest

    root = data.audio_root or data.manifests
    if not (data.manifests / data.dataset / "label_map.json").is_file():
        return []  # the manifests check names what is missing
    try:
        label_map = load_label_map(data.manifests, data.dataset)
    except InputError as exc:
        return [(("base", "data", "manifests"), str(exc))]
    seen: set[Path] = set()
    missing: list[Path] = []
    for fold in data.folds:
        for manifest in fold_paths(data.manifests, data.dataset, fold):
            if not manifest.is_file():
                continue
            try:
                clips = load_manifest(manifest, label_map, root, dataset=data.dataset)
            except InputError as exc:
                return [(("base", "data", "manifests"), str(exc))]
            for clip in clips:
                if clip.wav not in seen:
                    seen.add(clip.wav)
                    if not clip.wav.is_file():
                        missing.append(clip.wav)
    if not missing:
        return []
    named = ", ".join(str(p) for p in missing[:_NAMED]) + (", ..." if len(missing) > _NAMED else "")
    return [(("base", "data", "audio_root"), f"{len(missing)} of {len(seen)} audio files the manifests name "
                                             f"are missing under {root}: {named}")]
