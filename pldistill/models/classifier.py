"""EmoDistill's student: a speech encoder, pooled over time, two disjoint GELU heads, a classifier.

``features -> encoder -> masked mean over valid frames -> {linguistic head, prosodic head}
-> concat -> linear -> class logits`` (paper summary, "Architecture Onboarding"). The two heads
are disjoint so that each teacher supervises only its own pathway; their outputs are also
returned, for the embedding-level distillation (:mod:`pldistill.losses.emodistill`).

Two encoders:

- ``whisper``: the shared Whisper-style encoder, i.e. the teacher's ``audio_tower``
  (:class:`~pldistill.models.loading.Teacher`); it takes log-mels ``(B, n_mels, frames)`` and a
  frame mask ``(B, frames)``, as the audio-LLM student does.
- ``hubert``: ``transformers.HubertModel`` (the paper's), ``tiny`` from a config built here or a
  local checkpoint folder; it takes raw 16 kHz waveform ``(B, samples)`` and a sample mask.

The encoder is frozen by default (eval mode, no grad, run under ``no_grad``). A folder written by
:func:`save_classifier_student` (``model.safetensors`` + ``classifier.json``, the encoder's config
included) loads back with no teacher and no Hub access: it is a standalone model.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from pldistill.errors import InputError
from pldistill.models.audiolm import encode_audio
from pldistill.models.loading import freeze

__all__ = [
    "ENCODER_KINDS",
    "TINY_HUBERT",
    "ClassifierOutput",
    "ClassifierStudent",
    "HubertEncoder",
    "WhisperEncoder",
    "build_classifier_student",
    "load_classifier_student",
    "masked_mean",
    "save_classifier_student",
]

EncoderKind = Literal["whisper", "hubert"]
ENCODER_KINDS: tuple[str, ...] = ("whisper", "hubert")
#: The config field a bad HuBERT checkpoint path is reported under.
HUBERT_FIELD = "model.hubert"
_CONFIG_FILE, _WEIGHTS_FILE, _FORMAT = "classifier.json", "model.safetensors", "pldistill-classifier-student"

#: Tiny HuBERT: the real convolution strides (320 samples per frame, 50 frames/s) with narrow layers.
#: ``feat_extract_norm="layer"`` (as hubert-large) normalises each frame on its own, so with the
#: attention mask a padded clip gives exactly the frames of the unpadded one.
TINY_HUBERT: dict[str, Any] = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    conv_dim=(16,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_bias=True, feat_extract_norm="layer", num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    mask_time_prob=0.0, layerdrop=0.0, vocab_size=32,  # no random layer skipping in a 2-layer model
)


class ClassifierOutput(NamedTuple):
    logits: Tensor  #: (B, num_labels)
    ling_emb: Tensor  #: (B, ling_dim), the linguistic head's output
    pros_emb: Tensor  #: (B, pros_dim), the prosodic head's output


def masked_mean(hidden: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``hidden (B, T, D)`` over the rows where ``valid (B, T)`` is true: ``(B, D)``.

    ``where()``, not a multiply: padding rows holding inf or NaN must not reach the mean. A clip
    with no valid row pools to zeros.
    """
    kept = torch.where(valid[..., None], hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device))
    count = valid.sum(-1, keepdim=True).clamp(min=1).to(hidden.dtype)
    return kept.sum(1) / count


class WhisperEncoder(nn.Module):
    """The Qwen2-Audio / Whisper-style encoder: log-mels and frame mask -> ``(hidden, valid)``."""

    kind = "whisper"

    def __init__(self, audio_tower: nn.Module) -> None:
        super().__init__()
        self.tower = audio_tower
        self.width = int(audio_tower.config.d_model)

    def forward(self, features: Tensor, feature_mask: Tensor) -> tuple[Tensor, Tensor]:
        enc = encode_audio(self.tower, features, feature_mask)
        return enc.features, enc.token_mask

    def config_dict(self) -> dict[str, Any]:
        return self.tower.config.to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WhisperEncoder:
        from transformers import Qwen2AudioEncoderConfig
        from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

        cfg = Qwen2AudioEncoderConfig.from_dict(config)
        cfg._attn_implementation = "sdpa"
        return cls(Qwen2AudioEncoder(cfg))


class HubertEncoder(nn.Module):
    """``HubertModel``: 16 kHz waveform ``(B, S)`` and sample mask ``(B, S)`` -> ``(hidden, valid)``."""

    kind = "hubert"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.width = int(model.config.hidden_size)

    def forward(self, features: Tensor, feature_mask: Tensor) -> tuple[Tensor, Tensor]:
        # Group-norm checkpoints (hubert-base) were trained on zero-padded input without a mask
        # (their feature extractor returns none); layer-norm ones (hubert-large, TINY_HUBERT) take it.
        mask = feature_mask.long()
        use_mask = self.model.config.feat_extract_norm == "layer"
        hidden = self.model(features, attention_mask=mask if use_mask else None).last_hidden_state
        valid = self.model._get_feature_vector_attention_mask(hidden.shape[1], mask)
        return hidden, valid.bool()

    def config_dict(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HubertEncoder:
        from transformers import HubertConfig, HubertModel

        cfg = HubertConfig.from_dict(config)
        cfg._attn_implementation = "sdpa"
        return cls(HubertModel(cfg))


_ENCODERS: dict[str, type[WhisperEncoder] | type[HubertEncoder]] = {"whisper": WhisperEncoder,
                                                                     "hubert": HubertEncoder}


def _head(width: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, dim), nn.GELU())


class ClassifierStudent(nn.Module):
    """Encoder -> masked mean pooling -> disjoint GELU heads -> concat -> linear classifier.

    Args:
        encoder: a :class:`WhisperEncoder` or :class:`HubertEncoder`.
        num_labels: classes of the dataset.
        ling_dim, pros_dim: widths of the linguistic and prosodic heads.
        train_encoder: fine-tune the encoder too; by default it is frozen (no grad, eval mode even
            when the student is in train mode, run under ``no_grad``).
        dropout: on the pooled vector, before the heads (training only).
    """

    def __init__(self, encoder: WhisperEncoder | HubertEncoder, num_labels: int, *, ling_dim: int = 256,
                 pros_dim: int = 256, train_encoder: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if num_labels < 2 or ling_dim < 1 or pros_dim < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"bad sizes: num_labels={num_labels}, ling_dim={ling_dim}, pros_dim={pros_dim}, "
                             f"dropout={dropout}")
        self.encoder = encoder
        self.train_encoder = train_encoder
        self.num_labels, self.ling_dim, self.pros_dim, self.dropout_p = num_labels, ling_dim, pros_dim, dropout
        self.dropout = nn.Dropout(dropout)
        self.linguistic = _head(encoder.width, ling_dim)
        self.prosodic = _head(encoder.width, pros_dim)
        self.classifier = nn.Linear(ling_dim + pros_dim, num_labels)
        if not train_encoder:
            freeze(self.encoder)

    def train(self, mode: bool = True) -> ClassifierStudent:
        super().train(mode)
        if not self.train_encoder:
            self.encoder.train(False)  # a frozen encoder keeps dropout off
        return self

    def pooled(self, features: Tensor, feature_mask: Tensor) -> Tensor:
        """The encoder output averaged over valid frames: ``(B, D_enc)`` in the heads' dtype."""
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            hidden, valid = self.encoder(features, feature_mask)
        return masked_mean(hidden, valid).to(self.classifier.weight.dtype)

    def forward(self, features: Tensor, feature_mask: Tensor) -> ClassifierOutput:
        """``features``: log-mels ``(B, n_mels, frames)`` (whisper) or waveform ``(B, S)`` (hubert);
        ``feature_mask``: ``(B, frames)`` / ``(B, S)``, true or 1 where the input is real."""
        pooled = self.dropout(self.pooled(features, feature_mask))
        ling, pros = self.linguistic(pooled), self.prosodic(pooled)
        return ClassifierOutput(self.classifier(torch.cat([ling, pros], dim=-1)), ling, pros)

    def config(self) -> dict[str, Any]:
        """What :func:`load_classifier_student` needs to rebuild this model without its source."""
        return {"format": _FORMAT, "version": 1, "encoder": {"kind": self.encoder.kind,
                                                             "config": self.encoder.config_dict()},
                "num_labels": self.num_labels, "ling_dim": self.ling_dim, "pros_dim": self.pros_dim,
                "dropout": self.dropout_p, "train_encoder": self.train_encoder}


def _tiny_hubert(seed: int) -> nn.Module:
    from transformers import HubertConfig, HubertModel

    cfg = HubertConfig(**TINY_HUBERT)
    cfg._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HubertModel(cfg)


def _local_hubert(path: str) -> nn.Module:
    from safetensors import SafetensorError
    from transformers import HubertModel

    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise InputError(folder, HUBERT_FIELD, "not a local Hugging Face checkpoint folder (no config.json)")
    try:
        return HubertModel.from_pretrained(folder, attn_implementation="sdpa")
    except (OSError, ValueError, SafetensorError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(folder, HUBERT_FIELD, f"cannot load HuBERT checkpoint: {first}") from exc


def build_classifier_student(
    num_labels: int,
    *,
    encoder: EncoderKind = "whisper",
    audio_tower: nn.Module | None = None,
    hubert: str = "tiny",
    train_encoder: bool = False,
    ling_dim: int = 256,
    pros_dim: int = 256,
    dropout: float = 0.0,
    seed: int = 0,
) -> ClassifierStudent:
    """A :class:`ClassifierStudent` with fresh heads (deterministic for ``seed``).

    ``encoder="whisper"`` needs ``audio_tower`` (the teacher's, window already set). Frozen, it is
    shared as is; trainable, it is deep-copied first, so fine-tuning never changes the module the
    teacher and other students share. ``encoder="hubert"`` reads ``hubert``: ``"tiny"`` builds
    :data:`TINY_HUBERT` in-process, anything else is a local checkpoint folder.
    """
    if encoder == "whisper":
        if audio_tower is None:
            raise ValueError("encoder='whisper' needs audio_tower (the teacher's Teacher.audio_tower)")
        tower = copy.deepcopy(audio_tower) if train_encoder else audio_tower
        if train_encoder:
            for p in tower.parameters():
                p.requires_grad_(True)
            tower.embed_positions.weight.requires_grad_(False)  # fixed sinusoids, as in teacher fine-tuning
        enc: WhisperEncoder | HubertEncoder = WhisperEncoder(tower)
    elif encoder == "hubert":
        enc = HubertEncoder(_tiny_hubert(seed) if hubert == "tiny" else _local_hubert(hubert))
    else:
        raise ValueError(f"unknown encoder {encoder!r}; valid: {', '.join(ENCODER_KINDS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        return ClassifierStudent(enc, num_labels, ling_dim=ling_dim, pros_dim=pros_dim,
                                 train_encoder=train_encoder, dropout=dropout)


def save_classifier_student(student: ClassifierStudent, folder: str | Path,
                            labels: Sequence[str] | None = None) -> Path:
    """Write ``model.safetensors`` (every tensor, encoder included) and ``classifier.json`` (sizes,
    the encoder's config and, when given, the label names in class order) into ``folder``."""
    from safetensors.torch import save_model

    if labels is not None and len(labels) != student.num_labels:
        raise ValueError(f"{len(labels)} label names for {student.num_labels} classes")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_model(student, str(out / _WEIGHTS_FILE))  # handles shared storage, unlike save_file
    config = {**student.config(), "labels": None if labels is None else list(labels)}
    (out / _CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
    return out


def load_classifier_student(folder: str | Path) -> ClassifierStudent:
    """The student saved in ``folder`` by :func:`save_classifier_student` (eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = Path(folder)
    try:
        cfg = json.loads((path / _CONFIG_FILE).read_text())
        if cfg.get("format") != _FORMAT:
            raise ValueError(f"format is {cfg.get('format')!r}, expected {_FORMAT!r}")
        encoder = _ENCODERS[cfg["encoder"]["kind"]].from_config(cfg["encoder"]["config"])
        student = ClassifierStudent(encoder, cfg["num_labels"], ling_dim=cfg["ling_dim"], pros_dim=cfg["pros_dim"],
                                    train_encoder=cfg["train_encoder"], dropout=cfg["dropout"])
        load_model(student, str(path / _WEIGHTS_FILE), strict=True)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(path, _CONFIG_FILE, f"not a loadable classifier student: {first}") from exc
    return student.eval()
