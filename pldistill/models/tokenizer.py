"""Tokenizers: the teacher's (loaded by path) or a tiny byte-level BPE built in-process.

The student always uses the teacher's tokenizer, so token ids, the audio placeholder and the
response tokens line up position by position between the two models. The tiny tokenizer
mirrors Qwen2-Audio's special tokens (``<|AUDIO|>``, ``<|audio_bos|>``, ``<|im_start|>``...) and
is trained deterministically on the prompt and label texts, so label names are several tokens
long, as they can be with the real tokenizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["AUDIO_TOKEN", "AUDIO_BOS", "AUDIO_EOS", "SPECIAL_TOKENS", "build_tiny_tokenizer", "real_vocab_size"]

AUDIO_TOKEN = "<|AUDIO|>"
AUDIO_BOS, AUDIO_EOS = "<|audio_bos|>", "<|audio_eos|>"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS)
_LABEL_WORDS = ("Neutral", "Happy", "Angry", "Sad", "Calm", "Fear", "Disgust", "Surprise")
_CORPUS = (
    "system user assistant You are a helpful assistant.",
    "What is the emotion of this speech? Answer with one word from:",
    "Classify the emotion of the speaker. The emotion is",
)


def build_tiny_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerBase:
    """A deterministic byte-level BPE with Qwen2-Audio's special tokens (about ``vocab_size`` ids)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(_CORPUS) * 4 + [", ".join(_LABEL_WORDS)] * 2
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )


def real_vocab_size(tokenizer: PreTrainedTokenizerBase) -> int:
    """Number of real token ids (logit rows beyond this are padding and never enter a KL)."""
    return len(tokenizer)
