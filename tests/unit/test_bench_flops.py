"""``bench/flops.py``: the analytic counts against ``FlopCounterMode`` on tiny models, and the real sizes.

Tiny models use eager attention: FlopCounterMode counts the eager path's ``bmm`` s but has no
formula for the CPU SDPA kernel. With torch 2.13 / transformers 5.23 the counts agree exactly; the
1% tolerance leaves room for small products a later transformers may add (rotary tables, say),
while a real accounting error (e.g. weight gradients for frozen linears: +30% here) still fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _bench import load_bench
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[2]
REL = 0.01




flops = load_bench("flops")


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _tiny_qwen2(tie: bool):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=320, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=96, tie_word_embeddings=tie,
                      max_position_embeddings=256, use_sliding_window=False)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    return cfg, Qwen2ForCausalLM(cfg).eval()


def test_hand_counts() -> None:
    assert flops.matmul(2, 3, 4) == 48
    # Whisper: 3000 frames (30 s) -> 1500 positions; 500 (5 s) -> 250.
    assert flops.encoder_positions(3000) == 1500
    assert flops.encoder_positions(500) == 250
    s = flops.LLMShape(hidden=8, layers=1, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=10, tied=True)
    # q 8->8, k 8->4, v 8->4, o 8->8, gate/up 8->16, down 16->8, over 3 tokens: 2*3*(64+32+32+64+128+128+128).
    assert sum(flops.llm_linears(s, 3).values()) == 2 * 3 * 576
    # Two heads x (QK^T + PV), each 2 * 3 * 4 * 3.
    assert flops.llm_attention(s, 3) == 2 * 2 * 72
    assert flops.lora_forward(s, 3, rank=1, targets=("q_proj",)) == 2 * 3 * 8 + 2 * 3 * 8


def test_llm_forward_matches_flop_counter() -> None:
    cfg, model = _tiny_qwen2(tie=False)
    seq = 23
    ids = torch.randint(0, cfg.vocab_size, (1, seq))
    with torch.no_grad():
        counted = _counted(lambda: model(input_ids=ids))
    expected = sum(flops.llm_forward(flops.LLMShape.from_config(cfg), seq, seq).values())
    assert counted == pytest.approx(expected, rel=REL)


def test_encoder_forward_matches_flop_counter() -> None:
    from transformers import Qwen2AudioEncoderConfig
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    cfg = Qwen2AudioEncoderConfig(num_mel_bins=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
                                  d_model=64, max_source_positions=50)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    encoder = Qwen2AudioEncoder(cfg).eval()
    frames = 2 * cfg.max_source_positions
    features = torch.randn(1, cfg.num_mel_bins, frames)
    with torch.no_grad():
        counted = _counted(lambda: encoder(features))
    expected = sum(flops.encoder_forward(flops.EncoderShape.from_config(cfg), frames).values())
    assert counted == pytest.approx(expected, rel=REL)


def test_lora_student_forward_backward_matches_flop_counter() -> None:
    """Projector (trained) -> LoRA LLM (frozen base, tied lm_head) -> logits -> backward: frozen
    linears cost input gradients only, LoRA and attention both operands, the projector its weight."""
    from peft import LoraConfig, get_peft_model

    cfg, llm = _tiny_qwen2(tie=True)
    rank, enc_dim, n_audio, n_before, n_after = 4, 48, 11, 5, 9
    student = get_peft_model(llm, LoraConfig(r=rank, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=list(flops.LORA_LINEARS)))
    projector = torch.nn.Linear(enc_dim, cfg.hidden_size)
    encoded = torch.randn(1, n_audio, enc_dim)  # frozen encoder output: no grad
    before = torch.randint(0, cfg.vocab_size, (1, n_before))
    after = torch.randint(0, cfg.vocab_size, (1, n_after))
    embed = student.get_input_embeddings()

    def step() -> None:
        embeds = torch.cat([embed(before), projector(encoded), embed(after)], dim=1)
        logits = student(inputs_embeds=embeds).logits
        logits.float().logsumexp(-1).mean().backward()

    counted = _counted(step)
    shape = flops.LLMShape.from_config(cfg)
    seq = n_before + n_audio + n_after
    fwd = sum(flops.llm_forward(shape, seq, seq).values()) + flops.lora_forward(shape, seq, rank)
    bwd = sum(flops.student_llm_backward(shape, seq, rank, seq).values())
    proj = flops.matmul(n_audio, enc_dim, cfg.hidden_size)
    assert counted == pytest.approx(fwd + bwd + 2 * proj, rel=REL)
    assert projector.weight.grad is not None and embed.weight.grad is None


@pytest.fixture(scope="module")
def real():
    return flops.real_shapes()


def test_real_shapes_come_from_the_configs(real) -> None:
    t, s, e = real.teacher, real.student, real.encoder
    assert (e.d_model, e.layers, e.heads, e.ffn, e.n_mels, e.max_positions) == (1280, 32, 20, 5120, 128, 1500)
    # Qwen2-Audio-7B's text config: Qwen2Config defaults plus the checkpoint's intermediate/vocab.
    assert (t.hidden, t.layers, t.heads, t.kv_heads, t.intermediate, t.vocab, t.tied) == (
        4096, 32, 32, 32, 11008, 156032, False)
    assert (s.hidden, s.layers, s.heads, s.kv_heads, s.intermediate, s.vocab, s.tied) == (
        896, 24, 14, 2, 4864, 151936, True)
    assert real.teacher_params / 1e9 == pytest.approx(8.4, abs=0.05)  # the paper's 8.4B
    assert real.student_params / 1e9 == pytest.approx(1.1, abs=0.05)  # the paper's 1.1B


def test_step_online_vs_cached(real) -> None:
    from pldistill.data.features import audio_token_count

    n = audio_token_count(455)  # IEMOCAP's mean clip, 4.55 s
    assert n == 114
    z5 = flops.StepSizes(frames=500, audio_tokens=n, prompt_tokens=40, response_tokens=3, lora_rank=8,
                         vocab=151936)
    z30 = flops.StepSizes(**{**z5.__dict__, "frames": 3000})
    online5, online30 = flops.step_parts(real, z5, "online"), flops.step_parts(real, z30, "online")
    cached = flops.step_parts(real, z5, "cached")
    assert "encoder fwd" not in cached and "teacher LLM layers fwd" not in cached
    assert online30["encoder fwd"] > 6 * online5["encoder fwd"]
    assert cached["teacher lm_head fwd"] < online5["teacher lm_head fwd"]
    for part, value in cached.items():
        if part.startswith("student") or part.startswith("losses"):
            assert online5[part] == value, part
    assert sum(online5.values()) > 5 * sum(cached.values())
    # LoRA on a frozen base: the student backward costs about its forward, not twice.
    ratio = cached["student LLM layers bwd"] / cached["student LLM layers fwd"]
    assert 1.0 < ratio < 1.2
    with pytest.raises(ValueError, match="mode"):
        flops.step_parts(real, z5, "warm")


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    flops.main([])
    out = capsys.readouterr().out
    assert "ratio to cached" in out and "online 5 s" in out and "online 30 s" in out
    assert "114 audio + 40 prompt + 3 response = 157 tokens" in out
