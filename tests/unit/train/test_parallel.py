"""Sharded online mode: one distillation step on 2 gloo ranks equals one process on the whole batch.

Two processes (``torch.multiprocessing`` spawn, gloo on a free port) each take half of a 4-clip batch
as two micro-batches of one clip (gradient accumulation: no gradient sync on the first), then clip
the gradients to a norm small enough that clipping acts. One process runs the same 4 clips as one
batch. The clips have the same length and label, so the per-token means of the loss terms over the
whole batch equal the mean of the four single-clip losses, and the gradients must agree.

Tolerance: float32 with a different summation order (per-rank sums, all-reduce / reduce-scatter
averaging): ``rtol=1e-4, atol=1e-9`` (the gradients are clipped to a total norm of 1e-3). Observed
with torch 2.13 on CPU: loss off by 5e-7 absolute, gradients by at most 7e-11 absolute (8e-7 of each
tensor's largest element), the same for ddp and fsdp. A missing all-reduce, an accumulation that
syncs twice or a clip by the local shard's norm changes them by far more (the two halves'
gradients differ by O(1) relative).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from _corpus import SMALL_CORPUS
from _objectives import objective

from pldistill.models.inputs import Example, collate

LABELS = ("Neutral", "Happy", "Angry", "Sad")
N_CLIPS, FRAMES, WINDOW_S = 4, 200, 2.0
MAX_NORM = 1e-3  # well below the gradient norm: the clip factor matters
RTOL, ATOL = 1e-4, 1e-9


def _examples() -> list[Example]:
    rng = np.random.default_rng(0)
    n_tok = ((FRAMES - 1) // 2 + 1 - 2) // 2 + 1
    return [Example(key=f"k{i}", features=rng.standard_normal((128, FRAMES)).astype(np.float32),
                    valid_frames=FRAMES, label=1, num_audio_tokens=n_tok) for i in range(N_CLIPS)]


def _models():
    from pldistill.models.audiolm import AudioLMHead
    from pldistill.models.loading import (
        build_student,
        build_tiny_teacher,
        load_student_llm,
        set_encoder_window,
    )

    teacher = build_tiny_teacher(seed=0)
    set_encoder_window(teacher.audio_tower, WINDOW_S)
    llm = load_student_llm("tiny", teacher.tokenizer, seed=0)
    student = build_student(teacher, llm, lora_rank=4, lora_alpha=8.0, seed=0)
    # LoRA B starts at zero; give the adapters values so every trainable tensor has a gradient.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0.0, 0.02)
    head = AudioLMHead(student.base_model.model).train()
    obj = objective("pl_distill", alpha=1.0, beta=0.8, gamma=1.0, temperature=2.0)
    return teacher, student, head, AudioLMHead(teacher.model), obj


def _fold(head, teacher, labels):
    """What ``trial._evaluate`` reads of a fold: the head, where the audio comes from, the tokenizer, the labels."""
    from types import SimpleNamespace

    return SimpleNamespace(head=head, encoder=teacher.audio_tower, teacher=teacher,
                           data=SimpleNamespace(labels=tuple(labels)))


def _step(teacher, teacher_head, student_head, objective, examples, sync_last: bool, mode: str | None):
    """Micro-batches of one clip, accumulated; returns the summed (scaled) loss."""
    from pldistill.train.parallel import gradient_sync
    from pldistill.train.step import DistillModels, distill_step

    models = DistillModels(audio_tower=teacher.audio_tower, teacher=teacher_head, student=student_head,
                           vocab=len(teacher.tokenizer), objective=objective, weighting="attention_last")
    total = 0.0
    for i, ex in enumerate(examples):
        batch = collate([ex], teacher.tokenizer, LABELS)
        with gradient_sync(student_head, enabled=not sync_last or i == len(examples) - 1):
            out = distill_step(models, batch)
            (out.total / len(examples)).backward()
        total += float(out.total) / len(examples)
    return total


def _worker(rank: int, world: int, port: int, mode: str, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from pldistill.train.parallel import clip_grad_norm, full_trainable_state, wrap_models
    from pldistill.train.trial import _evaluate

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        teacher, _, head, teacher_head, objective = _models()
        t_wrapped, s_wrapped = wrap_models(teacher_head, head, mode, audio_tower=teacher.audio_tower)
        mine = _examples()[rank * 2:(rank + 1) * 2]
        loss = torch.tensor(_step(teacher, t_wrapped, s_wrapped, objective, mine, True, mode))
        dist.all_reduce(loss)
        norm = clip_grad_norm([p for p in head.parameters() if p.requires_grad], MAX_NORM)
        grads = {n: (p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad).clone()
                 for n, p in head.named_parameters() if p.requires_grad}
        layer_w = teacher_head.core.language_model.layers[0].mlp.up_proj.weight
        sharded = isinstance(layer_w, DTensor) and layer_w.to_local().shape[0] * world == layer_w.shape[0]
        state = full_trainable_state(head)  # collective under fsdp; rank 0 gets it
        # 3 clips, batch 1: rank 0 scores 2, rank 1 one plus one padding forward (FSDP forwards pair up)
        scores = _evaluate(_fold(head, teacher, LABELS), _examples()[:3], 1)[0]
        if rank == 0:
            torch.save({"loss": float(loss) / world, "norm": float(norm), "grads": grads, "sharded": sharded,
                        "state_keys": sorted(state or {}), "eval": scores}, out)
        dist.barrier()  # neither rank tears down its gloo threads while the other still talks
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference():
    """One process, the 4 clips as one batch, clipped with torch's own ``clip_grad_norm_``."""
    from pldistill.train.step import DistillModels, distill_step
    from pldistill.train.trial import _evaluate

    torch.manual_seed(0)
    teacher, _, head, teacher_head, objective = _models()
    scores = _evaluate(_fold(head, teacher, LABELS), _examples()[:3], 1)[0]
    models = DistillModels(audio_tower=teacher.audio_tower, teacher=teacher_head, student=head,
                           vocab=len(teacher.tokenizer), objective=objective, weighting="attention_last")
    out = distill_step(models, collate(_examples(), teacher.tokenizer, LABELS))
    out.total.backward()
    params = [p for p in head.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
    grads = {n: p.grad.clone() for n, p in head.named_parameters() if p.requires_grad}
    return {"loss": float(out.total.detach()), "norm": float(norm), "grads": grads, "eval": scores}


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_equal_one_process_on_the_whole_batch(mode, reference, tmp_path: Path):
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, _free_port(), mode, str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    assert got["loss"] == pytest.approx(reference["loss"], rel=RTOL)
    assert got["norm"] == pytest.approx(reference["norm"], rel=RTOL)
    assert got["norm"] > 10 * MAX_NORM  # the clip acted
    assert set(got["grads"]) == set(reference["grads"]) and len(got["grads"]) > 10
    for name, g in reference["grads"].items():
        torch.testing.assert_close(got["grads"][name], g, rtol=RTOL, atol=ATOL, msg=name)
    assert got["sharded"] == (mode == "fsdp")
    assert got["state_keys"] == sorted(reference["grads"])
    assert got["eval"] == reference["eval"]


def test_single_process_is_left_alone_and_unknown_mode_fails():
    from pldistill.train.parallel import wrap_models

    teacher, _, head, teacher_head, _ = _models()
    assert wrap_models(teacher_head, head, "fsdp", audio_tower=teacher.audio_tower) == (teacher_head, head)
    with pytest.raises(ValueError, match="valid: ddp, fsdp"):
        wrap_models(teacher_head, head, "zero3")  # type: ignore[arg-type]


def _trial_cfg(tmp_path: Path, cache: str, parallelism: str):
    from pldistill.config import TrialConfig

    return TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "train": {"epochs": 2, "batch_size": 4, "grad_accum": 2, "max_steps_per_epoch": 2, "num_threads": 1,
                  "eval_test_each_epoch": False, "eval_batch_size": 5, "parallelism": parallelism},
        "model": {"teacher_finetune": {"enabled": False}},  # a random teacher is enough here, and fast
        "hparams": {"objective": "pl_distill"},
        "output_dir": str(tmp_path / "run"), "cache_dir": cache,
    })


def _trial_worker(rank: int, world: int, port: int, cfg_json: str, out: str, keep: str, resume: str) -> None:
    """``run_trial`` on one rank; rank 0 writes the result to ``out`` and copies each epoch's
    checkpoint to ``keep/e<epoch>`` (``resume``: a checkpoint folder to start from, or "")."""
    import json
    import shutil

    import torch.distributed as dist

    from pldistill.config import TrialConfig
    from pldistill.prepare import prepare_trial
    from pldistill.train.trial import run_trial

    def report(metrics, row, ckpt):
        if ckpt is not None:
            shutil.copytree(ckpt, Path(keep) / f"e{row['epoch']}")

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = run_trial(prepare_trial(TrialConfig.model_validate_json(cfg_json)), report=report,
                           resume=Path(resume) if resume else None)
        if rank == 0:
            Path(out).write_text(json.dumps({"metrics": result.metrics, "world": result.world_size,
                                             "student_dir": result.folds[0].student_dir,
                                             "epochs": result.folds[0].epochs, "restarts": result.restarts}))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawn_trial(cfg, out: Path, keep: Path, resume: Path | None = None) -> dict:
    import json

    mp.spawn(_trial_worker, args=(2, _free_port(), cfg.to_json(), str(out), str(keep), str(resume or "")),
             nprocs=2, join=True)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def fsdp_trial(tmp_path_factory, tiny_cache):
    """A 2-rank fsdp trial of 2 epochs (test scored once, after the best weights are put back), run
    through once, with every epoch's checkpoint kept. The session's cache: its corpus and student
    prior are reused (the random teacher has a key of its own)."""
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.student_prior import ensure_student_llm
    from pldistill.train.teacher import ensure_teacher

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("fsdp")
    cfg = _trial_cfg(tmp, tiny_cache, "fsdp")
    data = prepare_fold(cfg, 1)  # shared artefacts built once, here, as the sweep's prepare step does
    teacher, _ = ensure_teacher(cfg, data, log=lambda m: None)
    prior = ensure_student_llm(cfg, teacher.tokenizer, log=lambda m: None)
    got = _spawn_trial(cfg, tmp / "result.json", tmp / "ckpts")
    return cfg, data, teacher, prior, got, tmp / "ckpts"


# fsdp only: a 2-rank DDP trial runs in every sweep test (tests/integration/test_sweep_e2e.py), and the
# DDP step itself is checked against one process above.
def test_trial_completes_and_saves_a_student_that_reloads(fsdp_trial):
    """The 2-rank trial's saved adapter loads into a fresh single-process student that scores the
    test split exactly as the 2-rank trial did."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from pldistill.models.audiolm import AudioLMHead
    from pldistill.models.loading import build_student, load_student_llm
    from pldistill.train.trial import _evaluate

    cfg, data, teacher, prior, got, _ = fsdp_trial
    assert got["world"] == 2
    best = Path(got["student_dir"])
    assert (best / "adapter_model.safetensors").is_file() and (best / "pldistill_config.json").is_file()

    hp = cfg.hparams
    student = build_student(teacher, load_student_llm(prior, teacher.tokenizer, seed=cfg.model.init_seed),
                            lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha, seed=cfg.train.seeds[0])
    fresh = {n: p.detach().clone() for n, p in student.named_parameters() if p.requires_grad}
    saved = load_file(str(best / "adapter_model.safetensors"))
    assert len(saved) == len(fresh)
    set_peft_model_state_dict(student, saved)
    moved = [n for n, p in student.named_parameters() if p.requires_grad and not torch.equal(p, fresh[n])]
    assert len(moved) == len(fresh)  # every trained tensor came back from the file (none left at init)
    head = AudioLMHead(student.base_model.model)
    test = _evaluate(_fold(head, teacher, data.labels), data.test, 5)[0]
    for key in ("ua", "wa", "f1"):
        assert test[key] == pytest.approx(got["metrics"][f"test_{key}"], abs=1e-9), key


def test_fsdp_trial_resumes_from_its_epoch_checkpoint(fsdp_trial, tmp_path: Path):
    """Rank 0 checkpoints gathered weights and optimizer state; two fresh ranks resume from epoch 1's
    checkpoint, re-shard them and end exactly where the uninterrupted trial did."""
    from pldistill.train.checkpoint import load_state, restore_training

    cfg, _, teacher, prior, full, ckpts = fsdp_trial
    assert sorted(p.name for p in ckpts.iterdir()) == ["e1", "e2"]
    assert (ckpts / "e1" / "trainable.safetensors").is_file()
    resumed = _spawn_trial(cfg.model_copy(update={"output_dir": tmp_path / "run"}), tmp_path / "r.json",
                           tmp_path / "ckpts", resume=ckpts / "e1")
    assert resumed["restarts"] == 1 and full["restarts"] == 0
    assert [r["attempt"] for r in resumed["epochs"]] == [0, 1]  # epoch 1 from the checkpoint, epoch 2 rerun
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("wall_s", "samples_per_s", "attempt")}  # noqa: E731
                          for r in rows]
    assert strip(resumed["epochs"]) == strip(full["epochs"])
    assert resumed["metrics"] == full["metrics"]
    # a sharded checkpoint resumes only sharded: one clear error in a single process
    from pldistill.models.loading import build_student, load_student_llm

    student = build_student(teacher, load_student_llm(prior, teacher.tokenizer, seed=0), lora_rank=8, lora_alpha=16.0)
    with pytest.raises(ValueError, match="written by a sharded trial"):
        restore_training(load_state(ckpts / "e1"), student, torch.optim.AdamW(student.parameters()))


SWEEP = """\
name: t
base:
  data: {source: synthetic, dataset: synthetic, folds: [1], synth: {speakers: 8, teacher_speakers: 0, per_class: 6, folds: 4}}
  train: {epochs: 1}
search:
  algorithm: optuna
  num_samples: 2
  space:
    alpha: {type: uniform, low: 0.0, high: 2.0}
"""


def test_sweep_resources_parallelism_reaches_every_trial(tmp_path: Path):
    from pldistill.sweep import load_sweep
    from pldistill.sweep.space import resolve_trial_config

    default = tmp_path / "d.yaml"
    default.write_text(SWEEP)
    assert resolve_trial_config(load_sweep(default), {}, trial_id="a").train.parallelism == "ddp"
    fsdp = tmp_path / "f.yaml"
    fsdp.write_text(SWEEP + "resources: {workers_per_trial: 2, parallelism: fsdp}\n")
    trial = resolve_trial_config(load_sweep(fsdp), {"alpha": 0.5}, trial_id="a")
    assert trial.train.parallelism == "fsdp" and trial.hparams.alpha == 0.5


def test_bad_parallelism_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import pldistill.cli.validate  # noqa: F401  (registers the command)
    from pldistill.cli._app import run_app
    from pldistill.errors import InputError
    from pldistill.sweep import load_sweep

    bad = tmp_path / "bad.yaml"
    bad.write_text(SWEEP + "resources: {parallelism: zero3}\n")
    assert run_app(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{bad}: resources.parallelism: ") and "'ddp' or 'fsdp'" in err[0], err
    assert "Traceback" not in "\n".join(err)
    # said under train: refused when the file is loaded; resources.parallelism is its one home
    both = tmp_path / "both.yaml"
    both.write_text(SWEEP.replace("train: {epochs: 1}", "train: {epochs: 1, parallelism: ddp}")
                    + "resources: {parallelism: fsdp}\n")
    with pytest.raises(InputError, match="base.train.parallelism: a sweep file sets it once, as resources.parallelism"):
        load_sweep(both)
