"""Teacher/student construction, loading by path, LoRA placement, vocab alignment, attention capture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pldistill.models.audiolm import AudioLMHead, capture_attention, encode_audio
from pldistill.models.inputs import Example, candidate_inputs, collate
from pldistill.models.loading import (
    build_student,
    build_tiny_teacher,
    load_student_llm,
    load_teacher,
    set_encoder_window,
)

LABELS = ("Neutral", "Happy", "Angry", "Sad")


def _examples(n: int = 3, frames: int = 200, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        valid = frames - 37 * i
        n_tok = ((valid - 1) // 2 + 1 - 2) // 2 + 1
        out.append(Example(key=f"k{i}", features=rng.standard_normal((128, frames)).astype(np.float32),
                           valid_frames=valid, label=i % len(LABELS), num_audio_tokens=n_tok))
    return out


def test_split_forward_equals_stock_forward(teacher):
    batch = collate(_examples(), teacher.tokenizer, LABELS)
    enc = encode_audio(teacher.audio_tower, batch.input_features, batch.feature_attention_mask)
    assert enc.num_tokens.tolist() == [ex.num_audio_tokens for ex in _examples()]
    _, _, logits = AudioLMHead(teacher.model)(enc.features, enc.num_tokens, batch.input_ids, batch.attention_mask,
                                              len(teacher.tokenizer))
    with torch.no_grad():
        ref = teacher.model(input_ids=batch.input_ids, input_features=batch.input_features,
                            attention_mask=batch.attention_mask,
                            feature_attention_mask=batch.feature_attention_mask).logits
    valid = batch.attention_mask.bool()
    torch.testing.assert_close(logits[valid], ref[..., : len(teacher.tokenizer)][valid], rtol=1e-5, atol=1e-5)


def test_attention_capture_matches_eager(teacher):
    batch = collate(_examples(), teacher.tokenizer, LABELS)
    enc = encode_audio(teacher.audio_tower, batch.input_features, batch.feature_attention_mask)
    lm = teacher.model.model.language_model
    with torch.no_grad(), capture_attention(lm, batch.attention_mask, "all") as attn:
        AudioLMHead(teacher.model)(enc.features, enc.num_tokens, batch.input_ids, batch.attention_mask)
    impl = teacher.model.config.text_config._attn_implementation
    teacher.model.config.text_config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            eager = teacher.model(input_ids=batch.input_ids, input_features=batch.input_features,
                                  attention_mask=batch.attention_mask,
                                  feature_attention_mask=batch.feature_attention_mask,
                                  output_attentions=True).attentions
    finally:
        teacher.model.config.text_config._attn_implementation = impl
    assert len(attn) == len(eager) == teacher.model.config.text_config.num_hidden_layers
    rows = batch.attention_mask.bool()[:, None, :, None].expand_as(eager[-1])
    for mine, ref in zip(attn, eager):
        torch.testing.assert_close(mine[rows], ref[rows], rtol=1e-5, atol=1e-6)


def test_student_lora_only_in_llm_projector_trainable_encoder_frozen(teacher):
    llm = load_student_llm("tiny", teacher.tokenizer)
    student = build_student(teacher, llm, lora_rank=4, lora_alpha=16)
    trainable = [n for n, p in student.named_parameters() if p.requires_grad]
    assert trainable, "nothing to train"
    assert all(("lora_" in n and "language_model" in n) or "multi_modal_projector" in n for n in trainable)
    assert any("multi_modal_projector" in n for n in trainable)
    assert not any("audio_tower" in n for n in trainable)
    assert not any("lora" in n for n, _ in student.named_parameters() if "audio_tower" in n)
    # The student's encoder is the teacher's, and it gets no gradient in a step.
    core = student.base_model.model
    assert core.model.audio_tower is teacher.audio_tower
    batch = collate(_examples(), teacher.tokenizer, LABELS)
    enc = encode_audio(core.model.audio_tower, batch.input_features, batch.feature_attention_mask)
    audio, _, logits = AudioLMHead(core)(enc.features, enc.num_tokens, batch.input_ids, batch.attention_mask,
                                         len(teacher.tokenizer))
    (logits[batch.response_mask].logsumexp(-1).sum() + audio.sum()).backward()
    assert all(p.grad is None for p in teacher.audio_tower.parameters())
    proj = core.model.multi_modal_projector.modules_to_save["default"].linear
    assert proj.weight.grad is not None and proj.weight.shape == (llm.config.hidden_size, 64)
    student.zero_grad()


def test_vocab_alignment_padding_rows_never_reach_logits(teacher):
    """Teacher and student have different numbers of logit rows; both are cut to the tokenizer."""
    llm = load_student_llm("tiny", teacher.tokenizer)
    v = len(teacher.tokenizer)
    assert teacher.model.lm_head.weight.shape[0] > v and llm.lm_head.weight.shape[0] > v
    assert teacher.model.lm_head.weight.shape[0] != llm.lm_head.weight.shape[0]
    student = build_student(teacher, llm, lora_rank=2, lora_alpha=4)
    head = AudioLMHead(student.base_model.model)
    batch = collate(_examples(1), teacher.tokenizer, LABELS)
    enc = encode_audio(teacher.audio_tower, batch.input_features, batch.feature_attention_mask)
    with torch.no_grad():
        _, _, before = head(enc.features, enc.num_tokens, batch.input_ids, batch.attention_mask, v)
        llm.lm_head.weight[v:] = 1e4  # garbage in the padding rows (tied embeddings: unused ids)
        _, _, after = head(enc.features, enc.num_tokens, batch.input_ids, batch.attention_mask, v)
    assert before.shape[-1] == v
    torch.testing.assert_close(before, after)


def test_tiny_teacher_saved_and_loaded_by_path_is_identical(teacher, tmp_path):
    full = build_tiny_teacher(seed=0)
    full.model.save_pretrained(tmp_path, safe_serialization=True)
    full.tokenizer.save_pretrained(tmp_path)
    loaded = load_teacher(str(tmp_path))
    assert loaded.source == str(tmp_path)
    assert len(loaded.tokenizer) == len(full.tokenizer)
    probe = "What is the emotion? Happy<|im_end|>"
    assert loaded.tokenizer(probe)["input_ids"] == full.tokenizer(probe)["input_ids"]
    for (n1, p1), (n2, p2) in zip(full.model.state_dict().items(), loaded.model.state_dict().items()):
        assert n1 == n2
        torch.testing.assert_close(p1, p2)
    set_encoder_window(loaded.audio_tower, 2.0)
    batch = collate(_examples(), loaded.tokenizer, LABELS)
    outs = []
    for t in (teacher, loaded):
        enc = encode_audio(t.audio_tower, batch.input_features, batch.feature_attention_mask)
        with torch.no_grad():
            outs.append(AudioLMHead(t.model)(enc.features, enc.num_tokens, batch.input_ids, batch.attention_mask,
                                             len(t.tokenizer))[2])
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("shard", [None, "300KB"])  # one file, or shards with an index
def test_encoder_only_load_reads_the_encoder_and_leaves_the_llm_on_meta(tmp_path, shard):
    """What a cached trial loads: the encoder equals the full load's, nothing else is in memory,
    and a student built on it is a working student."""
    from pldistill.errors import InputError

    full = build_tiny_teacher(seed=0)
    kwargs = {"max_shard_size": shard} if shard else {}
    full.model.save_pretrained(tmp_path, safe_serialization=True, **kwargs)
    full.tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file() == bool(shard)
    light = load_teacher(str(tmp_path), encoder_only=True)
    tower = dict(light.audio_tower.named_parameters())
    assert tower.keys() == dict(full.audio_tower.named_parameters()).keys()
    for name, p in full.audio_tower.named_parameters():
        assert tower[name].device.type == "cpu"
        assert torch.equal(tower[name], p), name
    rest = [p for n, p in light.model.named_parameters() if not n.startswith("model.audio_tower.")]
    assert rest and all(p.device.type == "meta" for p in rest)
    assert light.model.config.audio_token_id == full.model.config.audio_token_id
    assert len(light.tokenizer) == len(full.tokenizer)
    set_encoder_window(light.audio_tower, 2.0)
    student = build_student(light, load_student_llm("tiny", light.tokenizer, seed=0), lora_rank=4, lora_alpha=8.0)
    batch = collate(_examples(), light.tokenizer, LABELS)
    enc = encode_audio(light.audio_tower, batch.input_features, batch.feature_attention_mask)
    out = AudioLMHead(student.base_model.model)(enc.features, enc.num_tokens, batch.input_ids,
                                                 batch.attention_mask, len(light.tokenizer))
    assert torch.isfinite(out[2]).all()
    # a checkpoint without its encoder is one clear error naming the folder and field
    from safetensors.torch import load_file, save_file

    for f in tmp_path.glob("*.safetensors"):
        save_file({k: v for k, v in load_file(str(f)).items() if "conv1" not in k}, str(f), metadata={"format": "pt"})
    with pytest.raises(InputError, match="model.teacher.*audio encoder weights do not match"):
        load_teacher(str(tmp_path), encoder_only=True)


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    from pldistill.errors import InputError

    with pytest.raises(InputError, match="model.teacher"):
        load_teacher(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        load_teacher(str(tmp_path / "empty"))


def test_audio_token_mismatch_is_refused_by_the_load_and_by_the_driver_check(tmp_path):
    """A tokenizer that does not map the audio token to ``config.audio_token_id`` would put the audio
    features at the wrong positions: the load refuses it, and so does the header-only check the
    driver runs before any build, with the same one line."""
    import json

    from pldistill.errors import InputError
    from pldistill.models.loading import check_teacher_checkpoint

    full = build_tiny_teacher(seed=0)
    full.model.save_pretrained(tmp_path, safe_serialization=True)
    full.tokenizer.save_pretrained(tmp_path)
    check_teacher_checkpoint(str(tmp_path))  # as saved: fine
    config = json.loads((tmp_path / "config.json").read_text())
    config["audio_token_index"] += 1  # serialised name of config.audio_token_id
    (tmp_path / "config.json").write_text(json.dumps(config))
    for check in (check_teacher_checkpoint, load_teacher):
        with pytest.raises(InputError, match="model.teacher.*id differs from config.audio_token_id"):
            check(str(tmp_path))


def test_encoder_window_slice_equals_full_positions_prefix(teacher):
    t = build_tiny_teacher(seed=0)
    full = t.audio_tower.embed_positions.weight.detach().clone()
    set_encoder_window(t.audio_tower, 3.0)
    assert t.audio_tower.embed_positions.weight.shape[0] == 150
    torch.testing.assert_close(t.audio_tower.embed_positions.weight, full[:150])
    set_encoder_window(t.audio_tower, 30.0)
    torch.testing.assert_close(t.audio_tower.embed_positions.weight, full)


def test_collate_masks_follow_the_prompt_layout(teacher):
    exs = _examples()
    batch = collate(exs, teacher.tokenizer, LABELS)
    audio_id = teacher.model.config.audio_token_id
    for i, ex in enumerate(exs):
        assert int(batch.audio_mask[i].sum()) == ex.num_audio_tokens
        assert bool((batch.input_ids[i][batch.audio_mask[i]] == audio_id).all())
        resp = batch.response_mask[i].nonzero().flatten()
        # response logits predict the label tokens and <|im_end|>; audio < prompt < response
        assert resp.min() > batch.audio_mask[i].nonzero().max()
        target = teacher.tokenizer.decode(batch.labels[i][batch.response_mask[i]])
        assert target == LABELS[ex.label] + "<|im_end|>"
        rows = batch.response_token_mask[i].nonzero().flatten()
        assert rows.tolist() == (resp + 1).tolist()
        # AwCKA's rows: the label's own tokens ("e.g. Happy"), the closing <|im_end|> left out
        label_rows = batch.label_token_mask[i].nonzero().flatten()
        assert teacher.tokenizer.decode(batch.input_ids[i][label_rows]) == LABELS[ex.label]
        assert label_rows.tolist() == rows[:-1].tolist()
    assert not (batch.prompt_mask & (batch.audio_mask | batch.response_mask)).any()
    cands = candidate_inputs(exs[:2], teacher.tokenizer, LABELS)
    assert len(cands) == 2 * len(LABELS)
    assert cands.label_index.tolist() == list(range(len(LABELS))) * 2
