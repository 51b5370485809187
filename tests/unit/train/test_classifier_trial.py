"""EmoDistill trials end to end (no Ray): the classifier family through ``run_trial``, its teachers,
its saved student, its test predictions, and resuming from an epoch checkpoint.

Tiny on purpose: a tiny HuBERT (random, frozen: no audio teacher to fine-tune), teachers of 3
epochs, 2 epochs of 4 steps. What is checked is the wiring and the contract, not how well it learns.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from _corpus import SMALL_CORPUS

from pldistill.config import TrialConfig
from pldistill.errors import InputError
from pldistill.models.classifier import load_classifier_student
from pldistill.prepare import prepare_trial
from pldistill.train.metrics import classification_metrics
from pldistill.train.trial import run_trial

TERMS = {"total", "class_ce", "kl_prosodic", "kl_linguistic", "cos_prosodic", "cos_linguistic"}


def _cfg(out, cache: str, *, encoder: str = "hubert", data: dict | None = None, model: dict | None = None,
         **train) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": data or {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "model": {"classifier": {"encoder": encoder, "ling_dim": 16, "pros_dim": 12},
                  "emodistill_teachers": {"epochs": 3}, **(model or {})},
        "train": {"epochs": 2, "batch_size": 8, "grad_accum": 1, "num_threads": 2, "max_steps_per_epoch": 4,
                  **train},
        "hparams": {"objective": "emodistill", "lr": 3e-3, "w_cos": 0.5},
        "output_dir": str(out), "cache_dir": cache,
    })


def _figures(rows: list[dict]) -> list[dict]:
    """An epoch row without what depends on the clock or the attempt."""
    return [{k: v for k, v in r.items() if k not in ("samples_per_s", "wall_s", "attempt")} for r in rows]


def test_classifier_trial_runs_saves_and_resumes_exactly(tmp_path, tiny_cache):
    cfg = _cfg(tmp_path / "run", tiny_cache)
    assert cfg.student_family == "classifier"
    kept, reports = [], []

    def report(metrics, row, ckpt):
        reports.append((metrics, row))
        copy = tmp_path / f"ckpt-{row['epoch']}"
        shutil.copytree(ckpt, copy)  # the trial deletes its checkpoint after the report
        kept.append(copy)

    result = run_trial(prepare_trial(cfg), report=report)
    fold = result.folds[0]
    # the per-epoch contract: one report per epoch, the last with the whole result, the teachers' figures
    assert [r[1]["epoch"] for r in reports] == [1, 2] and "trial_result" in reports[-1][0]
    assert {"prosodic_val_ua", "prosodic_test_ua", "linguistic_val_ua", "linguistic_test_ua"} <= set(fold.teacher)
    assert "teacher_linguistic_test_ua" in reports[-1][0]
    assert all(0.0 <= v <= 1.0 for k, v in fold.teacher.items())
    assert {k[len("loss_"):] for k in result.metrics if k.startswith("loss_")} == TERMS
    assert all(math.isfinite(v) for v in result.metrics.values())
    assert fold.best_epoch in (1, 2) and fold.best["val_ua"] == max(r["val_ua"] for r in fold.epochs)
    # the saved student: standalone (safetensors + config), the predictions beside it are its own
    best = tmp_path / "run" / "seed_0" / "fold_1" / "best"
    assert fold.student_dir == str(best)
    assert {"model.safetensors", "classifier.json", "pldistill_config.json", "test_predictions.parquet"} <= {
        p.name for p in best.iterdir()}
    assert json.loads((best / "pldistill_config.json").read_text())["epoch"] == fold.best_epoch
    import pyarrow.parquet as pq

    preds = pq.read_table(best / "test_predictions.parquet").to_pylist()
    assert classification_metrics([p["label"] for p in preds], [p["pred"] for p in preds])["ua"] == \
        pytest.approx(fold.best["test_ua"])
    from pldistill.train.loop import predictions_hash  # the run's row names exactly these predictions

    assert fold.predictions_sha256 == predictions_hash([(p["key"], p["label"], p["scores"], p["lexical"]) for p in preds])
    student = load_classifier_student(best)
    from pldistill.data import load_audio, load_fold
    from pldistill.train.dataset import manifests_dir

    root, audio_root = manifests_dir(cfg)
    split = load_fold(root, "synthetic", 1, audio_root=audio_root)
    clips = {c.key: c for c in split.test}
    first = preds[:4]
    waves = [torch.from_numpy(load_audio(clips[p["key"]])) for p in first]
    n = max(len(w) for w in waves)
    x = torch.stack([torch.nn.functional.pad(w, (0, n - len(w))) for w in waves])
    mask = torch.arange(n)[None] < torch.tensor([len(w) for w in waves])[:, None]
    with torch.no_grad():
        scores = torch.log_softmax(student(x, mask).logits, -1)
    assert torch.allclose(scores, torch.tensor([p["scores"] for p in first]), atol=1e-4)
    # resume after epoch 1 (another output folder): the same epoch 2 and the same result
    resumed = run_trial(prepare_trial(cfg.model_copy(update={"output_dir": tmp_path / "resumed"})), resume=kept[0])
    assert _figures(resumed.folds[0].epochs) == _figures(fold.epochs)
    assert resumed.metrics == result.metrics and resumed.restarts == 1


def test_whisper_encoder_is_the_teachers_shared_one(tmp_path, tiny_cache):
    """The default encoder: the audio teacher's (frozen) Whisper-style encoder on log-mels. The teacher
    is used untrained here (no fine-tune): the test is about the wiring, not the score."""
    cfg = _cfg(tmp_path / "run", tiny_cache, encoder="whisper", model={"teacher_finetune": {"enabled": False}},
               epochs=1, max_steps_per_epoch=2)
    fold = run_trial(prepare_trial(cfg)).folds[0]
    assert math.isfinite(fold.best["loss_total"]) and "test_ua" in fold.best
    student = load_classifier_student(tmp_path / "run" / "seed_0" / "fold_1" / "best")
    assert student.encoder.kind == "whisper" and not any(p.requires_grad for p in student.encoder.parameters())


def test_corpus_without_transcripts_is_one_line_naming_the_dataset(tmp_path, tiny_cache):
    from pldistill.data import ensure_synthetic

    synth = _cfg(tmp_path, tiny_cache).data
    root = ensure_synthetic(synth, tiny_cache)
    bare = tmp_path / "bare" / "synthetic"
    shutil.copytree(root / "synthetic", bare)
    for path in bare.rglob("*.jsonl"):  # real EmoBox manifests carry no transcript
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "transcript"}) + "\n" for r in lines))
    cfg = _cfg(tmp_path / "run", tiny_cache, data={"source": "emobox", "manifests": str(tmp_path / "bare"),
                                                   "audio_root": str(root), "dataset": "synthetic", "folds": [1]})
    with pytest.raises(InputError) as err:
        run_trial(prepare_trial(cfg))
    text = str(err.value)
    assert "\n" not in text and "'synthetic'" in text and "transcripts" in text


def _rank(rank: int, world: int, port: int, cfg_json: str, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = run_trial(prepare_trial(TrialConfig.model_validate_json(cfg_json)))
        if rank == 0:
            with open(out, "w") as fh:
                json.dump({"world": result.world_size, "metrics": result.metrics,
                           "student_dir": result.folds[0].student_dir}, fh)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_ranks_train_a_single_teacher_ablation(tmp_path, tiny_cache):
    """DDP over 2 gloo ranks, w_p = 0: the dropped teacher's map gets no gradient, which DDP must allow."""
    import socket

    import torch.multiprocessing as mp

    cfg = _cfg(tmp_path / "run", tiny_cache, grad_accum=2, max_steps_per_epoch=1, num_threads=1)
    cfg = cfg.model_copy(update={"hparams": cfg.hparams.model_copy(update={"w_p": 0.0})})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(2, port, cfg.to_json(), str(tmp_path / "out.json")), nprocs=2, join=True)
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["world"] == 2 and math.isfinite(got["metrics"]["loss_total"])
    assert load_classifier_student(got["student_dir"]).num_labels == 4


def test_labelled_fraction_trains_the_teachers_on_labelled_clips_and_the_student_on_all(tmp_path, tiny_cache,
                                                                                        monkeypatch):
    """data.labelled_fraction: both teachers train on the labelled clips (an unlabelled clip's label
    is in no index set, and a placeholder), the student's epoch covers every clip."""
    from pldistill.train import classifier_trial
    from pldistill.train.dataset import prepare_fold

    seen = {}
    for kind in ("prosodic", "linguistic"):
        real = getattr(classifier_trial, f"ensure_{kind}_teacher")

        def spy(*args, _real=real, _kind=kind, **kwargs):
            seen[_kind] = args[1]  # the FoldClips
            return _real(*args, **kwargs)

        monkeypatch.setattr(classifier_trial, f"ensure_{kind}_teacher", spy)
    data_cfg = {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS,
                "labelled_fraction": 0.5}
    cfg = _cfg(tmp_path / "run", tiny_cache, data=data_cfg, epochs=1, max_steps_per_epoch=None)
    data = prepare_fold(cfg, 1)
    assert data.unlabelled
    trained, shares, real_batch = [], set(), classifier_trial._batch

    def batch_spy(r, examples):
        if r.trainee.training:
            trained.extend(examples)
            shares.add(r.objective.options.ce_share)
        return real_batch(r, examples)

    monkeypatch.setattr(classifier_trial, "_batch", batch_spy)
    fold = run_trial(prepare_trial(cfg)).folds[0]
    for clips in seen.values():
        assert len(clips.train) == len(data.train)
        n_train, n_unl = len(data.train), len(data.unlabelled)
        assert clips.labels[n_train:n_train + n_unl].tolist() == [0] * n_unl
        assert [int(clips.labels[i]) for i in clips.train] == [ex.label for ex in data.train]
    assert set(seen) == {"prosodic", "linguistic"}
    # one epoch over every clip, the unlabelled ones marked so
    assert sorted(ex.key for ex in trained) == sorted(ex.key for ex in data.train + data.unlabelled)
    assert {ex.key for ex in trained if not ex.labelled} == {ex.key for ex in data.unlabelled}
    assert math.isfinite(fold.best["loss_class_ce"])
    # the CE sums the labelled clips over their expected number (ce_divisor: expected_labelled)
    assert len(shares) == 1 and shares.pop() == pytest.approx(len(data.train) / (len(data.train) + len(data.unlabelled)))


@pytest.mark.parametrize("pool", [None, False])
def test_teachers_train_on_the_teacher_pool_as_the_audio_teacher_does(tmp_path, tiny_cache, monkeypatch, pool):
    """EmoDistill's teachers train on the fold's labelled clips and the teacher pool (pool: None follows
    the audio-LM teacher, fine-tuned on both), pool rows after the fold's; pool: false gives the rows,
    and so the cache keys, of before the pool was read."""
    import numpy as np

    from pldistill.train import classifier_trial
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.emodistill_teachers import FoldClips
    from pldistill.train.emodistill_teachers.prosodic import ProsodicSettings, prosodic_key

    seen = {}
    monkeypatch.setattr(classifier_trial, "ensure_linguistic_teacher",
                        lambda texts, clips, *a, **k: seen.update(texts=texts, clips=clips))
    monkeypatch.setattr(classifier_trial, "ensure_prosodic_teacher",
                        lambda feats, clips, *a, **k: seen.update(feats=feats, prosodic_clips=clips))
    data_cfg = {"source": "synthetic", "dataset": "synthetic", "folds": [1],
                "synth": {"speakers": 4, "teacher_speakers": 1, "per_class": 2, "folds": 2}}
    cfg = _cfg(tmp_path / "run", tiny_cache, data=data_cfg, model={"emodistill_teachers": {"epochs": 1, "pool": pool}})
    data = prepare_fold(cfg, 1)
    fold = data.train + data.unlabelled + data.val + data.test
    n, n_train = len(fold), len(data.train)
    assert data.teacher_pool and cfg.model.finetunes_teacher
    classifier_trial.fold_teachers(cfg, data)
    clips = seen["clips"]
    assert seen["prosodic_clips"] is clips and len(seen["texts"]) == clips.size == len(seen["feats"])
    labels = {lab: i for i, lab in enumerate(data.labels)}
    if pool is None:
        m = len(data.teacher_pool)
        assert clips.size == n + m and clips.train.tolist() == [*range(n_train), *range(n, n + m)]
        assert clips.labels[n:].tolist() == [labels[c.label] for c in data.teacher_pool]
        assert seen["texts"][n:] == [c.transcript for c in data.teacher_pool]
        from pldistill.data import compute_egemaps

        pool_rows = compute_egemaps(data.teacher_pool, cfg.cache_dir / "features").values
        np.testing.assert_array_equal(seen["feats"][n:], pool_rows)
        return
    before = FoldClips(dataset=data.dataset, fold=1, labels=np.array([ex.label if ex.labelled else 0 for ex in fold]),
                       num_classes=len(data.labels), train=np.arange(n_train),
                       val=np.arange(n_train, n_train + len(data.val)), test=np.arange(n_train + len(data.val), n))
    assert clips.size == n and prosodic_key(seen["feats"], clips, 0, ProsodicSettings()) == \
        prosodic_key(seen["feats"], before, 0, ProsodicSettings())
