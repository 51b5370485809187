"""The audio-LLM student as a standalone Hugging Face folder, and closed-set scoring with it.

The trial's student is a ``Qwen2AudioForConditionalGeneration`` already (``build_student``): the
teacher's audio encoder, a new projector and the student LLM with LoRA, wrapped by peft. Export
rebuilds it exactly as the trial did, loads the saved adapter and projector, merges LoRA into the
language model (or keeps it as an adapter) and writes it with ``save_pretrained``, so that
``Qwen2AudioForConditionalGeneration.from_pretrained`` and ``AutoProcessor.from_pretrained`` load
it with transformers alone. The encoder keeps the trial's window (its position table sliced, see
``set_encoder_window``) and the processor's feature extractor has the same window, so the folder
computes the features and audio tokens training used; longer audio is cropped to the window, as
training cropped it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pldistill.errors import InputError
from pldistill.serve._quiet import quiet_hf
from pldistill.serve.source import TrialStudent
from pldistill.train.trial import PREDICTIONS_FILE

__all__ = ["FAMILY", "META_FILE", "ADAPTER_DIR", "Predictions", "prediction_mismatches", "load_trial_student",
           "trial_predictions",
           "export_audio_lm", "ExportedAudioLM"]

FAMILY = "audio_lm"
#: What a folder needs beside transformers' own files: labels, prompt, window, where it came from.
META_FILE = "pldistill_labels.json"
ADAPTER_DIR = "adapter"
META_VERSION = 1


@dataclass
class Predictions:
    """Closed-set scores of clips: ``scores (N, C)`` log-likelihoods in ``labels`` order."""

    keys: list[str]
    labels: tuple[str, ...]
    scores: np.ndarray
    truth: list[int] | None = None

    @property
    def predicted(self) -> list[str]:
        return [self.labels[i] for i in self.scores.argmax(-1)] if len(self.keys) else []

    def by_key(self) -> dict[str, str]:
        return dict(zip(self.keys, self.predicted))


def prediction_mismatches(expected: Predictions, got: Mapping[str, str]) -> list[str]:
    """One line per clip of ``expected`` whose predicted label ``got`` (key -> label) lacks or differs
    from; [] when they agree. ``expected`` is :func:`trial_predictions` (later: the recorded table)."""
    return [f"{key}: expected {want}, got {got.get(key, 'nothing')}"
            for key, want in expected.by_key().items() if got.get(key) != want]


def _quiet(_: str) -> None:
    pass


def load_trial_student(src: TrialStudent) -> tuple[Any, Any, Any]:
    """``(student, teacher, fold data)``: the trial's best student of ``src.fold`` built as the trial
    builds it (same teacher encoder and window, same student LLM, same LoRA config) with the saved
    adapter and projector loaded. Uses the trial's cache folder (teacher, features); what is missing
    there is rebuilt as the trial would."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from pldistill.models.loading import build_student, load_student_llm
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.student_prior import ensure_student_llm
    from pldistill.train.teacher import ensure_teacher

    cfg, hp = src.config, src.config.hparams
    data = prepare_fold(cfg, src.fold)
    teacher, _ = ensure_teacher(cfg, data, log=_quiet, encoder_only=True)
    tok = teacher.tokenizer
    llm = load_student_llm(ensure_student_llm(cfg, tok, log=_quiet), tok, seed=cfg.model.init_seed)
    student = build_student(teacher, llm, lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha,
                            lora_dropout=hp.lora_dropout, seed=src.seed)
    loaded = set_peft_model_state_dict(student, load_file(str(src.best_dir / "adapter_model.safetensors")))
    if loaded.unexpected_keys:
        raise InputError(src.best_dir, "adapter_model.safetensors",
                         f"does not fit the trial's student: unexpected {loaded.unexpected_keys[:3]}")
    return student.eval(), teacher, data


def recorded_predictions(src: TrialStudent) -> Predictions | None:
    """The test predictions the trial recorded for this run at its best epoch
    (``best/test_predictions.parquet``, written by the trial), or None for a trial that predates them."""
    import pyarrow.parquet as pq

    path = src.best_dir / PREDICTIONS_FILE
    if not path.is_file():
        return None
    table = pq.read_table(path)
    labels = tuple(json.loads((table.schema.metadata or {}).get(b"labels", b"[]")))
    return Predictions(keys=table.column("key").to_pylist(), labels=labels,
                       scores=np.array(table.column("scores").to_pylist(), dtype=np.float32),
                       truth=table.column("label").to_pylist())


def trial_predictions(src: TrialStudent, split: str = "test") -> Predictions:
    """The trial's own closed-set predictions on ``split`` of its run's fold, scored now from its saved
    best student (``train.scoring``, the code its evaluation ran); :func:`recorded_predictions` is
    what the trial itself recorded for test."""
    from pldistill.models.audiolm import AudioLMHead
    from pldistill.train.scoring import score_labels

    student, teacher, data = load_trial_student(src)
    examples = getattr(data, split)
    scores = score_labels(AudioLMHead(student.base_model.model), teacher.audio_tower, examples, teacher.tokenizer,
                          data.labels, vocab=len(teacher.tokenizer), batch_size=src.config.train.eval_batch_size)
    return Predictions(keys=[ex.key for ex in examples], labels=tuple(data.labels), scores=scores.numpy(),
                       truth=[ex.label for ex in examples])


def export_audio_lm(src: TrialStudent, out: Path, *, adapter: bool = False) -> dict[str, Any]:
    """Write the student into the (empty, temporary) folder ``out``; returns what went into
    :data:`META_FILE`. ``adapter``: LoRA stays a peft adapter in ``out/adapter`` over the base
    weights (student LLM, trained projector, encoder) instead of being merged."""
    from pldistill.models.inputs import DEFAULT_TEMPLATE
    from pldistill.models.tokenizer import AUDIO_TOKEN

    student, teacher, data = load_trial_student(src)
    window = float(data.window_s)
    if not window.is_integer():  # WhisperFeatureExtractor's chunk_length must be whole seconds
        raise InputError(src.best_dir, "data.window_s", f"the trial's {window:g} s window is not a whole number of "
                                                         "seconds; transformers' feature extractor cannot reproduce it")
    if adapter:
        for peft_config in student.peft_config.values():  # the base is this folder, not a local cache path
            peft_config.base_model_name_or_path = None
        student.save_pretrained(out / ADAPTER_DIR, safe_serialization=True)
        model = student.unload()  # LoRA layers out, the trained projector stays in the base
    else:
        model = student.merge_and_unload()
    _standalone(model)
    with quiet_hf():
        model.save_pretrained(out, safe_serialization=True)
    _processor(teacher.tokenizer, window).save_pretrained(out)
    labels = list(data.labels)
    meta = {
        "format": META_VERSION, "family": FAMILY, "labels": labels, "window_s": window,
        "long_audio": f"cropped to the first {window:g} s (as training cropped it)",
        "sample_rate": 16000, "vocab": len(teacher.tokenizer), "template": asdict(DEFAULT_TEMPLATE),
        "prompt": DEFAULT_TEMPLATE.before_audio + AUDIO_TOKEN + DEFAULT_TEMPLATE.prompt_text(labels),
        "end_of_response": DEFAULT_TEMPLATE.end_of_response, "adapter": ADAPTER_DIR if adapter else None,
        "source": {"sweep": src.sweep, "trial": src.trial_id, "fold": src.fold, "epoch": src.epoch},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _standalone(model: torch.nn.Module) -> None:
    """Make the in-memory student a model ``from_pretrained`` rebuilds as is: float32, the encoder's
    config naming its sliced window, and ``lm_head`` its own tensor (a tied student LLM such as
    Qwen2-0.5B shares it with the embeddings, which Qwen2-Audio's class cannot declare as tied)."""
    model.to(torch.float32)
    tower = model.model.audio_tower
    model.config.audio_config.max_source_positions = int(tower.embed_positions.num_embeddings)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    model.config.text_config.tie_word_embeddings = False
    # where the student LLM and encoder were read from (a local cache folder) is no business of the export
    for config in (model.config, model.config.text_config, model.config.audio_config):
        config.name_or_path = ""


def _processor(tokenizer: Any, window_s: float) -> Any:
    """Qwen2-Audio's processor with the teacher's tokenizer and the trial's feature extractor."""
    from transformers import Qwen2AudioProcessor

    from pldistill.data.features import _extractor  # the one training used (kept private there)

    return Qwen2AudioProcessor(feature_extractor=copy.deepcopy(_extractor(window_s)), tokenizer=tokenizer)


class ExportedAudioLM:
    """An exported audio-LLM student, loaded for closed-set scoring as the trial's evaluation does."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        from transformers import AutoTokenizer, Qwen2AudioForConditionalGeneration

        from pldistill.models.audiolm import AudioLMHead
        from pldistill.models.inputs import PromptTemplate

        with quiet_hf():
            model = Qwen2AudioForConditionalGeneration.from_pretrained(
                folder, dtype=torch.float32, use_safetensors=True,
                attn_implementation={"text_config": "sdpa", "audio_config": "sdpa"})
        if meta.get("adapter"):
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder / str(meta["adapter"])).base_model.model
        self.model = model.eval()
        self.head = AudioLMHead(self.model)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.labels: tuple[str, ...] = tuple(meta["labels"])
        self.window_s = float(meta["window_s"])
        self.vocab = int(meta["vocab"])
        self.template = PromptTemplate(**meta["template"])

    def score(self, audios: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """``(N, C)`` log-likelihood of each label for each 16 kHz mono clip (cropped to the window)."""
        from pldistill.data.features import audio_token_count, log_mel
        from pldistill.models.inputs import Example
        from pldistill.train.scoring import score_labels

        examples = []
        for i, audio in enumerate(audios):
            mel, valid = log_mel(audio, self.window_s)
            examples.append(Example(key=str(i), features=mel, valid_frames=valid, label=0,
                                    num_audio_tokens=audio_token_count(valid)))
        scores = score_labels(self.head, self.model.model.audio_tower, examples, self.tokenizer, self.labels,
                              vocab=self.vocab, template=self.template, batch_size=batch_size)
        return scores.numpy()
