"""The model card (README.md) of an exported student: where it came from and how well it did."""

from __future__ import annotations

import math
from typing import Any

from pldistill.results.protocol import describe, paper_differences
from pldistill.serve.source import FIGURES, TrialStudent

__all__ = ["model_card"]


#: Closed-set prediction with transformers alone (what tests/unit/serve/test_export.py runs).
_USE = """import json, soundfile as sf, torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration
model = Qwen2AudioForConditionalGeneration.from_pretrained("OUT_DIR").eval()
{load}processor = AutoProcessor.from_pretrained("OUT_DIR")
meta = json.load(open("OUT_DIR/pldistill_labels.json"))  # labels, prompt, window, vocabulary
audio, rate = sf.read("clip.wav", dtype="float32")  # 16 kHz mono
scores = {}
for label in meta["labels"]:  # each label's answer scored by its log-likelihood after the prompt
    answer = label + meta["end_of_response"]
    n = len(processor.tokenizer(answer, add_special_tokens=False)["input_ids"])
    inputs = processor(text=meta["prompt"] + answer, audio=audio, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        logp = model(**inputs).logits[0, -n - 1:-1, :meta["vocab"]].log_softmax(-1)
    scores[label] = logp.gather(-1, inputs["input_ids"][0, -n:, None]).sum().item()
print(max(scores, key=scores.get), scores)"""


def _num(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return "n/a" if value is None else str(value)


def _figures(src: TrialStudent) -> list[str]:
    fold = src.fold_figures
    row = src.row
    lines = ["| figure | this run (best epoch) | trial (mean over runs) | teacher (mean over folds) |"
             + (" runs (seed, fold): mean [95% CI] (n) |" if src.intervals else ""),
             "| --- | --- | --- | --- |" + (" --- |" if src.intervals else "")]
    for name in FIGURES:
        cells = [name, _num(fold.get(name)), _num(row.get(name)), _num(row.get(f"teacher_{name}"))]
        if src.intervals:
            ci = src.intervals.get(name)
            cells.append(f"{ci[0]:.4f} [{ci[1]:.4f}, {ci[2]:.4f}] ({ci[3]})" if ci else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    if not src.intervals:
        lines.append("\nThe trial ran once (one seed, one fold): no confidence interval.")
    return lines


def _protocol(src: TrialStudent) -> list[str]:
    """What the student was trained under (its trial's resolved config, as every report shows it), and
    where that differs from the PL-Distill paper's section 3.1."""
    diffs = paper_differences([src.config]) or ["none"]
    return ["## Protocol", "", *(f"- {k}: {v}" for k, v in describe(src.config).items()), "",
            "Differences from the PL-Distill paper's setup (section 3.1):", "", *(f"- {d}" for d in diffs)]


def export_command(src: TrialStudent, folder: str, *, adapter: bool) -> str:
    """The ``pldistill-sweep export`` command that writes this folder again (results folder aside: a
    local path has no place in a shared folder)."""
    return (f"pldistill-sweep export {src.sweep} {folder} --trial {src.trial_id} --seed {src.seed} --fold {src.fold}"
            + (" --adapter" if adapter else ""))


def model_card(src: TrialStudent, meta: dict[str, Any], *, adapter: bool, folder: str = "OUT_DIR") -> str:
    """Markdown with a Hugging Face metadata header; ``meta`` is what export wrote to its labels file;
    ``folder``: the exported folder's name, as its code examples load it."""
    card = (_classifier_card(src, meta) if meta.get("family") == "classifier"
            else _audio_lm_card(src, meta, adapter=adapter))
    made = f"Exported with `{export_command(src, folder, adapter=adapter)}`.\n"
    return card.replace("OUT_DIR", folder) + made


def _audio_lm_card(src: TrialStudent, meta: dict[str, Any], *, adapter: bool) -> str:
    cfg = src.config
    hp = cfg.hparams.model_dump(mode="json")
    data = cfg.data
    where = "synthetic corpus (embedded default)" if data.source == "synthetic" else "EmoBox manifests"
    labels = ", ".join(meta["labels"])
    load = ("from peft import PeftModel\n"
            "model = PeftModel.from_pretrained(model, \"OUT_DIR/adapter\").eval()  # LoRA kept as an adapter\n"
            if adapter else "")
    lines = [
        "---", "library_name: transformers", "pipeline_tag: audio-classification",
        "tags: [speech-emotion-recognition, knowledge-distillation, qwen2-audio, pldistill]", "---", "",
        f"# {src.sweep} / {src.trial_id}: distilled speech-emotion student (seed {src.seed}, fold {src.fold})", "",
        f"A student of the pldistill sweep **{src.sweep}**, trial **{src.trial_id}**, seed {src.seed}, fold {src.fold}, "
        f"best epoch {src.epoch} (selected by {cfg.train.select_metric}); trial status "
        f"{src.row.get('status', 'unknown')}. The student shares the teacher's frozen audio encoder "
        f"(`{cfg.model.teacher}`), has its own projector and the student LLM `{cfg.model.student_llm}` with "
        + ("LoRA kept as an adapter in `adapter/`." if adapter else "LoRA merged into the language model."),
        "", "## Use", "",
        "```python", *_USE.replace("{load}", load).splitlines(), "```", "",
        "or `pldistill-sweep predict OUT_DIR clip.wav`. The prediction is closed-set: each label's answer "
        "(label tokens and `<|im_end|>`) is scored by its log-likelihood after the prompt below, over the "
        f"first {meta['vocab']} logit rows (the real vocabulary), and the most likely label wins.", "",
        f"- Labels: {labels}",
        f"- Prompt (one `<|AUDIO|>`, which the processor expands): `{meta['prompt']!r}`",
        f"- Audio: 16 kHz mono; the encoder window is {meta['window_s']:g} s, so longer audio is "
        f"**cropped to its first {meta['window_s']:g} s**, as training cropped it (no sliding windows).",
        "- Weights in float32" + (" (the teacher ran in bfloat16 during the sweep)" if cfg.model.dtype == "bfloat16"
                                   else "") + ".", "",
        "## Training", "",
        f"- Objective: `{hp['objective']}`; data: {where}, dataset `{data.dataset}`, folds {data.folds} "
        f"(this folder: fold {src.fold}), validation fraction {data.val_fraction} (seed {data.val_seed})"
        + (f"; gold labels read on {data.labelled_fraction:g} of the training clips (seed {data.labelled_seed}), "
           "the teacher's answers on the rest" if data.labelled_fraction < 1 else "") + ".",
        f"- Epochs {cfg.train.epochs}, batch {cfg.train.batch_size} x accumulation {cfg.train.grad_accum}, "
        f"seeds {src.row.get('seeds') or cfg.train.seeds}{_replicated(src.row)} (this folder: seed {src.seed}); "
        f"teacher mode {cfg.model.teacher_mode}.",
        "- Hyperparameters: " + ", ".join(f"{k}={v}" for k, v in sorted(hp.items())), "",
        *_protocol(src), "",
        "## Results (closed-set; UA = balanced accuracy, WA = accuracy, F1 = macro-F1)", "",
        *_figures(src), "",
        f"pldistill {src.row.get('pldistill_version') or 'unknown'}, commit {src.row.get('git_commit') or 'unknown'}.",
        "",
    ]
    return "\n".join(lines)


_USE_CLASSIFIER = """import json
from pathlib import Path
import soundfile as sf
from pldistill.serve.classifier import ExportedClassifier  # a plain PyTorch module: needs pldistill
model = ExportedClassifier(Path("OUT_DIR"), json.load(open("OUT_DIR/pldistill_labels.json")))
audio, rate = sf.read("clip.wav", dtype="float32")  # 16 kHz mono
scores = model.score([audio])[0]  # each label's log-probability
print(model.labels[scores.argmax()], dict(zip(model.labels, scores)))"""


def _classifier_card(src: TrialStudent, meta: dict[str, Any]) -> str:
    """The card of an EmoDistill classifier student (no LLM, no prompt: one logit per label)."""
    cfg = src.config
    hp = {k: v for k, v in cfg.hparams.model_dump(mode="json").items()
          if k in ("objective", "w_p", "w_l", "w_cos", "tau_p", "tau_l", "lr", "weight_decay", "warmup_ratio")}
    enc = cfg.model.classifier
    lines = [
        "---", "library_name: pytorch", "pipeline_tag: audio-classification",
        "tags: [speech-emotion-recognition, knowledge-distillation, emodistill, pldistill]", "---", "",
        f"# {src.sweep} / {src.trial_id}: EmoDistill speech-emotion classifier (seed {src.seed}, fold {src.fold})", "",
        f"A student of the pldistill sweep **{src.sweep}**, trial **{src.trial_id}**, best epoch {src.epoch} (selected "
        f"by {cfg.train.select_metric}). EmoDistill (arXiv 2309.04849): a `{meta['encoder']}` encoder"
        + (f" (`{enc.hubert}`)" if meta["encoder"] == "hubert" else f" (the audio teacher `{cfg.model.teacher}`'s)")
        + (", fine-tuned" if enc.finetune_encoder else ", frozen") + ", pooled over time, two GELU heads "
        "(linguistic and prosodic), a linear classifier; distilled from a prosodic teacher (eGeMAPS) and a "
        "linguistic one (transcripts), neither needed at inference.", "",
        "## Use", "", "```python", *_USE_CLASSIFIER.splitlines(), "```", "",
        f"or `pldistill-sweep predict OUT_DIR clip.wav`. Labels: {', '.join(meta['labels'])}. Audio: 16 kHz mono, "
        f"**cropped to its first {meta['window_s']:g} s**, as training cropped it.", "",
        "## Training", "", "- Hyperparameters: " + ", ".join(f"{k}={v}" for k, v in sorted(hp.items())), "",
        *_protocol(src), "",
        "## Results (UA = balanced accuracy, WA = accuracy, F1 = macro-F1)", "", *_figures(src), "",
        f"pldistill {src.row.get('pldistill_version') or 'unknown'}, commit {src.row.get('git_commit') or 'unknown'}.",
        "",
    ]
    return "\n".join(lines)


def _replicated(row: dict[str, Any]) -> str:
    """Why the trial ran these seeds, when it replicated until decided (``search.replicates``)."""
    stop = row.get("seeds_stop")
    if stop not in ("precision", "cap"):
        return ""
    why = "its validation interval was narrow enough" if stop == "precision" else "the cap (max_seeds) was reached"
    return f", added until decided: {row.get('seeds_used')} seeds, stopped as {why}"
