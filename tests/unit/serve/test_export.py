"""Export: a trial's student becomes a folder that transformers loads alone and that predicts as the trial."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pldistill.cli._app import run_app
from pldistill.errors import InputError

SWEEP, TRIAL = "toy", "t_best"  # as recorded by the toy_sweep fixture (conftest.py)

#: Runs in a fresh interpreter: transformers (and peft for an adapter) only, never pldistill.
_STANDALONE = r'''
import json, sys
import soundfile as sf, torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

folder, paths = sys.argv[1], sys.argv[2:]
meta = json.load(open(f"{folder}/pldistill_labels.json"))
model = Qwen2AudioForConditionalGeneration.from_pretrained(folder).eval()
if meta["adapter"]:
    from peft import PeftModel
    model = PeftModel.from_pretrained(model, f"{folder}/{meta['adapter']}").eval()
processor = AutoProcessor.from_pretrained(folder)
out = {}
for path in paths:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == meta["sample_rate"], rate
    scores = []
    for label in meta["labels"]:  # closed-set: log-likelihood of each label's answer after the prompt
        answer = label + meta["end_of_response"]
        n = len(processor.tokenizer(answer, add_special_tokens=False)["input_ids"])
        enc = processor(text=meta["prompt"] + answer, audio=audio, sampling_rate=rate, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0, -n - 1:-1, :meta["vocab"]].float()
        scores.append(logits.log_softmax(-1).gather(-1, enc["input_ids"][0, -n:, None]).sum().item())
    out[path] = scores
print(json.dumps({"scores": out, "pldistill_modules": sorted(m for m in sys.modules if m.startswith("pldistill"))}))
'''


def _standalone_scores(folder: Path, paths: list[Path], tmp_path: Path) -> dict[str, list[float]]:
    script = tmp_path / "standalone.py"
    script.write_text(_STANDALONE)
    proc = subprocess.run([sys.executable, str(script), str(folder), *map(str, paths)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                                     "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["pldistill_modules"] == [], "the standalone load must not import pldistill"
    return out["scores"]


def test_merged_export_holds_weights_processor_labels_and_card(merged_export, trial_student):
    names = {p.name for p in merged_export.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
            "pldistill_labels.json", "README.md"} <= names
    assert "adapter" not in names and not any(n.startswith(".") for n in names)
    config = json.loads((merged_export / "config.json").read_text())
    meta = json.loads((merged_export / "pldistill_labels.json").read_text())
    assert config["architectures"] == ["Qwen2AudioForConditionalGeneration"]
    assert config["text_config"]["hidden_size"] == 48  # the tiny student LLM, not the teacher's 96
    assert config["audio_config"]["max_source_positions"] == int(meta["window_s"] * 50)
    assert meta["labels"] == ["Neutral", "Happy", "Angry", "Sad"] and meta["family"] == "audio_lm"
    assert meta["source"] == {"sweep": SWEEP, "trial": TRIAL, "fold": 1, "epoch": trial_student.epoch}
    card = (merged_export / "README.md").read_text()
    for text in (SWEEP, TRIAL, "`sft`", "lora_rank=4", "folds [1]", "cropped to its first", "test_ua",
                 f"{trial_student.row['test_ua']:.4f}", "no confidence interval",
                 f"Exported with `pldistill-sweep export {SWEEP} merged --trial {TRIAL} --seed 0 --fold 1`"):
        assert text in card, text


@pytest.mark.parametrize("which", ["merged", "adapter"])
def test_export_writes_no_local_path(which, request, toy_sweep, tiny_cache):
    """The folder is meant to be shared: no file names the results, cache or temporary folders it came from."""
    folder = request.getfixturevalue(f"{which}_export")
    local = {str(toy_sweep), str(tiny_cache), str(Path(tiny_cache).resolve()), "/tmp/"}
    for path in folder.rglob("*"):
        if path.suffix in (".json", ".md", ".txt", ".jinja"):
            text = path.read_text()
            assert not [p for p in local if p in text], (path.name, [p for p in local if p in text])


def test_adapter_export_keeps_lora_apart(adapter_export):
    assert (adapter_export / "adapter" / "adapter_config.json").is_file()
    assert (adapter_export / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((adapter_export / "pldistill_labels.json").read_text())["adapter"] == "adapter"
    assert "PeftModel.from_pretrained" in (adapter_export / "README.md").read_text()


def test_reference_scoring_reproduces_the_trials_recorded_test_figures(reference, trial_student):
    """The recorded predictions are the ones behind the recorded figures, and the saved student,
    rebuilt as the trial builds it, scores its test fold as the trial recorded."""
    from pldistill.serve.audio_lm import trial_predictions
    from pldistill.train.metrics import classification_metrics

    got = classification_metrics(reference.truth, reference.scores.argmax(-1).tolist())
    for name in ("ua", "wa", "f1"):
        assert got[name] == pytest.approx(trial_student.fold_figures[f"test_{name}"], abs=1e-12), name
    rescored = trial_predictions(trial_student)
    assert rescored.keys == reference.keys and rescored.truth == reference.truth
    np.testing.assert_allclose(rescored.scores, reference.scores, atol=1e-4)


@pytest.mark.parametrize("which", ["merged", "adapter"])
def test_loads_with_transformers_alone_and_predicts_as_the_trial(which, request, reference, test_clips, tmp_path):
    folder = request.getfixturevalue(f"{which}_export")
    wavs = {c.key: c.wav for c in test_clips}
    scores = _standalone_scores(folder, [wavs[k] for k in reference.keys], tmp_path)
    got = np.array([scores[str(wavs[k])] for k in reference.keys])
    from pldistill.serve.audio_lm import prediction_mismatches

    predicted = {k: reference.labels[i] for k, i in zip(reference.keys, got.argmax(-1))}
    assert prediction_mismatches(reference, predicted) == []
    np.testing.assert_allclose(got, reference.scores, atol=1e-3)


def test_exported_model_in_process_equals_the_trial(merged_export, reference, test_clips):
    from pldistill.data.audio import load_audio
    from pldistill.serve import load_exported

    model = load_exported(merged_export)
    clips = {c.key: c for c in test_clips}
    scores = model.score([load_audio(clips[k]) for k in reference.keys])
    np.testing.assert_allclose(scores, reference.scores, atol=1e-4)


def test_refuses_a_non_empty_folder_without_force(toy_sweep, tmp_path):
    from pldistill.serve import export_student

    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty.*--force"):
        export_student(toy_sweep, SWEEP, out)
    assert (out / "notes.txt").read_text() == "mine"
    export_student(toy_sweep, SWEEP, out, force=True)
    assert not (out / "notes.txt").exists() and (out / "model.safetensors").is_file()


def test_a_failure_midway_leaves_no_folder(toy_sweep, tmp_path, monkeypatch):
    import pldistill.serve.card as card
    from pldistill.serve import export_student

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(card, "model_card", broken)  # after the weights are written
    with pytest.raises(RuntimeError, match="disk full"):
        export_student(toy_sweep, SWEEP, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_best_and_its_errors(toy_sweep, tmp_path, capsys):
    out = tmp_path / "cli"
    assert run_app(["export", SWEEP, str(out), "--best", "--results", str(toy_sweep)]) == 0
    assert f"{SWEEP}/{TRIAL} seed 0 fold 1" in capsys.readouterr().out and (out / "config.json").is_file()
    assert run_app(["export", SWEEP, str(out), "--results", str(toy_sweep)]) == 2
    assert "not empty" in capsys.readouterr().err
    cases = [(["nosuch", str(tmp_path / "a")], "unknown sweep 'nosuch'"),
             ([SWEEP, str(tmp_path / "b"), "--trial", "t_none"], f"unknown trial 't_none'; the sweep has: {TRIAL}"),
             ([SWEEP, str(tmp_path / "c"), "--fold", "3"], "fold: trial t_best has no run with fold 3; it ran: seed 0 fold 1"),
             ([SWEEP, str(tmp_path / "d"), "--trial", TRIAL, "--best"], "not both")]
    for args, message in cases:
        assert run_app(["export", *args, "--results", str(toy_sweep)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_run_intervals_are_t_intervals_over_the_trials_seed_fold_runs():
    from scipy import stats

    from pldistill.serve import run_intervals

    runs = [{"seed": 0, "fold": 1, "test_ua": 0.60}, {"seed": 1, "fold": 1, "test_ua": 0.70},
            {"seed": 2, "fold": 1, "test_ua": 0.65}]
    mean, low, high, n = run_intervals({"fold_metrics": runs})["test_ua"]
    values = np.array([0.60, 0.70, 0.65])
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
    assert n == 3 and mean == pytest.approx(0.65)
    assert (low, high) == pytest.approx((0.65 - half, 0.65 + half))
    assert run_intervals({"fold_metrics": runs[:1]}) == {}  # run once: no interval


@pytest.mark.parametrize("which", ["merged", "adapter"])
def test_the_cards_code_predicts_as_the_trial(which, request, reference, test_clips, tmp_path):
    """The card's "Use" snippet, run as written (folder and clip filled in) in a fresh interpreter."""
    folder = request.getfixturevalue(f"{which}_export")
    card = (folder / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    clip = test_clips[0]
    script = tmp_path / "card.py"
    assert "OUT_DIR" not in card and f'from_pretrained("{folder.name}")' in card  # the folder's own name
    script.write_text(code.replace("clip.wav", str(clip.wav))
                      + "\nimport sys; assert not [m for m in sys.modules if m.startswith('pldistill')]\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=folder.parent,  # run beside the folder, as its name in the code says
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    predicted = proc.stdout.strip().splitlines()[-1].split(" ", 1)[0]
    assert predicted == reference.by_key()[clip.key]


def test_the_card_reports_seed_intervals_when_the_sweep_has_them():
    from pldistill.config import TrialConfig
    from pldistill.serve import TrialStudent
    from pldistill.serve.card import model_card

    src = TrialStudent(sweep="s", trial_id="t", seed=0, fold=2, epoch=3, best_dir=Path("x"), config=TrialConfig(),
                       row={"status": "completed", "test_ua": 0.65, "fold_metrics": [{"fold": 2, "test_ua": 0.61}]},
                       intervals={"test_ua": (0.65, 0.6, 0.7, 3)})
    meta = {"labels": ["A", "B"], "prompt": "p", "window_s": 4.0, "vocab": 10}
    card = model_card(src, meta, adapter=False)
    assert "| test_ua | 0.6100 | 0.6500 | n/a | 0.6500 [0.6000, 0.7000] (3) |" in card
    assert "| val_ua | n/a | n/a | n/a | n/a |" in card and "no confidence interval" not in card
