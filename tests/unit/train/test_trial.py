"""One trial end to end on the synthetic corpus with the tiny models (no Ray).

Why the above-chance margin is stable: the run is deterministic on CPU for a fixed seed and thread
count (a test below checks it), the tiny teacher reaches test UA 0.81-0.88 on this fold; the assertion
asks for 0.5 (4 classes, chance 0.25), so only a real regression (a student that does not learn,
scoring that ignores audio) crosses it. The trial trains 5 epochs (the paper's length): at 3, the
same code and seed gave 0.79-0.85 with 2 torch threads but 0.44 (sft) and 0.42 (pl_distill) with the
one thread a test gets under `-n 2` (2026-12-07, from f6fdb55 on), so short training is not stable
across thread counts; see the issue "A sweep survives, second round" on reproducibility.
"""

from __future__ import annotations

import math

import pytest
import torch
from _corpus import SMALL_CORPUS

from pldistill.config import TrialConfig
from pldistill.prepare import prepare_trial
from pldistill.train.trial import run_trial

CHANCE = 0.25


def _cfg(tmp_path, cache: str, objective: str, **train) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "train": {"epochs": 3, "batch_size": 8, "grad_accum": 1, "num_threads": 2, **train},
        "hparams": {"objective": objective},
        "output_dir": str(tmp_path / "run"), "cache_dir": cache,
    })


@pytest.mark.parametrize("objective", ["sft", "pl_distill"])
def test_short_trial_learns_emotion_well_above_chance(tmp_path, tiny_cache, objective):
    cfg = _cfg(tmp_path, tiny_cache, objective, epochs=5)
    reports = []
    result = run_trial(prepare_trial(cfg), report=lambda m, row, ckpt: reports.append((m, row, ckpt)))
    fold = result.folds[0]
    assert fold.teacher["test_ua"] > CHANCE + 0.25, "the fine-tuned tiny teacher should know the task"
    assert result.metrics["test_ua"] >= 0.5, result.metrics
    assert all(math.isfinite(v) for v in result.metrics.values())
    # one report per epoch; the last carries the whole result; the best student is saved
    assert [r[1]["epoch"] for r in reports] == [1, 2, 3, 4, 5]
    assert "trial_result" in reports[-1][0] and "trial_result" not in reports[0][0]
    best = tmp_path / "run" / "seed_0" / "fold_1" / "best"
    assert (best / "adapter_model.safetensors").is_file() and (best / "pldistill_config.json").is_file()
    # the best epoch's test predictions lie beside it, and are what its test figures were computed from
    import pyarrow.parquet as pq

    from pldistill.train.metrics import classification_metrics

    preds = pq.read_table(best / "test_predictions.parquet").to_pylist()
    assert classification_metrics([p["label"] for p in preds], [p["pred"] for p in preds])["ua"] == \
        pytest.approx(fold.best["test_ua"])
    assert all(p["pred"] == max(range(len(p["scores"])), key=p["scores"].__getitem__) for p in preds)
    from pldistill.train.loop import predictions_hash  # the run's row names exactly these predictions

    assert fold.predictions_sha256 == predictions_hash([(p["key"], p["label"], p["scores"], p["lexical"]) for p in preds])
    # the spoken corpus marks conflict clips: their UA is a figure of every run, from the same predictions
    conflict = [p for p in preds if p["lexical"] == "conflict"]
    assert conflict and fold.best["test_conflict_ua"] == pytest.approx(classification_metrics(
        [p["label"] for p in conflict], [p["pred"] for p in conflict])["ua"])
    terms = {k for k in result.metrics if k.startswith("loss_")}
    expected = {"loss_total", "loss_ce"} | ({"loss_cka", "loss_kl_audio", "loss_kl_response"}
                                            if objective == "pl_distill" else set())
    assert terms == expected


def test_val_loss_is_the_gold_answers_ce_and_selects_the_lowest_epoch(tmp_path, tiny_cache):
    stale = tmp_path / "run" / ".checkpoints" / "epoch-left-by-a-killed-worker"
    stale.mkdir(parents=True)
    cfg = _cfg(tmp_path, tiny_cache, "sft", epochs=3, select_metric="val_loss")
    seen = []

    def report(m, row, ckpt):
        seen.append(ckpt)
        assert ckpt.parent == tmp_path / "run" / ".checkpoints" and (ckpt / "trainer_state.json").is_file()

    result = run_trial(prepare_trial(cfg), report=report)
    fold = result.folds[0]
    losses = [row["val_loss"] for row in fold.epochs]
    assert all(math.isfinite(v) and v > 0 for v in losses) and len(set(losses)) == 3
    assert fold.best_epoch == 1 + losses.index(min(losses))
    assert fold.best["val_loss"] == min(losses) and "test_loss" in fold.best
    assert not stale.exists() and not any(p.exists() for p in seen)  # cleared at start, removed after use


def test_trial_is_deterministic_for_a_seed(tmp_path, tiny_cache):
    a = run_trial(prepare_trial(_cfg(tmp_path / "a", tiny_cache, "pl_distill", epochs=1)))
    b = run_trial(prepare_trial(_cfg(tmp_path / "b", tiny_cache, "pl_distill", epochs=1)))
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("wall_s", "samples_per_s")} for r in rows]  # noqa: E731
    assert strip(a.folds[0].epochs) == strip(b.folds[0].epochs)


def test_non_finite_loss_fails_the_trial_with_its_reason(tmp_path, tiny_cache):
    cfg = _cfg(tmp_path, tiny_cache, "pl_distill", epochs=1)
    cfg.hparams.lr = 1e30  # diverges in the first steps
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        run_trial(prepare_trial(cfg))


def test_several_folds_report_their_mean_and_keep_each_fold(tmp_path, tiny_cache):
    cfg = _cfg(tmp_path, tiny_cache, "sft", epochs=1)
    cfg.data.folds = [1, 2]
    reports = []
    result = run_trial(prepare_trial(cfg), report=lambda m, row, ckpt: reports.append(m))
    assert [f.fold for f in result.folds] == [1, 2]
    for key in ("val_ua", "test_ua", "loss_ce"):
        assert result.metrics[key] == pytest.approx((result.folds[0].best[key] + result.folds[1].best[key]) / 2)
    # each fold has its own fine-tuned teacher, scored on its own splits
    assert result.folds[0].teacher != result.folds[1].teacher
    # what Tune sees after fold 1 is fold 1's best; after fold 2, the mean; only the last report carries the result
    assert reports[0]["val_ua"] == pytest.approx(result.folds[0].best["val_ua"])
    assert reports[-1]["val_ua"] == pytest.approx(result.metrics["val_ua"])
    assert ["trial_result" in r for r in reports] == [False, True]
    assert (tmp_path / "run" / "seed_0" / "fold_2" / "best" / "adapter_model.safetensors").is_file()


def test_testing_only_the_best_epoch_reloads_the_saved_student_exactly(tmp_path, tiny_cache):
    """Same seed, two modes: test every epoch, or test once with the best student reloaded from disk
    (LoRA adapter + projector). Training is deterministic, so the reloaded student's test scores must
    equal the per-epoch test scores at the best epoch, which checks that saving and loading are exact."""
    every = run_trial(prepare_trial(_cfg(tmp_path / "every", tiny_cache, "sft", epochs=2))).folds[0]
    once = run_trial(prepare_trial(_cfg(tmp_path / "once", tiny_cache, "sft", epochs=2, eval_test_each_epoch=False))).folds[0]
    assert once.best_epoch == every.best_epoch
    assert all("test_ua" not in row for row in once.epochs)
    for key in ("test_ua", "test_wa", "test_f1"):
        assert once.best[key] == every.epochs[every.best_epoch - 1][key]


@pytest.mark.parametrize("mode", ["online", "cached"])
def test_bfloat16_teacher_trains_a_float32_student(tmp_path, tiny_cache, mode):
    """``model.dtype: bfloat16`` (the real sweeps' setting) loads the teacher in bfloat16 while the
    student stays float32: its projector takes the bf16 encoder output (online) or the fp32 cache."""
    cfg = TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "model": {"teacher_mode": mode, "dtype": "bfloat16"},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 2, "max_steps_per_epoch": 2},
        "hparams": {"objective": "pl_distill"}, "output_dir": str(tmp_path / "run"), "cache_dir": tiny_cache})
    result = run_trial(prepare_trial(cfg))
    assert all(math.isfinite(v) for v in result.metrics.values()), result.metrics
    assert result.metrics["loss_kl_audio"] > 0 and result.metrics["loss_cka"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (none on the CI machines)")
def test_trial_on_the_gpu_matches_the_cpu(tmp_path, tiny_cache, monkeypatch):
    """Models, batches and the cache reader follow the trial's device: the same short trial on the
    GPU and on the CPU gives the same figures (fp32, no TF32)."""
    import pldistill.train.trial as trial_mod

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    kwargs = dict(epochs=1, max_steps_per_epoch=3)
    gpu = run_trial(prepare_trial(_cfg(tmp_path / "gpu", tiny_cache, "pl_distill", **kwargs)))
    monkeypatch.setattr(trial_mod, "compute_device", lambda: torch.device("cpu"))
    cpu = run_trial(prepare_trial(_cfg(tmp_path / "cpu", tiny_cache, "pl_distill", **kwargs)))
    assert gpu.metrics.keys() == cpu.metrics.keys()
    for key, value in cpu.metrics.items():
        assert gpu.metrics[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key


def test_seeds_are_replicates_each_run_kept_and_averaged(tmp_path, tiny_cache):
    """Every fold runs once per seed; the seeds differ (init, data order), the teacher does not; the
    trial's figures are the means over the (seed, fold) runs."""
    cfg = _cfg(tmp_path, tiny_cache, "sft", epochs=1, seeds=[0, 7])
    rows = []
    result = run_trial(prepare_trial(cfg), report=lambda m, row, ckpt: rows.append(row))
    assert [(f.seed, f.fold) for f in result.folds] == [(0, 1), (7, 1)]
    assert [(r["seed"], r["fold"]) for r in rows] == [(0, 1), (7, 1)]
    a, b = result.folds
    assert a.teacher == b.teacher and a.epochs[0]["train_loss_total"] != b.epochs[0]["train_loss_total"]
    assert result.metrics["val_loss"] == pytest.approx((a.best["val_loss"] + b.best["val_loss"]) / 2)
    assert (tmp_path / "run" / "seed_7" / "fold_1" / "best" / "adapter_model.safetensors").is_file()
    single = run_trial(prepare_trial(_cfg(tmp_path / "one", tiny_cache, "sft", epochs=1, seeds=[7])))
    assert single.folds[0].epochs[0]["train_loss_total"] == b.epochs[0]["train_loss_total"]


def test_a_teacher_can_be_scored_by_its_free_answers(tmp_path, tiny_cache, monkeypatch):
    """teacher_eval: generate runs the teacher's own greedy generation (really, on two clips) and
    matches each answer to a label; with answers we dictate, the figures are exact."""
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.metrics import classification_metrics
    from pldistill.train.teacher import ensure_teacher, generated_metrics

    cfg = _cfg(tmp_path, tiny_cache, "sft")
    data = prepare_fold(cfg, 1)
    teacher, _ = ensure_teacher(cfg, data)
    real = generated_metrics(teacher, data.test[:2], data.labels, max_new_tokens=3)
    assert set(real) == {"ua", "wa", "f1"} and 0.0 <= real["ua"] <= 1.0
    clips = data.test[:6]
    answers = iter([f"It is {data.labels[ex.label]}." if i % 2 == 0 else "no idea" for i, ex in enumerate(clips)])

    def dictated(input_ids, **_):
        said = teacher.tokenizer(next(answers), return_tensors="pt").input_ids
        return torch.cat([input_ids, said], dim=1)

    monkeypatch.setattr(teacher.model, "generate", dictated)
    got = generated_metrics(teacher, clips, data.labels)
    expected = classification_metrics([ex.label for ex in clips],
                                      [ex.label if i % 2 == 0 else len(data.labels) for i, ex in enumerate(clips)])
    assert got == expected


@pytest.mark.parametrize("pseudo_target", ["label", "metadata"])
def test_caad_trial_online_and_cached_give_the_same_figures(tmp_path, tiny_cache, pseudo_target):
    """CAAD end to end: the online trial runs the teacher's text-only path in every step, the cached
    one reads its hidden states from the teacher cache; same losses and scores (fp32). ``metadata``:
    both forced on the answer composed from each clip's audio (its own cache)."""
    results = {}
    for mode in ("online", "cached"):
        cfg = TrialConfig.model_validate({
            "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
            "model": {"teacher_mode": mode},
            "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 2, "max_steps_per_epoch": 2},
            "hparams": {"objective": "caad", "caad_contrast": 1.5, "beta": 0.0, "pseudo_target": pseudo_target},
            "output_dir": str(tmp_path / mode), "cache_dir": tiny_cache})
        results[mode] = run_trial(prepare_trial(cfg)).metrics
    online, cached = results["online"], results["cached"]
    assert {k for k in online if k.startswith("loss_")} == {"loss_total", "loss_ce", "loss_kl_response_cd",
                                                            "loss_kl_audio"}
    assert online["loss_kl_response_cd"] > 0
    assert online.keys() == cached.keys()
    for key, value in online.items():
        assert cached[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_metadata_pseudo_targets_of_the_spoken_corpus(tiny_cache):
    """``pseudo_target: metadata`` on real audio: every clip's gold word, then its pitch, loudness and
    rate; the training clips spread over the three terciles of each; the same texts a second time."""
    from pldistill.data.pseudo_target import PROSODY_DESCRIPTORS
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.pseudo_target import fold_pseudo_targets

    cfg = TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1], "synth": SMALL_CORPUS},
        "hparams": {"objective": "caad", "pseudo_target": "metadata"}, "cache_dir": tiny_cache})
    data = prepare_fold(cfg, 1)
    targets = fold_pseudo_targets(cfg, data)
    examples = data.train + data.val + data.test
    assert targets is not None and set(targets) == {ex.key for ex in examples}
    for ex in examples:
        word, *described = targets[ex.key].split(", ")
        assert word == data.labels[ex.label] and len(described) == 3
        assert all(w in d.words for w, d in zip(described, PROSODY_DESCRIPTORS))
    for j, d in enumerate(PROSODY_DESCRIPTORS):
        counts = [sum(targets[ex.key].split(", ")[1 + j] == w for ex in data.train) for w in d.words]
        assert min(counts) >= len(data.train) // 5, (d.name, counts)
    assert fold_pseudo_targets(cfg, data) == targets
    label = cfg.model_copy(update={"hparams": cfg.hparams.model_copy(update={"pseudo_target": "label"})})
    assert fold_pseudo_targets(label, data) is None
