"""``bench/gpu_step.py``: the real shapes it builds, and one bf16 step at the smallest scale on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from _bench import load_bench

ROOT = Path(__file__).resolve().parents[2]




gpu_step = load_bench("gpu_step")


def test_real_sizes_are_the_papers_models() -> None:
    s = gpu_step.scaled_sizes(1.0)
    e, t, st = s.encoder, s.teacher, s.student
    assert (e["d_model"], e["encoder_layers"], e["encoder_attention_heads"], e["encoder_ffn_dim"],
            e["num_mel_bins"], e["max_source_positions"]) == (1280, 32, 20, 5120, 128, 1500)
    assert (t["hidden_size"], t["num_hidden_layers"], t["num_attention_heads"], t["num_key_value_heads"],
            t["intermediate_size"], t["vocab_size"]) == (4096, 32, 32, 32, 11008, 156032)
    assert (st["hidden_size"], st["num_hidden_layers"], st["num_attention_heads"], st["num_key_value_heads"],
            st["intermediate_size"], st["vocab_size"], st["tie_word_embeddings"]) == (896, 24, 14, 2, 4864, 151936, True)
    small = gpu_step.scaled_sizes(1 / 32).student
    assert small["hidden_size"] == 64 and small["num_hidden_layers"] == 1 and small["vocab_size"] == 4748
    with pytest.raises(ValueError, match="scale"):
        gpu_step.scaled_sizes(2.0)


def test_tiny_step_runs_on_cpu_and_reports_flops(capsys: pytest.CaptureFixture[str]) -> None:
    r = gpu_step.main(["--tiny", "--device", "cpu", "--steps", "1", "--warmup", "0", "--peak-tflops", "1"])
    out = capsys.readouterr().out
    assert "samples/s" in out and "MFU" in out and "device cpu, scale 0.03125" in out
    assert r["samples_per_s"] > 0 and r["gflop_per_sample"] > 0 and r["loss"] == pytest.approx(r["loss"])
    # MFU is achieved FLOP/s over the given peak (1 TFLOP/s here).
    assert r["mfu"] == pytest.approx(r["tflops"] / 1.0)
    assert 0 < r["mfu"] < 1
