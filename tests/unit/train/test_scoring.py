"""Closed-set scoring from one shared prompt equals scoring each candidate as its own full sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pldistill.models.audiolm import AudioLMHead, encode_audio
from pldistill.models.inputs import Example, candidate_inputs, prompt_inputs, response_ids
from pldistill.models.loading import build_student, build_tiny_teacher, load_student_llm, set_encoder_window
from pldistill.train.scoring import predict, score_labels

#: Responses of 4 to 9 tokens (the tiny tokenizer spells most words out), so continuations are padded.
LABELS = ("Neutral", "Happy", "Angry", "Sad", "Frustrated")


@pytest.fixture(scope="module")
def teacher():
    t = build_tiny_teacher(seed=0)
    set_encoder_window(t.audio_tower, 2.0)
    return t


def _examples(n: int, seed: int = 0) -> list[Example]:
    """Clips of different lengths: prompts of different lengths, right-padded in a batch."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        valid = 200 - 23 * (i % 7)
        n_tok = ((valid - 1) // 2 + 1 - 2) // 2 + 1
        out.append(Example(key=f"k{i}", features=rng.standard_normal((128, 200)).astype(np.float32),
                           valid_frames=valid, label=i % len(LABELS), num_audio_tokens=n_tok))
    return out


@torch.no_grad()
def _full_sequence_scores(head: AudioLMHead, tower, examples, tokenizer) -> torch.Tensor:
    """The direct way: every (clip, label) pair as one whole sequence, its response tokens' log-probs summed."""
    inputs = candidate_inputs(examples, tokenizer, LABELS)
    enc = encode_audio(tower, inputs.input_features, inputs.feature_attention_mask)
    _, _, logits = head(enc.features, enc.num_tokens, inputs.input_ids, inputs.attention_mask, len(tokenizer))
    logp = torch.log_softmax(logits.float(), -1).gather(-1, inputs.labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (logp * inputs.response_mask).sum(-1).view(len(examples), len(LABELS))


def _student_head(teacher) -> AudioLMHead:
    llm = load_student_llm("tiny", teacher.tokenizer, seed=0)
    student = build_student(teacher, llm, lora_rank=4, lora_alpha=8.0, seed=0)
    with torch.random.fork_rng(devices=[]):  # LoRA B starts at zero; make the adapters matter
        torch.manual_seed(3)
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0.0, 0.05)
    return AudioLMHead(student.base_model.model).eval()


@pytest.mark.parametrize("which", ["teacher", "student"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_shared_prompt_scores_equal_full_sequences(teacher, which: str, batch_size: int):
    head = AudioLMHead(teacher.model).eval() if which == "teacher" else _student_head(teacher)
    examples = _examples(7)
    lengths = {len(r) for r in response_ids(teacher.tokenizer, LABELS)}
    assert len(lengths) > 1, "the test needs responses of different lengths"
    got = score_labels(head, teacher.audio_tower, examples, teacher.tokenizer, LABELS,
                       vocab=len(teacher.tokenizer), batch_size=batch_size)
    ref = _full_sequence_scores(head, teacher.audio_tower, examples, teacher.tokenizer)
    assert got.shape == (7, len(LABELS)) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)  # sums of ~8 log-probs of size ~6
    assert predict(got) == predict(ref)
    # the scores separate the labels (a constant or per-clip-only score would pass the argmax check)
    assert float(got.std(dim=1).min()) > 1e-3


def test_prompt_inputs_are_the_candidates_prefix(teacher):
    examples = _examples(3)
    prompt = prompt_inputs(examples, teacher.tokenizer, LABELS)
    cands = candidate_inputs(examples, teacher.tokenizer, LABELS)
    responses = response_ids(teacher.tokenizer, LABELS)
    assert not prompt.response_mask.any()
    assert prompt.label_index.tolist() == [ex.label for ex in examples]
    for i in range(len(examples)):
        n = int(prompt.attention_mask[i].sum())
        for c, resp in enumerate(responses):
            row = cands.input_ids[i * len(LABELS) + c]
            assert row[:n].tolist() == prompt.input_ids[i, :n].tolist()
            assert row[n:n + len(resp)].tolist() == resp
    assert teacher.tokenizer.decode(responses[0]) == LABELS[0] + "<|im_end|>"


def test_empty_input_gives_no_rows(teacher):
    head = AudioLMHead(teacher.model).eval()
    got = score_labels(head, teacher.audio_tower, [], teacher.tokenizer, LABELS, vocab=len(teacher.tokenizer))
    assert got.shape == (0, len(LABELS))


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_one_forward_of_batch_b_holds_one_prompt_copy(teacher, impl: str, monkeypatch):
    """The candidates ride in the prompt's own row (no C-fold copy of the prompt or its keys and
    values): the decoder runs once, on B rows of ``P + C * (R - 1)`` tokens, and the scores still
    equal full sequences with either attention implementation (eager takes an additive float mask)."""
    head = AudioLMHead(teacher.model).eval()
    lm = head.core.language_model
    monkeypatch.setattr(lm.config, "_attn_implementation", impl)
    examples = _examples(5)
    seen: list[tuple[int, ...]] = []
    hook = lm.layers[0].register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    try:
        got = score_labels(head, teacher.audio_tower, examples, teacher.tokenizer, LABELS,
                           vocab=len(teacher.tokenizer), batch_size=5)
    finally:
        hook.remove()
    ids = response_ids(teacher.tokenizer, LABELS)
    prompt = prompt_inputs(examples, teacher.tokenizer, LABELS)
    packed = len(LABELS) * (max(len(r) for r in ids) - 1)
    assert [s[:2] for s in seen] == [(5, prompt.input_ids.shape[1] + packed)]
    ref = _full_sequence_scores(head, teacher.audio_tower, examples, teacher.tokenizer)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


def test_single_token_responses_need_no_continuation(teacher):
    head = AudioLMHead(teacher.model).eval()
    examples = _examples(3)
    inputs = prompt_inputs(examples, teacher.tokenizer, LABELS)
    enc = encode_audio(teacher.audio_tower, inputs.input_features, inputs.feature_attention_mask)
    responses = torch.tensor([[5], [9], [11]])
    with torch.no_grad():
        got = head.score_responses(enc.features, enc.num_tokens, inputs.input_ids, inputs.attention_mask,
                                   responses, torch.ones(3, dtype=torch.long), len(teacher.tokenizer))
        _, _, logits = head(enc.features, enc.num_tokens, inputs.input_ids, inputs.attention_mask,
                            len(teacher.tokenizer))
    last = logits[torch.arange(3), inputs.attention_mask.sum(-1) - 1].float().log_softmax(-1)
    torch.testing.assert_close(got, last[:, [5, 9, 11]], rtol=1e-5, atol=1e-5)


def test_attention_without_4d_masks_is_refused(teacher, monkeypatch):
    """flash-attention kernels ignore a 4-D mask: the candidates would see each other, silently."""
    head = AudioLMHead(teacher.model).eval()
    monkeypatch.setattr(head.core.language_model.config, "_attn_implementation", "flash_attention_2")
    with pytest.raises(ValueError, match="flash_attention_2"):
        score_labels(head, teacher.audio_tower, _examples(2), teacher.tokenizer, LABELS,
                     vocab=len(teacher.tokenizer))
