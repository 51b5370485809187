"""ClassifierStudent: shapes, masking, frozen vs trainable encoder, HuBERT paths, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pldistill.errors import InputError
from pldistill.models.classifier import (
    TINY_HUBERT,
    ClassifierStudent,
    build_classifier_student,
    load_classifier_student,
    masked_mean,
    save_classifier_student,
)
from pldistill.models.loading import build_tiny_teacher, set_encoder_window

C, EL, EP = 4, 8, 6
FRAMES = 200  # 2 s window: 100 encoder positions, 50 audio tokens


@pytest.fixture(scope="module")
def tower() -> torch.nn.Module:
    teacher = build_tiny_teacher(0)
    set_encoder_window(teacher.audio_tower, FRAMES / 100)
    return teacher.audio_tower


def _mels(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, 128, FRAMES, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(batch, FRAMES, dtype=torch.long)
    mask[1, 120:] = 0
    return x, mask


def _wave(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.randn(2, 16000, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 8000:] = 0
    w[1, 8000:] = 0.0
    return w, mask


def _whisper(tower: torch.nn.Module, **kw) -> ClassifierStudent:
    return build_classifier_student(C, encoder="whisper", audio_tower=tower, ling_dim=EL, pros_dim=EP, **kw)


def _hubert(**kw) -> ClassifierStudent:
    return build_classifier_student(C, encoder="hubert", ling_dim=EL, pros_dim=EP, **kw)


def test_masked_mean_ignores_padding_rows() -> None:
    h = torch.randn(2, 5, 3)
    valid = torch.tensor([[True, True, False, False, False], [False, False, False, False, False]])
    dirty = h.clone()
    dirty[0, 2:] = float("nan")
    dirty[1] = float("inf")
    out = masked_mean(dirty, valid)
    torch.testing.assert_close(out[0], h[0, :2].mean(0))
    assert torch.equal(out[1], torch.zeros(3))  # nothing valid: zeros, not NaN


def test_whisper_shapes_and_disjoint_heads(tower: torch.nn.Module) -> None:
    s = _whisper(tower).eval()
    out = s(*_mels())
    assert out.logits.shape == (3, C) and out.ling_emb.shape == (3, EL) and out.pros_emb.shape == (3, EP)
    # GELU heads over the same pooled vector, with their own weights
    pooled = s.pooled(*_mels())
    torch.testing.assert_close(out.ling_emb, torch.nn.functional.gelu(s.linguistic[0](pooled)))
    torch.testing.assert_close(out.logits, s.classifier(torch.cat([out.ling_emb, out.pros_emb], -1)))
    assert s.linguistic[0].weight.data_ptr() != s.prosodic[0].weight.data_ptr()


def test_whisper_frames_past_the_mask_do_not_matter(tower: torch.nn.Module) -> None:
    """Mel frames beyond the mask (past the first conv's one-frame reach) cannot change the output."""
    s = _whisper(tower).eval()
    x, mask = _mels()
    dirty = x.clone()
    dirty[1, :, 121:] = 1e3 * torch.randn(128, FRAMES - 121)
    with torch.no_grad():
        assert torch.equal(s(x, mask).logits, s(dirty, mask).logits)


def test_hubert_padding_does_not_change_output() -> None:
    s = _hubert().eval()
    w, mask = _wave()
    with torch.no_grad():
        batched = s(w, mask)
        alone = s(w[1:, :8000], mask[1:, :8000])
    torch.testing.assert_close(batched.logits[1:], alone.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.pros_emb[1:], alone.pros_emb, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["whisper", "hubert"])
def test_frozen_encoder_gets_no_grad_and_stays_in_eval(tower: torch.nn.Module, kind: str) -> None:
    s = _whisper(tower) if kind == "whisper" else _hubert()
    s.train()
    assert not s.encoder.training and s.classifier.training
    out = s(*(_mels() if kind == "whisper" else _wave()))
    (out.logits.sum() + out.ling_emb.sum()).backward()
    assert all(p.grad is None and not p.requires_grad for p in s.encoder.parameters())
    assert all(p.grad is not None for n, p in s.named_parameters() if not n.startswith("encoder."))


def test_trainable_whisper_is_a_copy_of_the_shared_tower(tower: torch.nn.Module) -> None:
    s = _whisper(tower, train_encoder=True).train()
    assert s.encoder.tower is not tower and s.encoder.training
    s(*_mels()).logits.sum().backward()
    assert s.encoder.tower.conv1.weight.grad is not None
    assert s.encoder.tower.embed_positions.weight.grad is None  # sinusoids stay fixed
    assert all(not p.requires_grad for p in tower.parameters())  # the shared one is untouched


def test_trainable_hubert_gets_grad() -> None:
    s = _hubert(train_encoder=True).train()
    s(*_wave()).logits.sum().backward()
    assert s.encoder.model.feature_extractor.conv_layers[0].conv.weight.grad is not None
    assert s.encoder.model.encoder.layers[0].attention.q_proj.weight.grad is not None


def test_same_seed_same_model(tower: torch.nn.Module) -> None:
    a, b, c = _hubert(seed=3).eval(), _hubert(seed=3).eval(), _hubert(seed=4).eval()
    w, mask = _wave()
    with torch.no_grad():
        assert torch.equal(a(w, mask).logits, b(w, mask).logits)
        assert not torch.equal(a(w, mask).logits, c(w, mask).logits)


def test_hubert_from_local_checkpoint(tmp_path: Path) -> None:
    tiny = _hubert(seed=7)
    tiny.encoder.model.save_pretrained(tmp_path / "hubert")
    from_path = build_classifier_student(C, encoder="hubert", hubert=str(tmp_path / "hubert"), ling_dim=EL,
                                         pros_dim=EP, seed=7).eval()
    w, mask = _wave()
    with torch.no_grad():
        torch.testing.assert_close(from_path.pooled(w, mask), tiny.eval().pooled(w, mask))
    with pytest.raises(InputError, match="model.hubert"):
        build_classifier_student(C, encoder="hubert", hubert=str(tmp_path / "missing"))


@pytest.mark.parametrize("kind", ["whisper", "hubert"])
def test_save_load_round_trip(tower: torch.nn.Module, tmp_path: Path, kind: str) -> None:
    s = (_whisper(tower) if kind == "whisper" else _hubert(train_encoder=True)).eval()
    with torch.no_grad():  # perturb the heads so that a fresh init would not match by chance
        s.classifier.bias.add_(1.0)
    inputs = _mels() if kind == "whisper" else _wave()
    save_classifier_student(s, tmp_path, labels=["a", "b", "c", "d"])
    loaded = load_classifier_student(tmp_path)
    with torch.no_grad():
        for x, y in zip(s(*inputs), loaded(*inputs)):
            assert torch.equal(x, y)
    cfg = json.loads((tmp_path / "classifier.json").read_text())
    assert cfg["labels"] == ["a", "b", "c", "d"] and cfg["encoder"]["kind"] == kind
    assert loaded.train_encoder == (kind == "hubert")


def test_load_reports_a_broken_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="classifier.json"):
        load_classifier_student(tmp_path)
    save_classifier_student(_hubert(), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a loadable classifier student"):
        load_classifier_student(tmp_path)


def test_bad_arguments(tower: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="audio_tower"):
        build_classifier_student(C, encoder="whisper")
    with pytest.raises(ValueError, match="whisper, hubert"):
        build_classifier_student(C, encoder="wav2vec")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label names"):
        save_classifier_student(_hubert(), Path("/nonexistent"), labels=["a"])
    assert TINY_HUBERT["feat_extract_norm"] == "layer"


def test_student_distils_from_cached_teacher_outputs() -> None:
    """How the pieces compose in a trial step: student forward, per-head maps to the teachers'
    widths, the EmoDistill terms. A few steps lower the objective, CE and both cosine terms (the
    maps are student parameters and learn); with w_p = 0 the prosodic map gets no gradient."""
    from pldistill.losses.emodistill import (
        EmbeddingMap,
        emodistill_terms,
        emodistill_total,
        emodistill_weights,
    )

    torch.manual_seed(0)
    s = _hubert(seed=1).train()
    w, mask = _wave()
    labels = torch.tensor([0, 2])
    teacher = dict(teacher_p_logits=torch.randn(2, C), teacher_l_logits=torch.randn(2, C),
                   teacher_p_emb=torch.randn(2, 5), teacher_l_emb=torch.randn(2, 12))
    maps = {"ling": EmbeddingMap(EL, 12), "pros": EmbeddingMap(EP, 5)}
    params = [p for p in s.parameters() if p.requires_grad] + [p for m in maps.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)

    def step(weights: dict[str, float]) -> dict[str, float]:
        out = s(w, mask)
        terms = emodistill_terms(out.logits, maps["ling"](out.ling_emb), maps["pros"](out.pros_emb), labels,
                                 **teacher)
        opt.zero_grad()
        emodistill_total(terms, weights).backward()
        opt.step()
        return {k: v.item() for k, v in terms.items()}

    both = emodistill_weights(1.0, 1.0, 1.0)
    first = step(both)
    for _ in range(30):
        last = step(both)
    total = lambda t: sum(both[k] * t[k] for k in t)  # noqa: E731
    assert total(last) < 0.5 * total(first)
    # random teachers disagree with the labels, so not every KL can fall; CE and the cosines can
    assert last["ce"] < first["ce"] and last["cos_prosodic"] < 0.5 * first["cos_prosodic"]
    assert last["cos_linguistic"] < 0.5 * first["cos_linguistic"]
    opt.zero_grad()
    s.zero_grad()
    out = s(w, mask)
    terms = emodistill_terms(out.logits, maps["ling"](out.ling_emb), maps["pros"](out.pros_emb), labels, **teacher)
    emodistill_total(terms, emodistill_weights(0.0, 1.0, 1.0)).backward()
    assert maps["pros"].map.weight.grad is None and maps["ling"].map.weight.grad is not None
