"""CAAD's text-only teacher path: the batch without its audio, aligned with the full batch's response."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pldistill.models.audiolm import AudioLMHead
from pldistill.models.inputs import Example, collate, text_only_inputs

LABELS = ("Neutral", "Happy", "Angry", "Sad")


def _examples() -> list[Example]:
    rng = np.random.default_rng(0)
    out = []
    for i, valid in enumerate((200, 90, 151)):  # different audio lengths: different paddings
        n_tok = ((valid - 1) // 2 + 1 - 2) // 2 + 1
        out.append(Example(key=f"k{i}", features=rng.standard_normal((128, 200)).astype(np.float32),
                           valid_frames=valid, label=(3 * i + 1) % len(LABELS), num_audio_tokens=n_tok))
    return out


def test_text_only_inputs_have_no_audio_and_the_same_response(teacher):
    tok = teacher.tokenizer
    batch = collate(_examples(), tok, LABELS)
    text = text_only_inputs(batch)
    removed = {tok.convert_tokens_to_ids(t) for t in ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")}
    assert len(removed) == 3
    for i in range(len(batch)):
        valid = text.attention_mask[i].bool()
        ids = text.input_ids[i][valid].tolist()
        assert not removed & set(ids), "audio positions or markers left in the text-only input"
        full = batch.input_ids[i][batch.attention_mask[i].bool()].tolist()
        assert ids == [t for t in full if t not in removed]  # everything else, in order
        assert len(ids) == len(full) - int(batch.audio_mask[i].sum()) - 2
        # the response: the same target tokens, in the same order, decoding to the gold answer
        assert text.labels[i][text.response_mask[i]].tolist() == batch.labels[i][batch.response_mask[i]].tolist()
        assert tok.decode(text.labels[i][text.response_mask[i]]) == LABELS[batch.label_index[i]] + "<|im_end|>"
        # the position map: each kept token and each response row sits where the map says
        pos = text.positions[i][valid]
        assert torch.equal(batch.input_ids[i][pos], text.input_ids[i][valid])
        assert torch.equal(batch.response_mask[i][pos], text.response_mask[i][valid])
        assert bool((text.positions[i][~valid] == -1).all())
        assert int(valid.sum()) == int(text.attention_mask[i].sum()) and not text.attention_mask[i][int(valid.sum()):].any()


def test_text_only_forward_is_the_teacher_without_audio(teacher):
    """The head's text-only forward equals the stock model run on the text ids alone, and its response
    rows, moved to the full layout, sit at the full batch's response positions."""
    batch = collate(_examples(), teacher.tokenizer, LABELS)
    text = text_only_inputs(batch)
    vocab = len(teacher.tokenizer)
    with torch.no_grad():
        audio, _, logits = AudioLMHead(teacher.model)(None, None, text.input_ids, text.attention_mask, vocab)
        ref = teacher.model(input_ids=text.input_ids, attention_mask=text.attention_mask).logits[..., :vocab]
    assert audio is None and logits is not None
    valid = text.attention_mask.bool()
    torch.testing.assert_close(logits[valid], ref[valid], rtol=1e-5, atol=1e-5)
    full = text.to_full(logits, batch.input_ids.shape[1])
    assert full.shape == (*batch.input_ids.shape, vocab)
    torch.testing.assert_close(full[batch.response_mask], logits[text.response_mask], rtol=0, atol=0)
    assert not full[~batch.response_mask].any()


def test_text_only_forward_refuses_audio_placeholders(teacher):
    batch = collate(_examples(), teacher.tokenizer, LABELS)
    with pytest.raises(ValueError, match="audio placeholders"):
        AudioLMHead(teacher.model)(None, None, batch.input_ids, batch.attention_mask)
