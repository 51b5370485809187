"""The tiny student LLM's "instruct" prior, the stand-in for Qwen2-0.5B-Instruct.

The paper's student starts from an instruction-tuned LLM that already answers a question with
one word from a list; only LoRA and the projector are trained. A randomly initialised tiny LLM
cannot learn that format through LoRA alone (its embeddings and lm_head stay frozen and random).
So, once per configuration, the tiny student LLM is pre-trained on text only: the chat template
with a list of emotion labels (every known dataset's set) and a random one of them as the answer,
with a random number of ``<|AUDIO|>`` placeholders. It learns the format and a uniform prior over
the listed labels, and knows nothing about emotion. The result is saved and loaded back by
path, through the code a real checkpoint goes through.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pldistill._fs import build_once
from pldistill.config import TrialConfig, config_hash
from pldistill.models.inputs import PromptTemplate
from pldistill.models.loading import TINY_STUDENT, load_student_llm
from pldistill.models.tokenizer import AUDIO_TOKEN
from pldistill.progress import StepProgress

__all__ = ["ensure_student_llm", "LABEL_SETS"]

LABEL_SETS: tuple[tuple[str, ...], ...] = (
    ("Neutral", "Happy", "Angry", "Sad"),
    ("Angry", "Calm", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
    ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
)
_STEPS, _BATCH, _LR = 300, 16, 3e-3


def ensure_student_llm(cfg: TrialConfig, tokenizer, log: Callable[[str], None] = print) -> str:
    """A loadable student LLM spec: the configured path, or the cached tiny prior's folder."""
    if cfg.model.student_llm != "tiny":
        return cfg.model.student_llm
    key = config_hash({"sizes": repr(TINY_STUDENT), "vocab": sorted(tokenizer.get_vocab().items()),
                       "seed": cfg.model.init_seed, "template": repr(PromptTemplate()),
                       "steps": _STEPS, "batch": _BATCH, "lr": _LR, "v": 1})
    final = cfg.cache_dir / "students" / key
    build_once(final, "config.json", lambda tmp: _pretrain_into(tmp, tokenizer, cfg.model.init_seed, log),
               what="tiny student prior")
    return str(final)


def _sequences(tokenizer, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = PromptTemplate()
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    audio = tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
    rows, spans = [], []
    for _ in range(n):
        labels = LABEL_SETS[rng.integers(len(LABEL_SETS))]
        prefix = enc(t.before_audio) + [audio] * int(rng.integers(5, 60)) + enc(t.prompt_text(labels))
        answer = enc(labels[rng.integers(len(labels))] + t.end_of_response)
        rows.append(prefix + answer)
        spans.append((len(prefix), len(prefix) + len(answer)))
    length = max(map(len, rows))
    ids = torch.full((n, length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    target = torch.full((n, length), -100, dtype=torch.long)
    for i, (row, (a, b)) in enumerate(zip(rows, spans)):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        target[i, a - 1:b - 1] = ids[i, a:b]
    return ids, mask, target


def _pretrain_into(into, tokenizer, seed: int, log: Callable[[str], None]) -> None:
    llm = load_student_llm("tiny", tokenizer, seed=seed)
    llm.train()
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(llm.parameters(), lr=_LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=_LR, total_steps=_STEPS, pct_start=0.1)
    vocab = len(tokenizer)
    with torch.random.fork_rng(devices=[]), StepProgress(_STEPS, "tiny student prior", unit="steps", log=log) as bar:
        torch.manual_seed(seed)
        for step in range(_STEPS):
            ids, mask, target = _sequences(tokenizer, rng, _BATCH)
            logits = llm(input_ids=ids, attention_mask=mask).logits[..., :vocab]
            loss = torch.nn.functional.cross_entropy(logits[target != -100], target[target != -100])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.advance()
            if (step + 1) % 100 == 0:
                log(f"tiny student prior: step {step + 1}/{_STEPS} loss {loss.item():.3f}")
    llm.save_pretrained(into, safe_serialization=True)
    tokenizer.save_pretrained(into)
