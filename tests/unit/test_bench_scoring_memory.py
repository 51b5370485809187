"""``bench/scoring_memory.py``: its copy of the old (expanded-cache) scorer still agrees with today's
shared-prompt scorer, and its KV-cache arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from _bench import load_bench

ROOT = Path(__file__).resolve().parents[2]




sm = load_bench("scoring_memory")


def test_expanded_and_shared_scorers_agree() -> None:
    from pldistill.models.audiolm import AudioLMHead, encode_audio
    from pldistill.models.inputs import Example, prompt_inputs, response_ids
    from pldistill.models.loading import build_tiny_teacher, set_encoder_window

    teacher = build_tiny_teacher(seed=0)
    set_encoder_window(teacher.audio_tower, 2.0)
    labels = ("Neutral", "Happy", "Angry", "Sad")
    rng = np.random.default_rng(0)
    examples = [Example(key=f"k{i}", features=rng.standard_normal((128, 200)).astype(np.float32),
                        valid_frames=200 - 40 * i, label=0,
                        num_audio_tokens=((200 - 40 * i - 1) // 2 + 1 - 2) // 2 + 1) for i in range(3)]
    inputs = prompt_inputs(examples, teacher.tokenizer, labels)
    ids = response_ids(teacher.tokenizer, labels)
    responses = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in ids], batch_first=True)
    lengths = torch.tensor([len(r) for r in ids])
    head = AudioLMHead(teacher.model).eval()
    with torch.no_grad():
        enc = encode_audio(teacher.audio_tower, inputs.input_features, inputs.feature_attention_mask)
        args = (enc.features, enc.num_tokens, inputs.input_ids, inputs.attention_mask, responses, lengths,
                len(teacher.tokenizer))
        old = sm.score_expanded(head, *args)
        new = head.score_responses(*args)
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-4)


def test_kv_cache_bytes() -> None:
    import flops  # bench/ is on sys.path once the bench module is loaded

    s = flops.LLMShape(hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128, intermediate=11008,
                       vocab=156032, tied=False)
    # 32 layers x (K and V) x 4096 values x 2 bytes = 512 KiB per token
    assert sm.kv_cache_bytes(s, batch=1, tokens=1, copies=1) == 32 * 2 * 4096 * 2
    assert sm.kv_cache_bytes(s, batch=16, tokens=821, copies=4) == 4 * 16 * 821 * 32 * 2 * 4096 * 2
