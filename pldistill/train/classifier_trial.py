"""The classifier family's trial runs (EmoDistill, arXiv 2309.04849): the trial
(:mod:`pldistill.train.trial`) hands a run here when ``cfg.student_family`` is ``classifier``.

Reads top to bottom like the audio-LLM trial: :func:`_setup` builds a run (the fold's clips and
features, its two teachers, trained once per fold and cached, the student with the learned maps of
its heads to the teachers' widths, the objective, optimizer, schedule and random state; with a
checkpoint, the state after its epoch); :func:`classifier_fold_epochs` hands it, with this student's
steps, to the epoch loop both families share (:func:`pldistill.train.loop.run_epochs`), which trains
an epoch, evaluates (here the arg-max of the class logits; the scores are log-probabilities, so
``loss`` is the gold class's CE), keeps the best epoch and yields a resumable checkpoint.

The teachers run on the fold's training clips once and their logits and embeddings are read per
batch; they never run in a step. Several workers: the student is replicated (DDP) whatever
``train.parallelism`` says (it is small), the train split sharded by rank, and every rank
evaluates every clip (cheap for a classifier; no gather needed).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pldistill._fs import atomic_dir
from pldistill.config import TrainConfig, TrialConfig
from pldistill.losses import ClassifierBatch, WeightedSumObjective, build_objective
from pldistill.losses.emodistill import EmbeddingMap
from pldistill.models.classifier import ClassifierStudent, build_classifier_student, save_classifier_student
from pldistill.models.inputs import Example
from pldistill.train.checkpoint import ResumeState, restore_training, save_state
from pldistill.train.dataset import FoldData, fold_clips_egemaps, labelled_share, prepare_fold
from pldistill.train.emodistill_teachers import (
    FoldClips,
    LinguisticSettings,
    ProsodicSettings,
    TeacherOutputs,
    ensure_linguistic_teacher,
    ensure_prosodic_teacher,
)
from pldistill.train.loop import (
    Epoch,
    EpochSteps,
    FoldResult,
    Schedule,
    Scored,
    is_new_best,
    log,
    rank_world,
    run_epochs,
    write_predictions,
)
from pldistill.train.metrics import closed_set_metrics
from pldistill.train.parallel import clip_grad_norm, compute_device, gradient_sync

__all__ = ["classifier_fold_epochs", "fold_teachers", "TRAINABLE_FILE", "SAMPLE_RATE"]

#: The trainable weights (heads, classifier, maps; the encoder too when fine-tuned) in a checkpoint.
TRAINABLE_FILE = "classifier_trainable.safetensors"
SAMPLE_RATE = 16000  # what HuBERT reads


class _Trainee(nn.Module):
    """The student and the maps of its heads to the teachers' widths, trained together (the maps are
    dropped at export: inference never uses them). ``save_pretrained`` / ``load_checkpoint`` are the
    two methods :mod:`pldistill.train.checkpoint` calls on a student."""

    def __init__(self, student: ClassifierStudent, pros_map: EmbeddingMap, ling_map: EmbeddingMap) -> None:
        super().__init__()
        self.student, self.pros_map, self.ling_map = student, pros_map, ling_map

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.student(features, mask)
        return out.logits, self.pros_map(out.pros_emb), self.ling_map(out.ling_emb)

    def trainable(self) -> dict[str, Tensor]:
        """A copy of the trainable weights (a frozen encoder is rebuilt, never stored)."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable(self, state: dict[str, Tensor]) -> None:
        params = dict(self.named_parameters())
        wanted = {n for n, p in params.items() if p.requires_grad}
        if set(state) != wanted:
            raise ValueError(f"trainable weights do not fit the student: missing {sorted(wanted - set(state))[:3]}, "
                             f"unexpected {sorted(set(state) - wanted)[:3]}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def save_pretrained(self, path: Path, safe_serialization: bool = True, **_: Any) -> None:
        from safetensors.torch import save_file

        save_file({k: v.cpu().contiguous() for k, v in self.trainable().items()}, str(Path(path) / TRAINABLE_FILE))

    def load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.load_trainable(load_file(str(Path(path) / TRAINABLE_FILE)))


@dataclass
class _Run:
    """Everything one run trains with, built once by :func:`_setup`, and where it stands."""

    data: FoldData
    rows: dict[str, int]  # clip key -> row of the teachers' outputs
    prosodic: TeacherOutputs
    linguistic: TeacherOutputs
    inputs: Callable[[list[Example]], tuple[Tensor, Tensor]]  # clips -> encoder input and its mask
    trainee: _Trainee
    wrapped: nn.Module  # the trainee as steps call it (DDP wrapper, or the trainee)
    objective: WeightedSumObjective
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    rng: np.random.Generator  # the data order
    out_dir: Path
    device: torch.device
    step: int = 0
    first_epoch: int = 0
    best_weights: dict[str, Tensor] = field(default_factory=dict)


def classifier_fold_epochs(cfg: TrialConfig, seed: int, fold: int, res: FoldResult, clock: dict[str, float],
                           resume: ResumeState | None = None, attempt: int = 0) -> Iterator[Epoch]:
    """Train one run of a classifier-family trial, yielding after each epoch with ``res`` (best
    epoch, figures, the teachers' own scores) up to date, as the audio-LLM trial's runs do."""
    r = _setup(cfg, seed, fold, res, resume)
    steps = EpochSteps(train_epoch=functools.partial(_train_epoch, r, cfg.train),
                       evaluate=functools.partial(_evaluate, r, batch_size=cfg.train.eval_batch_size),
                       keep_if_best=functools.partial(_keep_if_best, r, cfg, res),
                       restore_best=lambda: r.trainee.load_trainable(r.best_weights),
                       checkpoint=lambda _: functools.partial(_save_checkpoint, r))
    yield from run_epochs(r, steps, cfg, seed, fold, res, clock, attempt)


# --- setup ----------------------------------------------------------------------------------------------


def _setup(cfg: TrialConfig, seed: int, fold: int, res: FoldResult, resume: ResumeState | None) -> _Run:
    """Data, teachers, student, objective, optimizer, schedule and random state of one run; with
    ``resume`` (a checkpoint of this run) the state after its epoch."""
    hp, tc, mc = cfg.hparams, cfg.train, cfg.model.classifier
    _, world = rank_world()
    torch.manual_seed(seed)
    data = prepare_fold(cfg, fold)
    device = compute_device()
    rows, prosodic, linguistic, clips = fold_teachers(cfg, data)
    res.teacher = {f"{kind}_{k}": float(v) for kind, t in (("prosodic", prosodic), ("linguistic", linguistic))
                   for k, v in t.metrics.items()}
    tower = None
    if mc.encoder == "whisper":  # the shared encoder: the audio teacher's (fine-tuned once when tiny)
        from pldistill.train.teacher import ensure_teacher

        teacher, _ = ensure_teacher(cfg, data, log=log, encoder_only=True, device=device)
        tower = teacher.audio_tower
    student = build_classifier_student(len(data.labels), encoder=mc.encoder, audio_tower=tower, hubert=mc.hubert,
                                       train_encoder=mc.finetune_encoder, ling_dim=mc.ling_dim,
                                       pros_dim=mc.pros_dim, dropout=mc.dropout, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 4)
        trainee = _Trainee(student, EmbeddingMap(mc.pros_dim, prosodic.embedding_dim),
                           EmbeddingMap(mc.ling_dim, linguistic.embedding_dim)).to(device)
    trainee.train()
    # find_unused_parameters: in a single-teacher ablation the dropped teacher's map gets no gradient
    wrapped: nn.Module = (nn.parallel.DistributedDataParallel(trainee, find_unused_parameters=True) if world > 1
                          else trainee)
    params = [p for p in trainee.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
    # Every clip, the unlabelled ones too (their CE is masked: the teachers' terms read them); the
    # teachers' outputs hold no gold label for them (_teachers).
    per_rank = (len(data.train) + len(data.unlabelled)) // world
    micro = -(-per_rank // tc.batch_size)
    if tc.max_steps_per_epoch:
        micro = min(micro, tc.max_steps_per_epoch * tc.grad_accum)
    total = tc.epochs * max(1, micro // tc.grad_accum)
    schedule = Schedule(per_rank, micro, total, int(hp.warmup_ratio * total), (hp.lr,))
    out_dir = cfg.output_dir / f"seed_{seed}" / f"fold_{fold}"
    res.student_dir = str(out_dir / "best")
    torch.manual_seed(seed + fold)  # dropout, after the caches drew whatever they draw (as trial.py)
    inputs = _whisper_inputs if mc.encoder == "whisper" else functools.partial(_waveform_inputs, clips, {},
                                                                                data.window_s)
    r = _Run(data=data, rows=rows, prosodic=prosodic, linguistic=linguistic, inputs=inputs, trainee=trainee,
             wrapped=wrapped, objective=build_objective(hp.objective, hp.model_dump(), labelled_share=labelled_share(data)), optimizer=optimizer,
             schedule=schedule, rng=np.random.default_rng(seed + fold), out_dir=out_dir, device=device)
    if resume is not None:
        r.best_weights = restore_training(resume, trainee, optimizer)
        r.step, r.first_epoch = resume.step, resume.epoch
        r.rng.bit_generator.state = resume.numpy_rng
    return r


def fold_teachers(cfg: TrialConfig, data: FoldData,
                  log: Callable[[str], None] = log) -> tuple[dict[str, int], TeacherOutputs, TeacherOutputs, dict]:
    """The fold's two teachers' outputs (trained once per fold, cached under ``cache_dir/emodistill``),
    the row of each clip in them, and the fold's clips by key. The linguistic teacher first: a corpus
    without transcripts fails before the fold's eGeMAPS are computed."""
    # The teachers train on the labelled clips (and the teacher pool, as the audio-LM teacher does);
    # they give outputs for every clip. An unlabelled clip's label is in no index set; it is 0 here all
    # the same, so no teacher could read the gold one. Pool rows come last: without a pool the rows,
    # and so the cache keys of teachers trained before the pool was read, are what they were.
    examples = data.train + data.unlabelled + data.val + data.test
    pool, pool_feats = _pool(cfg, data, log)
    n_train, n_unl, n_val, n = len(data.train), len(data.unlabelled), len(data.val), len(examples)
    index = {label: i for i, label in enumerate(data.labels)}
    fold_clips = FoldClips(dataset=data.dataset, fold=data.fold,
                           labels=np.array([ex.label if ex.labelled else 0 for ex in examples]
                                           + [index[c.label] for c in pool], dtype=np.int64),
                           num_classes=len(data.labels),
                           train=np.concatenate([np.arange(n_train), np.arange(n, n + len(pool))]),
                           val=np.arange(n_train + n_unl, n_train + n_unl + n_val),
                           test=np.arange(n_train + n_unl + n_val, n))
    t = cfg.model.emodistill_teachers
    epochs = {} if t.epochs is None else {"epochs": t.epochs}
    texts = [ex.transcript for ex in examples] + [c.transcript for c in pool]
    linguistic = ensure_linguistic_teacher(None if all(x is None for x in texts) else texts, fold_clips,
                                           cfg.cache_dir, seed=cfg.model.init_seed,
                                           settings=LinguisticSettings(model=t.linguistic, **epochs), log=log)
    clips, feats = fold_clips_egemaps(cfg, data)  # rows in the order of ``examples``
    values = feats.values if pool_feats is None else np.concatenate([feats.values, pool_feats])
    prosodic = ensure_prosodic_teacher(values, fold_clips, cfg.cache_dir, seed=cfg.model.init_seed,
                                       settings=ProsodicSettings(arch=t.prosodic_arch, **epochs), log=log)
    return {ex.key: i for i, ex in enumerate(examples)}, prosodic, linguistic, clips


def _pool(cfg: TrialConfig, data: FoldData, log: Callable[[str], None]) -> tuple[list[Any], np.ndarray | None]:
    """The teacher-pool clips EmoDistill's teachers train on too (``ModelConfig.emodistill_pool``), those
    whose audio reads under ``data.on_bad_audio`` (as the audio-LM teacher's fine-tune skips the
    rest), and their eGeMAPSv02 rows; none without a pool."""
    if not (data.teacher_pool and cfg.model.emodistill_pool):
        return [], None
    from pldistill.data import compute_egemaps

    feats = compute_egemaps(data.teacher_pool, cfg.cache_dir / "features", on_bad_audio=cfg.data.on_bad_audio)
    pool = [c for c in data.teacher_pool if c.key not in set(feats.skipped)]
    log(f"EmoDistill teachers fold {data.fold}: {len(data.train)} train clips + {len(pool)} teacher-pool clips")
    return pool, feats.rows([c.key for c in pool])


def _whisper_inputs(examples: list[Example]) -> tuple[Tensor, Tensor]:
    """Log-mels ``(B, n_mels, frames)`` of the fold's window and the valid-frame mask ``(B, frames)``."""
    mels = torch.from_numpy(np.stack([ex.mel() for ex in examples]).astype(np.float32))
    valid = torch.tensor([ex.valid_frames for ex in examples])
    return mels, torch.arange(mels.shape[-1])[None, :] < valid[:, None]


def _waveform_inputs(clips: dict, cache: dict[str, np.ndarray], window_s: float,
                     examples: list[Example]) -> tuple[Tensor, Tensor]:
    """16 kHz waveforms ``(B, S)`` cropped to the fold's window (as the log-mels are), zero-padded to the
    longest, and their sample mask; each clip read once per run."""
    from pldistill.data import load_audio

    limit = int(round(window_s * SAMPLE_RATE))
    for ex in examples:
        if ex.key not in cache:
            cache[ex.key] = load_audio(clips[ex.key])[:limit]
    waves = [cache[ex.key] for ex in examples]
    longest = max(len(w) for w in waves)
    out = torch.zeros(len(waves), longest)
    for i, w in enumerate(waves):
        out[i, :len(w)] = torch.from_numpy(w)
    lengths = torch.tensor([len(w) for w in waves])
    return out, torch.arange(longest)[None, :] < lengths[:, None]


# --- the loop's steps -------------------------------------------------------------------------------------


def _batch(r: _Run, examples: list[Example]) -> ClassifierBatch:
    """The student's forward on ``examples`` and the teachers' cached rows of the same clips."""
    features, mask = r.inputs(examples)
    logits, pros, ling = r.wrapped(features.to(r.device), mask.to(r.device))
    rows = [r.rows[ex.key] for ex in examples]

    def read(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a[rows]).to(r.device)

    labelled = None if all(ex.labelled for ex in examples) else \
        torch.tensor([ex.labelled for ex in examples], device=r.device)
    return ClassifierBatch(student_logits=logits, labels=torch.tensor([ex.label for ex in examples], device=r.device),
                           labelled=labelled,
                           student_pros=pros, student_ling=ling, teacher_p_logits=read(r.prosodic.logits),
                           teacher_l_logits=read(r.linguistic.logits), teacher_p_emb=read(r.prosodic.embeddings),
                           teacher_l_emb=read(r.linguistic.embeddings))


def _train_epoch(r: _Run, tc: TrainConfig) -> dict[str, float]:
    """One epoch of gradient steps; returns the mean of each loss term over its micro-batches."""
    rank, world = rank_world()
    s = r.schedule
    train = r.data.train + r.data.unlabelled
    order = r.rng.permutation(len(train))[:s.per_rank * world][rank::world]
    sums: dict[str, float] = {}
    r.optimizer.zero_grad(set_to_none=True)
    for m in range(s.micro_per_epoch):
        examples = [train[i] for i in order[m * tc.batch_size:(m + 1) * tc.batch_size]]
        last_micro = (m + 1) % tc.grad_accum == 0 or m + 1 == s.micro_per_epoch
        with gradient_sync(r.wrapped, enabled=last_micro):  # DDP all-reduces on the last micro-batch only
            out = r.objective(_batch(r, examples))
            (out.total / tc.grad_accum).backward()
        for k, v in {"total": out.total, **out.terms}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        if last_micro:
            s.set_lr(r.optimizer, r.step)
            if tc.max_grad_norm:
                clip_grad_norm([p for p in r.trainee.parameters() if p.requires_grad], tc.max_grad_norm)
            r.optimizer.step()
            r.optimizer.zero_grad(set_to_none=True)
            r.step += 1
    return {k: v / max(1, s.micro_per_epoch) for k, v in sums.items()}


@torch.no_grad()
def _evaluate(r: _Run, examples: list[Example], batch_size: int) -> tuple[dict[str, float], list[Scored]]:
    """UA/WA/F1, the gold class's CE and the conflict clips' UA from the class log-probabilities
    (:func:`closed_set_metrics`), and every clip's ``(key, label, scores, lexical)``."""
    r.trainee.train(False)
    scores = []
    for s in range(0, len(examples), batch_size):
        features, mask = r.inputs(examples[s:s + batch_size])
        logits = r.trainee.student(features.to(r.device), mask.to(r.device)).logits
        scores.append(torch.log_softmax(logits.float(), -1).cpu())
    r.trainee.train()
    table = torch.cat(scores).numpy()
    scored = [(ex.key, ex.label, row.tolist(), ex.lexical) for ex, row in zip(examples, table)]
    return closed_set_metrics([ex.label for ex in examples], table, [ex.lexical for ex in examples]), scored


def _keep_if_best(r: _Run, cfg: TrialConfig, res: FoldResult, row: dict[str, Any], losses: dict[str, float],
                  predictions: list[Scored] | None) -> None:
    """Make this epoch the run's best when it is (rank 0 decides for all): its figures, the trainable
    weights, and the saved student with its test predictions."""
    if not is_new_best(res, row, losses, cfg.train.select_metric):
        return
    r.best_weights = r.trainee.trainable()
    if rank_world()[0] == 0:
        _save_student(r, cfg, res.seed, res.best_epoch)
        if predictions is not None:
            res.predictions_sha256 = write_predictions(r.out_dir / "best", predictions, r.data.labels)


def _save_student(r: _Run, cfg: TrialConfig, seed: int, epoch: int) -> None:
    """The standalone student (``model.safetensors`` + ``classifier.json`` with the labels, see
    :func:`save_classifier_student`) and the resolved config, atomically, under ``best/``."""
    with atomic_dir(r.out_dir / "best") as tmp:
        save_classifier_student(r.trainee.student, tmp, labels=r.data.labels)
        meta = {"seed": seed, "fold": r.data.fold, "epoch": epoch, "family": "classifier",
                "window_s": r.data.window_s, "config": json.loads(cfg.to_json())}
        (tmp / "pldistill_config.json").write_text(json.dumps(meta, indent=2))


def _save_checkpoint(r: _Run, path: Path, state: ResumeState) -> None:
    """The epoch's resumable checkpoint (:mod:`pldistill.train.checkpoint`'s layout) into ``path``."""
    save_state(path, r.trainee, r.optimizer, state, best=r.best_weights)
