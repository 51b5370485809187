"""The tiny distillation setup the step tests share: teacher, LoRA student (adapters non-zero), a
fold of random log-mel clips of different lengths, and its teacher cache. Built once per module."""

from __future__ import annotations

import pytest
import torch
from _clips import LABELS, WINDOW, random_examples

from pldistill.config import TrialConfig
from pldistill.models.audiolm import AudioLMHead
from pldistill.models.loading import build_student, build_tiny_teacher, load_student_llm, set_encoder_window
from pldistill.train.dataset import FoldData
from pldistill.train.teacher_cache import TeacherCache, ensure_teacher_cache


@pytest.fixture(scope="module")
def tiny_distill(tmp_path_factory):
    """``(teacher, student head, fold data, teacher cache)``; the student head in eval mode."""
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("mb")
    teacher = build_tiny_teacher(seed=3)
    set_encoder_window(teacher.audio_tower, WINDOW)
    teacher.model.eval().requires_grad_(False)
    tok = teacher.tokenizer
    student = build_student(teacher, load_student_llm("tiny", tok, seed=1), lora_rank=4, lora_alpha=8.0)
    # LoRA B starts at zero; give the adapters values so every trainable tensor has a gradient.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0.0, 0.02)
    head = AudioLMHead(student.base_model.model).eval()  # eval: no dropout, so a clip's forward is fixed
    data = FoldData(dataset="synthetic", fold=1, labels=LABELS, window_s=WINDOW, features_key="mb0",
                    train=random_examples(8, 0, "tr"), val=random_examples(2, 1, "va"), test=random_examples(2, 2, "te"))
    cfg = TrialConfig.model_validate({"cache_dir": str(tmp / "cache"), "output_dir": str(tmp / "run"),
                                      "model": {"teacher_finetune": {"enabled": False}}})
    cache = TeacherCache(ensure_teacher_cache(cfg, data, teacher, log=lambda m: None, batch_size=3))
    return teacher, head, data, cache
