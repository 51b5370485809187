"""``bench/cached_vs_online.py``: its sizes keep the real parameter ratio, and ``--quick`` runs end to end.

The bench patches the tiny model sizes of ``pldistill.models.loading`` and ``student_prior`` while it
runs, so the end-to-end run is a subprocess (nothing leaks into other tests). No wall-clock assertion.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _bench import load_bench

ROOT = Path(__file__).resolve().parents[2]




@pytest.mark.parametrize("width", [256, 384])
def test_bench_sizes_keep_the_real_ratio_and_are_restored(width: int) -> None:
    from pldistill.models import loading
    from pldistill.train import student_prior

    bench = load_bench("cached_vs_online")
    before = (dict(loading.TINY_ENCODER), loading.build_tiny_teacher, student_prior.TINY_STUDENT,
              student_prior.load_student_llm)
    with bench.bench_sizes(width=width):
        teacher = loading.build_tiny_teacher(0)
        llm = student_prior.load_student_llm("tiny", teacher.tokenizer)
        counts = bench._param_counts(teacher, llm)
        assert student_prior.TINY_STUDENT.hidden == width
        assert teacher.model.config.text_config.hidden_size == 4 * width  # the real 896 : 3584
    assert (dict(loading.TINY_ENCODER), loading.build_tiny_teacher, student_prior.TINY_STUDENT,
            student_prior.load_student_llm) == before
    ratio_enc = counts["encoder"] / counts["student LLM"]
    ratio_teacher = counts["teacher LLM"] / counts["student LLM"]
    assert 1.1 < ratio_enc < 1.5 and 13.5 < ratio_teacher < 16.5  # Qwen2-Audio enc : 7B : 0.5B ~ 1.3 : 15 : 1
    assert counts["student LLM"] > 1.5e6  # big enough that matrix multiplies dominate a CPU step


@pytest.mark.slow
def test_quick_run_reports_equal_metrics_and_the_ratios(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "cached_vs_online.py"), "--quick",
                           "--cache", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    diff = re.search(r"attention_last(?:\s+\S+){6}\s+(\S+)", out)
    assert diff is not None, out
    assert float(diff.group(1)) < 1e-5  # online and cached trials agree
    first = re.search(r"first batch loss.*\|diff\| (\S+)", out)
    assert first is not None and float(first.group(1)) < 1e-5
    for line in ("one step (median of 1", "cache build (192 clips", "training loops", "total"):
        assert line in out, out
