"""Every artifact a sweep can need, declared once: a record and its build function each.

A record says what the artifact is, which config fields and upstream artifacts its key is computed
from, where its entry lives under ``cache_dir``, how completeness is checked, which trials read it
and whether it holds an accelerator while it is built. Its build function makes the entry when it
is missing and returns its path either way (every builder goes through :func:`pldistill._fs.build_once`
or the data layer's content-keyed files, so a second call only reads). Adding an artifact is one
record here and one function.

The key itself is computed by the layer that owns the artifact (``teacher_key``,
``teacher_cache_key``, ...), from exactly the fields listed in ``inputs``: planning
(:mod:`pldistill.prepare.run`) groups trial configs by those fields, so each entry is built once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pldistill.config import TrialConfig
from pldistill.train.dataset import FoldData, manifests_dir, prepare_fold

__all__ = ["Artifact", "ARTIFACTS", "FoldWork", "check_inputs", "needed", "key_inputs"]

Log = Callable[[str], None]


@dataclass
class FoldWork:
    """What a build reads: the config, the fold (None for an artifact shared by every fold) and the
    fold's data, loaded on first use (its features are an artifact themselves)."""

    cfg: TrialConfig
    fold: int | None
    log: Log
    #: How the teacher cache is built with Ray Data (``pldistill.prepare.cache_build.CacheBuildOptions``).
    cache_opts: Any = None
    _data: FoldData | None = field(default=None, repr=False)

    @property
    def data(self) -> FoldData:
        if self._data is None:
            assert self.fold is not None, "a shared artifact has no fold data"
            self._data = prepare_fold(self.cfg, self.fold)
        return self._data


@dataclass(frozen=True)
class Artifact:
    name: str
    what: str
    #: The config fields (dotted; ``data`` less its fold list) and upstream artifacts its key covers.
    inputs: tuple[str, ...]
    upstream: tuple[str, ...]
    location: str  # under cache_dir
    complete: str  # how a reader tells a complete entry
    per_fold: bool
    #: Holds a GPU while built when the sweep's workers use GPUs (the teacher runs).
    accelerator: bool
    reads: Callable[[TrialConfig], bool]  # whether a trial of this config reads it
    build: Callable[[FoldWork], Path]  # builds the entry when missing; its path either way


def _audiolm(cfg: TrialConfig) -> bool:
    return cfg.student_family == "audiolm"


def _classifier(cfg: TrialConfig) -> bool:
    return cfg.student_family == "classifier"


# ------------------------------------------------------------------------------------------ builds


def _corpus(w: FoldWork) -> Path:
    return manifests_dir(w.cfg)[0]  # speaks the synthetic corpus when missing


def _features(w: FoldWork) -> Path:
    return w.cfg.cache_dir / "features" / f"features-{w.data.features_key}.npz"


def _teacher(w: FoldWork) -> Path:
    from pldistill.train.teacher import ensure_teacher, teacher_dir

    ensure_teacher(w.cfg, w.data, log=w.log, encoder_only=True)  # fine-tuned (or scored) once
    return teacher_dir(w.cfg, w.data)


def _egemaps(w: FoldWork) -> Path:
    from pldistill.train.dataset import fold_clips_egemaps

    return w.cfg.cache_dir / "features" / f"egemaps-{fold_clips_egemaps(w.cfg, w.data)[1].content_key}.npz"


def _emodistill(kind: str) -> Callable[[FoldWork], Path]:
    def build(w: FoldWork) -> Path:
        from pldistill.train.classifier_trial import fold_teachers

        _, prosodic, linguistic, _ = fold_teachers(w.cfg, w.data, log=w.log)  # both, each once
        out = prosodic if kind == "prosodic" else linguistic
        assert out.path is not None
        return out.path

    return build


def _student_prior(w: FoldWork) -> Path:
    from pldistill.models.loading import load_teacher_tokenizer
    from pldistill.train.student_prior import ensure_student_llm

    return Path(ensure_student_llm(w.cfg, load_teacher_tokenizer(w.cfg.model.teacher), log=w.log))


def _teacher_cache(w: FoldWork) -> Path:
    """With Ray Data when the step is given its options (workers on GPUs); else its rows computed in
    this process (a fold's task on CPUs, a single trial's preparation)."""
    if w.cache_opts is not None:
        from pldistill.prepare.cache_build import build_fold_cache

        return build_fold_cache(w.cfg, w.data, log=w.log, opts=w.cache_opts)
    from pldistill.train.teacher import ensure_teacher
    from pldistill.train.teacher_cache import ensure_teacher_cache, teacher_cache_complete, teacher_cache_dir

    if teacher_cache_complete(w.cfg, w.data):
        return teacher_cache_dir(w.cfg, w.data)
    teacher, _ = ensure_teacher(w.cfg, w.data, log=w.log)
    return ensure_teacher_cache(w.cfg, w.data, teacher, log=w.log, batch_size=w.cfg.train.eval_batch_size)


_DATA = "data (all but data.folds)"
_TEACHER = (_DATA, "model.teacher", "model.init_seed", "model.teacher_finetune", "model.teacher_eval")

ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (
    Artifact("corpus", "the synthetic corpus: spoken clips and EmoBox manifests", ("data.synth",), (),
             "synthetic-<key>/", "its synthetic/ folder (renamed in whole)", per_fold=False, accelerator=False,
             reads=lambda c: c.data.source == "synthetic" and c.data.manifests is None, build=_corpus),
    Artifact("features", "a fold's log-mel features (every split, one window)", (_DATA,), ("corpus",),
             "features/features-<key>.npz", "the file (written whole)", per_fold=True, accelerator=False,
             reads=lambda c: True, build=_features),
    Artifact("teacher", "a fold's teacher: fine-tuned (tiny) or scored as is, and its answers on unlabelled clips",
             (*_TEACHER, "model.dtype"), ("features",), "teachers/<key>/", "metrics.json",
             per_fold=True, accelerator=True,
             reads=lambda c: _audiolm(c) or c.model.classifier.encoder == "whisper", build=_teacher),
    Artifact("egemaps", "a fold's eGeMAPSv02 functionals (EmoDistill's prosody, CAAD's metadata targets)",
             (_DATA,), ("corpus",), "features/egemaps-<key>.npz", "the file (written whole)", per_fold=True,
             accelerator=False, reads=lambda c: _classifier(c) or c.hparams.pseudo_target == "metadata",
             build=_egemaps),
    Artifact("prosodic_teacher", "EmoDistill's prosodic teacher of a fold (MLP on eGeMAPS), its outputs",
             (_DATA, "model.init_seed", "model.emodistill_teachers"), ("egemaps",), "emodistill/prosodic/<key>/",
             "metrics.json", per_fold=True, accelerator=False, reads=_classifier, build=_emodistill("prosodic")),
    Artifact("linguistic_teacher", "EmoDistill's linguistic teacher of a fold (BERT on transcripts), its outputs",
             (_DATA, "model.init_seed", "model.emodistill_teachers"), ("features",),
             "emodistill/linguistic/<key>/", "metrics.json", per_fold=True, accelerator=False, reads=_classifier,
             build=_emodistill("linguistic")),
    Artifact("student_prior", "the tiny student LLM's instruction prior (text only)",
             ("model.student_llm", "model.init_seed", "model.teacher"), (), "students/<key>/", "config.json",
             per_fold=False, accelerator=False, reads=lambda c: _audiolm(c) and c.model.student_llm == "tiny",
             build=_student_prior),
    Artifact("teacher_cache", "a fold's teacher outputs for every clip (built with Ray Data)",
             (*_TEACHER, "model.dtype", "model.teacher_cache_dtype", "hparams.pseudo_target"),
             ("teacher", "egemaps"), "teacher_outputs/<key>/", "meta.json", per_fold=True, accelerator=True,
             reads=lambda c: _audiolm(c) and c.model.teacher_mode == "cached", build=_teacher_cache),
)}


def check_inputs(work: Iterable[tuple[TrialConfig, int | None]]) -> None:
    """Read what a user can get wrong, in this process, before any task or long build starts, in the
    order a trial meets it: a student checkpoint's tokens against the teacher's (before anything is
    written), each fold's manifests and audio (through its split, as every build reads it; this
    writes the fold's features), then the teacher checkpoint's config, weight files' headers and
    tokenizer. Inside a Ray task these would fail minutes later, after other work."""
    from pldistill.models.loading import (
        check_student_tokenizer,
        check_teacher_checkpoint,
        load_teacher_tokenizer,
    )

    work = list(work)
    checked: set[str] = set()
    for cfg, _ in work:
        if _audiolm(cfg) and cfg.model.student_llm != "tiny" and (
                pair := json.dumps([cfg.model.teacher, cfg.model.student_llm])) not in checked:
            checked.add(pair)
            check_student_tokenizer(cfg.model.student_llm, load_teacher_tokenizer(cfg.model.teacher))
    for cfg, fold in work:
        if fold is not None and (key := key_inputs(ARTIFACTS["features"], cfg) + f"/{fold}") not in checked:
            checked.add(key)
            prepare_fold(cfg, fold)  # memoised: the builds in this process read it again for free
    for cfg, _ in work:
        if ARTIFACTS["teacher"].reads(cfg) and cfg.model.teacher not in checked:
            checked.add(cfg.model.teacher)
            check_teacher_checkpoint(cfg.model.teacher)


def needed(cfg: TrialConfig) -> list[Artifact]:
    """The artifacts a trial of ``cfg`` reads, upstream first (the order of :data:`ARTIFACTS`)."""
    return [a for a in ARTIFACTS.values() if a.reads(cfg)]


def key_inputs(artifact: Artifact, cfg: TrialConfig) -> str:
    """The values of the fields ``artifact``'s key covers, for ``cfg``, as one string: two configs
    with equal strings share the entry (planning builds it once)."""
    dumped = cfg.model_dump(mode="json")
    values: dict[str, Any] = {"cache_dir": str(Path(cfg.cache_dir).resolve())}
    for name in artifact.inputs:
        if name == _DATA:
            values[name] = {k: v for k, v in dumped["data"].items() if k != "folds"}
            continue
        value: Any = dumped
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values[name] = value
    return json.dumps(values, sort_keys=True, default=str)
