"""EmoDistill's linguistic teacher: a BERT classifier on the clip's transcript.

``model="tiny"``: a small BERT built from a ``BertConfig`` with a word-level tokenizer whose
vocabulary is the fold's *training* transcripts (``tokenizers`` WordLevel; nothing downloaded;
words unseen in training become ``[UNK]``). Otherwise ``model`` is a local BERT checkpoint folder
(the paper's BERT-base), fine-tuned with its own tokenizer and a new classification head.

The embedding the student's linguistic head is matched to is BERT's pooled ``[CLS]`` output, the
input of its classifier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pldistill.config import config_hash
from pldistill.errors import InputError
from pldistill.train.emodistill_teachers._common import (
    FitOptions,
    FoldClips,
    TeacherOutputs,
    cached_teacher,
    check_rows,
    fit_teacher,
    outputs_for,
)

__all__ = ["LinguisticSettings", "TRANSCRIPTS_FIELD", "MODEL_FIELD", "build_word_tokenizer", "require_transcripts",
           "train_linguistic_teacher", "ensure_linguistic_teacher", "linguistic_key"]

#: Where a user gives transcripts, and the BERT checkpoint (named in errors).
TRANSCRIPTS_FIELD = "base.data.transcripts"
MODEL_FIELD = "model.linguistic_teacher"
_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class LinguisticSettings:
    """Model and training of the linguistic teacher (all of it goes into the cache key)."""

    model: str = "tiny"  #: "tiny" or a local BERT checkpoint folder
    hidden: int = 64  #: tiny only
    layers: int = 2  #: tiny only
    heads: int = 2  #: tiny only
    intermediate: int = 128  #: tiny only
    max_length: int = 64  #: tokens per transcript, [CLS] and [SEP] included
    epochs: int = 20
    lr: float | None = None  #: None: 1e-3 for the tiny model (from scratch), 2e-5 for a checkpoint
    batch_size: int = 16
    weight_decay: float = 0.01
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if min(self.hidden, self.layers, self.heads, self.intermediate, self.epochs, self.batch_size) < 1:
            raise ValueError(f"sizes must be positive: {self}")
        if self.max_length < 3 or (self.lr is not None and not self.lr > 0) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"bad max_length, lr or dropout: {self}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.model == "tiny" else 2e-5)


def require_transcripts(transcripts: Sequence[str | None] | None, clips: FoldClips) -> list[str]:
    """The transcripts as a list of strings, or an :class:`InputError` naming the dataset and the
    field that gives them (the linguistic teacher cannot exist without them)."""
    if transcripts is None:
        raise InputError(None, TRANSCRIPTS_FIELD,
                         f"dataset {clips.dataset!r} has no transcripts, which the emodistill objective's "
                         f"linguistic teacher needs: give a transcripts JSONL file in {TRANSCRIPTS_FIELD}")
    check_rows("transcripts", transcripts, clips)
    missing = sum(t is None for t in transcripts)
    if missing:
        raise InputError(None, TRANSCRIPTS_FIELD,
                         f"{missing} of the {clips.size} clips of dataset {clips.dataset!r} fold {clips.fold} "
                         f"have no transcript; the emodistill objective needs one per clip")
    return [str(t) for t in transcripts]


def build_word_tokenizer(texts: Sequence[str], max_length: int) -> Any:
    """A ``PreTrainedTokenizerFast``: BERT normalisation (lower case, accents stripped), BERT
    pre-tokenisation (whitespace and punctuation), a word-level vocabulary of ``texts`` in a fixed
    order (the specials, then by frequency, ties alphabetically), ``[CLS] ... [SEP]`` around each."""
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    # our own ordering rather than WordLevelTrainer's, so that the vocabulary (and with it the
    # embedding rows, hence the trained teacher) depends on the texts only
    words = sorted((w for w in counts if w not in _SPECIALS), key=lambda w: (-counts[w], w))
    vocab = {tok: i for i, tok in enumerate([*_SPECIALS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)


def _tiny_bert(tokenizer: Any, num_classes: int, s: LinguisticSettings, seed: int) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=s.hidden, num_hidden_layers=s.layers,
                     num_attention_heads=s.heads, intermediate_size=s.intermediate,
                     max_position_embeddings=s.max_length, num_labels=num_classes,
                     hidden_dropout_prob=s.dropout, attention_probs_dropout_prob=s.dropout,
                     pad_token_id=tokenizer.pad_token_id)
    cfg._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertForSequenceClassification(cfg)


def _local_bert(path: str, num_classes: int, seed: int) -> tuple[torch.nn.Module, Any]:
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise InputError(folder, MODEL_FIELD, "not a local Hugging Face checkpoint folder (no config.json)")
    try:
        if AutoConfig.from_pretrained(folder).model_type != "bert":
            raise ValueError("not a BERT checkpoint (config.model_type must be 'bert')")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the new classification head
            model = BertForSequenceClassification.from_pretrained(
                folder, num_labels=num_classes, ignore_mismatched_sizes=True, attn_implementation="sdpa")
    except (OSError, ValueError, SafetensorError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(folder, MODEL_FIELD, f"cannot load BERT checkpoint: {first}") from exc
    return model, tokenizer


def train_linguistic_teacher(transcripts: Sequence[str | None] | None, clips: FoldClips, *, seed: int = 0,
                             settings: LinguisticSettings = LinguisticSettings(),
                             log: Callable[[str], None] = print) -> TeacherOutputs:
    """Train (tiny) or fine-tune (checkpoint) the linguistic teacher on the fold's train clips, no
    cache; outputs for all clips."""
    texts = require_transcripts(transcripts, clips)
    if settings.model == "tiny":
        tokenizer = build_word_tokenizer([texts[i] for i in clips.train], settings.max_length)
        model = _tiny_bert(tokenizer, clips.num_classes, settings, seed)
    else:
        model, tokenizer = _local_bert(settings.model, clips.num_classes, seed)

    def forward(idx: np.ndarray) -> tuple[Tensor, Tensor]:
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=settings.max_length,
                        return_tensors="pt")
        pooled = model.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).pooler_output
        return model.classifier(model.dropout(pooled)), pooled

    name = f"linguistic teacher {clips.dataset} fold {clips.fold}"
    fit_teacher(model, forward, clips, FitOptions(settings.epochs, settings.learning_rate, settings.batch_size,
                                                  settings.weight_decay, seed, name), log)
    out = outputs_for(model, forward, clips, settings.batch_size,
                      meta={"kind": "linguistic", "settings": asdict(settings), "seed": seed,
                            "vocab_size": len(tokenizer)})
    log(f"{name}: val UA {out.metrics['val_ua']:.3f}, test UA {out.metrics['test_ua']:.3f}")
    return out


def linguistic_key(texts: Sequence[str], clips: FoldClips, seed: int, settings: LinguisticSettings) -> str:
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()
    return config_hash({"kind": "linguistic", "transcripts": digest, "clips": clips.digest(), "seed": seed,
                        "settings": asdict(settings), "v": 1})


def ensure_linguistic_teacher(transcripts: Sequence[str | None] | None, clips: FoldClips, cache_dir: str | Path, *,
                              seed: int = 0, settings: LinguisticSettings = LinguisticSettings(),
                              log: Callable[[str], None] = print) -> TeacherOutputs:
    """The fold's linguistic teacher outputs: from ``cache_dir/emodistill/linguistic/<key>`` when
    there, else trained once (:func:`train_linguistic_teacher`) and cached. ``transcripts``: one
    string per clip of ``clips``; None (a corpus without transcripts) is an :class:`InputError`
    before anything is trained. The key hashes the transcripts, labels, splits, seed and settings
    (a checkpoint by its path, as the audio teacher's cache does)."""
    texts = require_transcripts(transcripts, clips)
    key = linguistic_key(texts, clips, seed, settings)
    return cached_teacher(cache_dir, "linguistic", key,
                          lambda: train_linguistic_teacher(texts, clips, seed=seed, settings=settings, log=log))
