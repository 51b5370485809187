"""The teacher of a fold: loaded as is, or fine-tuned once and cached by the hash of what it depends on.

The tiny teacher of the embedded default starts from random weights, so it is first fine-tuned
on the fold's train split (CE on the response, all parameters) to have knowledge to distil. The
result is saved with ``save_pretrained`` (safetensors) under ``cache_dir/teachers/<hash>`` and
loaded back *by path*, through the same code as a real checkpoint. A file lock makes concurrent
trials of one sweep wait for the first one instead of training the same teacher twice.

A real teacher used as is is scored once per fold too (``teachers/<hash>/metrics.json``, the
Teacher row of the reports), not in every trial. Trials that read the teacher cache load the
teacher without its language model (``encoder_only``): a 7B LLM they would never run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pldistill._fs import build_once
from pldistill.config import TrialConfig, config_hash
from pldistill.models.audiolm import AudioLMHead, encode_audio
from pldistill.models.inputs import Example, PromptTemplate, collate
from pldistill.models.loading import Teacher, freeze, load_teacher, set_encoder_window
from pldistill.progress import StepProgress
from pldistill.train.dataset import FoldData, teacher_pool_examples
from pldistill.train.metrics import closed_set_metrics
from pldistill.train.scoring import score_labels

__all__ = ["ensure_teacher", "teacher_key", "teacher_dir", "evaluate", "answered", "ANSWERS_FILE"]

#: The teacher's closed-set answers for the fold's unlabelled clips, beside its ``metrics.json``.
ANSWERS_FILE = "answers.json"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def teacher_key(cfg: TrialConfig, data: FoldData) -> str:
    ft = cfg.model.teacher_finetune
    return config_hash({
        # train_encoder left unset keeps the keys of the caches made before it existed
        "teacher": cfg.model.teacher, "init_seed": cfg.model.init_seed,
        "finetune": ft.model_dump(mode="json", exclude={"train_encoder"} if ft.train_encoder is None else None),
        "dataset": data.dataset, "fold": data.fold, "window_s": data.window_s, "labels": data.labels,
        "train": sorted(ex.key for ex in data.train), "template": repr(PromptTemplate()),
        "features": data.features_key, "v": 2,
        **({"pool": sorted(c.key for c in data.teacher_pool)} if data.teacher_pool else {}),
        # the clips it answers for (``answers.json``); "train" above is then the labelled part
        **({"unlabelled": sorted(ex.key for ex in data.unlabelled)} if data.unlabelled else {}),
        # a key of its own only when it differs from the default, so existing caches stay valid
        **({"eval": cfg.model.teacher_eval} if cfg.model.teacher_eval != "closed_set" else {}),
    })


def evaluate(head: AudioLMHead, audio_tower: torch.nn.Module, examples: list[Example], tokenizer,
             labels: tuple[str, ...], *, batch_size: int = 16) -> dict[str, float]:
    was_training = head.training
    head.eval()
    scores = score_labels(head, audio_tower, examples, tokenizer, labels, vocab=len(tokenizer),
                          batch_size=batch_size)
    head.train(was_training)
    return closed_set_metrics([ex.label for ex in examples], scores.numpy(), [ex.lexical for ex in examples])


def ensure_teacher(cfg: TrialConfig, data: FoldData, log: Callable[[str], None] = print, *,
                   encoder_only: bool = False, device: torch.device | str = "cpu") -> tuple[Teacher, dict]:
    """The fold's teacher (frozen, eval mode, encoder window set) and its own val/test metrics.

    The metrics are computed once per fold and kept in ``cache_dir/teachers/<key>/metrics.json``
    (beside the fine-tuned teacher, when there is one). ``encoder_only``: load the teacher without
    its language model (see :func:`~pldistill.models.loading.load_teacher`), for trials that read
    the teacher cache. ``device``: where fine-tuning and scoring run (the returned teacher is on the
    CPU). Built through :func:`pldistill._fs.build_once`: inside a trial (read-only) a teacher that
    preparation did not build is an error.
    """
    dtype = _DTYPES[cfg.model.dtype]
    final = teacher_dir(cfg, data)
    if not cfg.model.finetunes_teacher:  # a real teacher used as is (the paper): scored once per fold
        def score(tmp: Path) -> None:
            full = _windowed(load_teacher(cfg.model.teacher, dtype=dtype), data)
            full.model.to(device)
            _write_scores(tmp, _teacher_metrics(_frozen(full), data, cfg), _answers(full, data, cfg))

        build_once(final, "metrics.json", score, what=f"teacher scores fold {data.fold}")
        spec = cfg.model.teacher
    else:
        build_once(final, "metrics.json", lambda tmp: _finetune_into(cfg, data, tmp, dtype, log, device),
                   what=f"fine-tuned teacher fold {data.fold}")
        spec = str(final)
    teacher = _load_encoder_only(spec, dtype) if encoder_only else load_teacher(spec, dtype=dtype)
    return _frozen(_windowed(teacher, data)), json.loads((final / "metrics.json").read_text())


def teacher_dir(cfg: TrialConfig, data: FoldData) -> Path:
    """The fold's teacher entry: ``cache_dir/teachers/<teacher_key>`` (the fine-tuned checkpoint and
    its scores, or a real teacher's scores alone)."""
    return cfg.cache_dir / "teachers" / teacher_key(cfg, data)


def _load_encoder_only(spec: str, dtype: torch.dtype) -> Teacher:
    """An encoder-only teacher; in a process that runs trial after trial, the last one is kept
    (:mod:`pldistill.train.reuse`): a trial never changes it (frozen again by the caller)."""
    from pldistill.train import reuse

    return reuse.memo("encoder_only_teacher", (spec, str(dtype)),
                      lambda: load_teacher(spec, dtype=dtype, encoder_only=True))


def _windowed(teacher: Teacher, data: FoldData) -> Teacher:
    set_encoder_window(teacher.audio_tower, data.window_s)
    return teacher


def _write_scores(folder: Path, metrics: dict, answers: dict | None) -> None:
    if answers is not None:
        (folder / ANSWERS_FILE).write_text(json.dumps(answers, indent=2))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))


def _answers(teacher: Teacher, data: FoldData, cfg: TrialConfig) -> dict | None:
    """The teacher's closed-set answer (label index) for each unlabelled clip, and how often it is
    the gold label (``ua``, ``wa``: the quality of the signal the students get on those clips)."""
    if not data.unlabelled:
        return None
    head = AudioLMHead(teacher.model)
    was_training = head.training
    head.train(False)
    scores = score_labels(head, teacher.audio_tower, data.unlabelled, teacher.tokenizer, data.labels,
                          vocab=len(teacher.tokenizer), batch_size=cfg.train.eval_batch_size)
    head.train(was_training)
    pred = scores.argmax(-1).tolist()
    quality = closed_set_metrics([ex.label for ex in data.unlabelled], scores.numpy())
    return {"answers": {ex.key: int(p) for ex, p in zip(data.unlabelled, pred)},
            "ua": quality["ua"], "wa": quality["wa"]}


def answered(cfg: TrialConfig, data: FoldData) -> list[Example]:
    """The fold's unlabelled clips with the teacher's answers as their responses (``labelled`` False:
    the CE never reads them). Call after :func:`ensure_teacher`, which writes the answers."""
    if not data.unlabelled:
        return []
    path = teacher_dir(cfg, data) / ANSWERS_FILE
    answers = json.loads(path.read_text())["answers"]
    return [replace(ex, label=int(answers[ex.key])) for ex in data.unlabelled]


def _frozen(teacher: Teacher) -> Teacher:
    freeze(teacher.model)
    return teacher


def _teacher_metrics(teacher: Teacher, data: FoldData, cfg: TrialConfig) -> dict:
    if cfg.model.teacher_eval == "generate":
        return {f"{split}_{k}": v for split in ("val", "test")
                for k, v in generated_metrics(teacher, getattr(data, split), data.labels).items()}
    head = AudioLMHead(teacher.model)
    bs = cfg.train.eval_batch_size
    val = evaluate(head, teacher.audio_tower, data.val, teacher.tokenizer, data.labels, batch_size=bs)
    test = evaluate(head, teacher.audio_tower, data.test, teacher.tokenizer, data.labels, batch_size=bs)
    return {**{f"val_{k}": v for k, v in val.items()}, **{f"test_{k}": v for k, v in test.items()}}


def _finetune_into(cfg: TrialConfig, data: FoldData, into: Path, dtype: torch.dtype,
                   log: Callable[[str], None], device: torch.device | str = "cpu") -> None:
    ft = cfg.model.teacher_finetune
    teacher = load_teacher(cfg.model.teacher, seed=cfg.model.init_seed, dtype=dtype)
    set_encoder_window(teacher.audio_tower, data.window_s)
    model, tok = teacher.model.to(device), teacher.tokenizer
    # A random tiny encoder knows nothing: train it too (unless told otherwise). A real encoder stays frozen.
    train_encoder = cfg.model.teacher == "tiny" if ft.train_encoder is None else ft.train_encoder
    for p in model.model.audio_tower.parameters():
        p.requires_grad_(train_encoder)
    model.model.audio_tower.embed_positions.weight.requires_grad_(False)
    head = AudioLMHead(model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=ft.lr, weight_decay=0.01)
    rng = np.random.default_rng(cfg.model.init_seed)
    # The fold's train split and the clips only the teacher hears (see SynthConfig.teacher_speakers).
    train = data.train + teacher_pool_examples(cfg, data)
    if len(train) > len(data.train):
        log(f"teacher fine-tune fold {data.fold}: {len(data.train)} train clips + {len(train) - len(data.train)} "
            "teacher-pool clips")
    steps = ft.epochs * max(1, -(-len(train) // ft.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=ft.lr, total_steps=steps, pct_start=0.1)
    vocab = len(tok)
    bar = StepProgress(steps, f"teacher fine-tune fold {data.fold}", unit="steps", log=log)
    with torch.random.fork_rng(devices=[]), bar:
        torch.manual_seed(cfg.model.init_seed)
        for epoch in range(ft.epochs):
            order = rng.permutation(len(train))
            total = 0.0
            for s in range(0, len(order), ft.batch_size):
                batch = collate([train[i] for i in order[s:s + ft.batch_size]], tok, data.labels).to(device)
                enc = encode_audio(model.model.audio_tower, batch.input_features, batch.feature_attention_mask)
                _, _, logits = head(enc.features, enc.num_tokens, batch.input_ids, batch.attention_mask, vocab)
                loss = torch.nn.functional.cross_entropy(logits[batch.response_mask].float(),
                                                         batch.labels[batch.response_mask])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                bar.advance()
                total += loss.item() * len(batch)
            log(f"teacher fine-tune fold {data.fold} epoch {epoch + 1}/{ft.epochs}: loss {total / len(train):.4f}")
    model.eval()
    metrics, answers = _teacher_metrics(teacher, data, cfg), _answers(teacher, data, cfg)
    log(f"teacher fold {data.fold}: val UA {metrics['val_ua']:.3f}, test UA {metrics['test_ua']:.3f}")
    # Save with the full 30 s position table so the checkpoint looks like any real one.
    full = getattr(model.model.audio_tower, "_pldistill_full_positions", None)
    if full is not None:
        set_encoder_window(model.model.audio_tower, full.shape[0] / 50)
    model.save_pretrained(into, safe_serialization=True)
    tok.save_pretrained(into)
    _write_scores(into, metrics, answers)  # metrics.json last: it marks the entry complete


def match_answer(text: str, labels: Sequence[str]) -> int | None:
    """The label a free answer names: the one whose name occurs first (case-insensitive, whole word),
    None when it names none."""
    found = [(m.start(), i) for i, lab in enumerate(labels)
             if (m := re.search(rf"\b{re.escape(lab)}\b", text, flags=re.IGNORECASE))]
    return min(found)[1] if found else None


@torch.no_grad()
def generated_metrics(teacher: Teacher, examples: Sequence[Example], labels: Sequence[str], *,
                      max_new_tokens: int = 12) -> dict[str, float]:
    """UA/WA/F1 of the teacher's free, greedy answers to the prompt, matched to the labels
    (:func:`match_answer`; an answer naming no label is wrong: it counts as a class of its own)."""
    from pldistill.models.inputs import prompt_inputs
    from pldistill.train.metrics import classification_metrics

    model, device = teacher.model, next(teacher.model.parameters()).device
    predicted = []
    for ex in examples:  # one clip at a time: no padding inside the prompt to get wrong
        inputs = prompt_inputs([ex], teacher.tokenizer, labels).to(device)
        out = model.generate(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                             input_features=inputs.input_features.to(model.dtype),
                             feature_attention_mask=inputs.feature_attention_mask, max_new_tokens=max_new_tokens,
                             do_sample=False)
        answer = teacher.tokenizer.decode(out[0, inputs.input_ids.shape[1]:], skip_special_tokens=True)
        found = match_answer(answer, labels)
        predicted.append(len(labels) if found is None else found)
    return classification_metrics([ex.label for ex in examples], predicted)
