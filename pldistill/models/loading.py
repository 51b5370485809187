"""Teacher and student: built tiny from configs, or loaded from local Hugging Face checkpoints.

Both paths end in the same objects: a frozen ``Qwen2AudioForConditionalGeneration`` teacher and
a student ``Qwen2AudioForConditionalGeneration`` whose audio tower is the teacher's (frozen), a new
single-layer projector (encoder width -> student width, fully trainable) and the student LLM
with LoRA in its language model only. A tiny model saved with ``save_pretrained`` loads back by
path through exactly the code a real checkpoint goes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from torch import nn

from pldistill.errors import InputError
from pldistill.models.tokenizer import AUDIO_TOKEN, build_tiny_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "TinySizes",
    "TINY_TEACHER",
    "TINY_STUDENT",
    "LORA_TARGETS",
    "Teacher",
    "build_tiny_teacher",
    "load_teacher",
    "load_student_llm",
    "check_student_tokenizer",
    "check_teacher_checkpoint",
    "load_teacher_tokenizer",
    "build_student",
    "set_encoder_window",
    "freeze",
]

#: What loading a broken checkpoint raises: missing/unreadable files, bad JSON, corrupt safetensors.
_LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SafetensorError)

#: LoRA goes into the language model only: the audio encoder has q/k/v_proj too (STACK-NOTES).
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class TinySizes:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab_pad: int  # logit rows beyond the tokenizer (real models have padding rows too)
    tie_embeddings: bool


#: Tiny teacher LLM / student LLM, in the spirit of Qwen2-7B vs Qwen2-0.5B (wider, untied teacher).
TINY_TEACHER = TinySizes(hidden=96, layers=2, heads=4, kv_heads=2, intermediate=192, vocab_pad=64,
                         tie_embeddings=False)
TINY_STUDENT = TinySizes(hidden=48, layers=2, heads=4, kv_heads=2, intermediate=96, vocab_pad=16,
                         tie_embeddings=True)
#: Tiny Whisper-style encoder. 1500 positions as the real one; trials slice to their window.
TINY_ENCODER: dict[str, Any] = dict(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4,
                                    encoder_ffn_dim=128, d_model=64, max_source_positions=1500)


@dataclass
class Teacher:
    model: nn.Module  # Qwen2AudioForConditionalGeneration
    tokenizer: PreTrainedTokenizerBase
    source: str  # "tiny" or the checkpoint path

    @property
    def audio_tower(self) -> nn.Module:
        return self.model.model.audio_tower


def _qwen2_config(s: TinySizes, vocab: int) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=vocab + s.vocab_pad, hidden_size=s.hidden, num_hidden_layers=s.layers,
                       num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                       intermediate_size=s.intermediate, max_position_embeddings=4096,
                       tie_word_embeddings=s.tie_embeddings, use_sliding_window=False)


def build_tiny_teacher(seed: int = 0, sizes: TinySizes = TINY_TEACHER) -> Teacher:
    """A randomly initialised tiny Qwen2-Audio teacher with the tiny tokenizer (deterministic per seed)."""
    from transformers import Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2AudioForConditionalGeneration

    tokenizer = build_tiny_tokenizer()
    cfg = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(**TINY_ENCODER).to_dict(),
        text_config=_qwen2_config(sizes, len(tokenizer)).to_dict(),
        audio_token_index=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
    )
    cfg.text_config._attn_implementation = "sdpa"
    cfg.audio_config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2AudioForConditionalGeneration(cfg)
    return Teacher(model=model.eval(), tokenizer=tokenizer, source="tiny")


#: Where the encoder's weights live in a checkpoint: the Hub layout (``save_pretrained`` writes it too)
#: or transformers' in-memory module path.
_ENCODER_PREFIXES = ("audio_tower.", "model.audio_tower.")


def _encoder_only_teacher(path: Path, dtype: torch.dtype) -> nn.Module:
    """A ``Qwen2AudioForConditionalGeneration`` on ``meta`` but for its audio tower, read from the
    checkpoint's safetensors files (only the files that hold encoder tensors are opened)."""
    import json

    from safetensors import safe_open
    from transformers import AutoConfig, Qwen2AudioForConditionalGeneration
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    config = AutoConfig.from_pretrained(path)
    config.text_config._attn_implementation = "sdpa"
    config.audio_config._attn_implementation = "sdpa"
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({path / f for k, f in weight_map.items() if k.startswith(_ENCODER_PREFIXES)})
    else:
        files = sorted(path.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open handles are not mappings)
                prefix = next((p for p in _ENCODER_PREFIXES if key.startswith(p)), None)
                if prefix is not None:
                    state[key[len(prefix):]] = f.get_tensor(key).to(dtype)
    with torch.device("meta"):
        model = Qwen2AudioForConditionalGeneration(config)
        tower = Qwen2AudioEncoder(config.audio_config)
    tower = tower.to_empty(device="cpu").to(dtype)
    try:
        tower.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing or unexpected encoder tensors
        raise ValueError(f"audio encoder weights do not match its config: {_first_line(exc)}") from exc
    model.model.audio_tower = tower
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _require_dir(path: str, field: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise InputError(p, field, "checkpoint folder not found (expected a local Hugging Face checkpoint)")
    if not (p / "config.json").is_file():
        raise InputError(p / "config.json", field, "missing: not a Hugging Face checkpoint folder")
    return p


def load_teacher(spec: str, *, seed: int = 0, dtype: torch.dtype = torch.float32,
                 encoder_only: bool = False) -> Teacher:
    """``tiny`` or a local checkpoint of ``Qwen2AudioForConditionalGeneration`` (weights via safetensors).

    ``encoder_only``: read only the audio encoder's weights; the projector and language model stay
    on the ``meta`` device (no memory, nothing read). What a trial that reads the teacher cache
    needs: the config, the tokenizer and the encoder it shares with the student, not a 7B LLM.
    """
    if spec == "tiny":
        return build_tiny_teacher(seed)
    from transformers import AutoTokenizer, Qwen2AudioForConditionalGeneration

    path = _require_dir(spec, "model.teacher")
    try:
        if encoder_only:
            model = _encoder_only_teacher(path, dtype)
        else:
            model = Qwen2AudioForConditionalGeneration.from_pretrained(
                path, dtype=dtype, use_safetensors=True,
                attn_implementation={"text_config": "sdpa", "audio_config": "sdpa"},
            )
        tokenizer = AutoTokenizer.from_pretrained(path)
    except _LOAD_ERRORS as exc:
        raise InputError(path, "model.teacher", f"cannot load checkpoint: {_first_line(exc)}") from exc
    _check_audio_token(path, tokenizer, model.config)
    return Teacher(model=model.eval(), tokenizer=tokenizer, source=str(path))


def check_teacher_checkpoint(spec: str) -> None:
    """Read what a teacher checkpoint is made of without its weights: the config, the header of every
    safetensors file (a truncated file fails here: its header no longer covers it) and the tokenizer,
    with the audio token's id. Cheap enough for the driver to run before any build, so a bad
    checkpoint is the user's one-line error, not a task's failure minutes in."""
    if spec == "tiny":
        return
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    path = _require_dir(spec, "model.teacher")
    try:
        config = AutoConfig.from_pretrained(path)
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise OSError("no *.safetensors file (weights are read via safetensors only)")
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        tokenizer = AutoTokenizer.from_pretrained(path)
    except _LOAD_ERRORS as exc:
        raise InputError(path, "model.teacher", f"cannot load checkpoint: {_first_line(exc)}") from exc
    _check_audio_token(path, tokenizer, config)


def _check_audio_token(path: Path, tokenizer: PreTrainedTokenizerBase, config: Any) -> None:
    """The tokenizer must map the audio token to the id the model expands audio at."""
    if tokenizer.convert_tokens_to_ids(AUDIO_TOKEN) != config.audio_token_id:
        raise InputError(path, "model.teacher", f"tokenizer's {AUDIO_TOKEN} id differs from config.audio_token_id")


def load_student_llm(spec: str, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0,
                     dtype: torch.dtype = torch.float32, sizes: TinySizes = TINY_STUDENT) -> nn.Module:
    """The student LLM (``Qwen2ForCausalLM``): ``tiny`` from a config, or a local checkpoint.

    Its embeddings are resized when the teacher's tokenizer has more ids than it has rows.
    """
    from transformers import AutoModelForCausalLM, Qwen2ForCausalLM

    if spec == "tiny":
        cfg = _qwen2_config(sizes, len(tokenizer))
        cfg._attn_implementation = "sdpa"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            llm = Qwen2ForCausalLM(cfg)
    else:
        path = _require_dir(spec, "model.student_llm")
        try:
            llm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True,
                                                       attn_implementation="sdpa")
        except _LOAD_ERRORS as exc:
            raise InputError(path, "model.student_llm", f"cannot load checkpoint: {_first_line(exc)}") from exc
        check_student_tokenizer(path, tokenizer)
    if llm.get_input_embeddings().weight.shape[0] < len(tokenizer):
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return llm.to(dtype)


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def check_student_tokenizer(student: str | Path, teacher_tok: PreTrainedTokenizerBase) -> None:
    """The student inherits the teacher's tokenizer, so the one shipped with a student checkpoint
    must agree with it: the audio token, every special token and every token it knows must have
    the teacher's id, and ordinary text must encode alike. The teacher may know more tokens (the
    real Qwen2-Audio adds audio tokens to Qwen2's vocabulary): the student's embeddings are resized.

    A checkpoint without tokenizer files is accepted; a missing checkpoint folder is an InputError
    naming ``model.student_llm``; a disagreement one naming the student checkpoint and ``tokenizer``.
    Cheap (no weights are read): call it before any work starts.
    """
    from transformers import AutoTokenizer

    path = _require_dir(str(student), "model.student_llm")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        return
    try:
        own = AutoTokenizer.from_pretrained(path)
    except _LOAD_ERRORS as exc:
        raise InputError(path, "tokenizer", f"cannot load the student's tokenizer: {_first_line(exc)}") from exc
    problem = _tokenizer_mismatch(own, teacher_tok)
    if problem:
        raise InputError(path, "tokenizer", f"disagrees with the teacher's tokenizer: {problem}; the student "
                                            "must use the teacher's tokenizer (pick a student of the same family)")


def load_teacher_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """The teacher's tokenizer alone (no weights): the tiny one, or the checkpoint's."""
    if spec == "tiny":
        return build_tiny_tokenizer()
    from transformers import AutoTokenizer

    path = _require_dir(spec, "model.teacher")
    try:
        return AutoTokenizer.from_pretrained(path)
    except _LOAD_ERRORS as exc:
        raise InputError(path, "model.teacher", f"cannot load its tokenizer: {_first_line(exc)}") from exc


def _tokenizer_mismatch(own: PreTrainedTokenizerBase, teacher: PreTrainedTokenizerBase) -> str | None:
    mine, theirs = own.get_vocab(), teacher.get_vocab()

    def differs(token: str, what: str) -> str:
        return f"{what} {token!r} has id {mine[token]}, the teacher's {theirs.get(token, 'none (absent)')}"

    if AUDIO_TOKEN in mine and mine[AUDIO_TOKEN] != theirs.get(AUDIO_TOKEN):
        return differs(AUDIO_TOKEN, "audio token")
    for token in own.all_special_tokens:
        if token in mine and mine[token] != theirs.get(token):
            return differs(token, "special token")
    other = [t for t, i in mine.items() if theirs.get(t) != i]
    if other:
        return f"vocabulary: {len(other)} of its {len(mine)} tokens differ, e.g. " + differs(other[0], "token")
    probe = "What is the emotion of this speech? Neutral Happy Angry Sad"
    if own(probe)["input_ids"] != teacher(probe)["input_ids"]:
        return "ordinary text encodes to other ids (other merges)"
    return None


def set_encoder_window(audio_tower: nn.Module, window_s: float) -> None:
    """Run the encoder on ``window_s`` seconds instead of 30: slice its position table.

    STACK-NOTES: slicing a 1500-position encoder's ``embed_positions`` to 200 gave the same audio
    tokens as padding to 30 s (max diff 1.8e-7). Idempotent for a given window.
    """
    positions = int(round(window_s * 50))
    emb = audio_tower.embed_positions
    if emb.weight.shape[0] == positions:
        return
    full = getattr(audio_tower, "_pldistill_full_positions", None)
    if full is None:
        full = emb.weight.detach().clone()
        audio_tower._pldistill_full_positions = full
    if positions > full.shape[0]:
        raise ValueError(f"window {window_s}s needs {positions} positions; encoder has {full.shape[0]}")
    new = nn.Embedding(positions, full.shape[1], dtype=full.dtype, device=full.device)
    new.weight.data.copy_(full[:positions])
    new.weight.requires_grad_(False)
    audio_tower.embed_positions = new
    audio_tower.config.max_source_positions = positions
    audio_tower.max_source_positions = positions


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def build_student(teacher: Teacher, student_llm: nn.Module, *, lora_rank: int, lora_alpha: float,
                  lora_dropout: float = 0.0, seed: int = 0) -> nn.Module:
    """Student = teacher's audio tower (shared, frozen) + new projector + student LLM with LoRA.

    Returns a peft ``PeftModel`` around a ``Qwen2AudioForConditionalGeneration``; the projector is a
    ``modules_to_save`` module, so ``save_pretrained`` writes the adapter and the projector together.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    tcfg = teacher.model.config
    cfg = Qwen2AudioConfig(audio_config=tcfg.audio_config.to_dict(), text_config=student_llm.config.to_dict(),
                           audio_token_index=tcfg.audio_token_id)
    cfg.text_config._attn_implementation = student_llm.config._attn_implementation
    cfg.audio_config._attn_implementation = tcfg.audio_config._attn_implementation
    with torch.device("meta"):
        shell = Qwen2AudioForConditionalGeneration(cfg)
    shell.model.audio_tower = freeze(teacher.audio_tower)
    shell.model.language_model = student_llm.model
    shell.lm_head = student_llm.lm_head
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)
        proj = nn.Linear(tcfg.audio_config.d_model, student_llm.config.hidden_size, bias=True)
    shell.model.multi_modal_projector.linear = proj.to(student_llm.lm_head.weight.dtype)
    lora = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                      target_modules=LORA_TARGETS, modules_to_save=["multi_modal_projector"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 3)
        student = get_peft_model(shell, lora)
    freeze(student.base_model.model.model.audio_tower)
    return student
