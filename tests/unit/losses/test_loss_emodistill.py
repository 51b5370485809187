"""EmoDistill terms: properties, independent NumPy float64 references, gradcheck, ablation wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pldistill.losses.emodistill import (
    EMODISTILL_TERMS,
    EmbeddingMap,
    class_kl,
    cosine_embedding_loss,
    emodistill_terms,
    emodistill_total,
    emodistill_weights,
)

F64 = torch.float64
B, C, EL, EP = 5, 4, 6, 3


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# --- NumPy references: written from the definitions, loops and probabilities, no log-space tricks.

def _np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _np_class_kl(t: np.ndarray, s: np.ndarray, temperature: float) -> float:
    rows = []
    for ti, si in zip(t, s):
        p, q = _np_softmax(ti / temperature), _np_softmax(si / temperature)
        rows.append(sum(p[c] * math.log(p[c] / q[c]) for c in range(len(p))))
    return float(np.mean(rows))


def _np_cosine_loss(s: np.ndarray, t: np.ndarray) -> float:
    return float(np.mean([1.0 - a @ b / (np.sqrt(a @ a) * np.sqrt(b @ b)) for a, b in zip(s, t)]))


def _np_ce(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([-math.log(_np_softmax(zi)[yi]) for zi, yi in zip(z, y)]))


# --- class_kl

@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_class_kl_matches_numpy(temperature: float) -> None:
    t, s = _randn(0, B, C, scale=2.0), _randn(1, B, C, scale=2.0)
    ref = _np_class_kl(t.numpy(), s.numpy(), temperature)
    assert class_kl(t, s, temperature=temperature).item() == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("temperature", [0.5, 4.0])
def test_class_kl_zero_for_identical_and_shifted_logits(temperature: float) -> None:
    z = _randn(2, B, C)
    assert class_kl(z, z.clone(), temperature=temperature).item() == pytest.approx(0.0, abs=1e-14)
    # softmax ignores a per-row constant
    assert class_kl(z, z + 3.0, temperature=temperature).item() == pytest.approx(0.0, abs=1e-13)


@pytest.mark.parametrize("seed", range(4))
def test_class_kl_non_negative(seed: int) -> None:
    assert class_kl(_randn(seed, B, C, scale=3.0), _randn(seed + 9, B, C), temperature=0.5).item() >= 0.0


def test_class_kl_temperature_softens() -> None:
    """A higher temperature flattens both distributions: the divergence shrinks towards 0 (no t**2)."""
    t, s = _randn(3, B, C, scale=2.0), _randn(4, B, C, scale=2.0)
    values = [class_kl(t, s, temperature=tau).item() for tau in (0.5, 1.0, 4.0, 100.0)]
    assert values == sorted(values, reverse=True)
    assert values[-1] < 1e-3 * values[0]


def test_class_kl_gradcheck_and_teacher_detached() -> None:
    t = _randn(5, 3, C).requires_grad_(True)
    s = _randn(6, 3, C).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: class_kl(t, x, temperature=0.5), (s,))
    class_kl(t, s, temperature=4.0).backward()
    assert t.grad is None and s.grad is not None


def test_class_kl_float32_and_bad_arguments() -> None:
    t, s = _randn(0, B, C).float(), _randn(1, B, C).float()
    assert class_kl(t, s, temperature=1.0).dtype == torch.float32
    with pytest.raises(ValueError, match="temperature"):
        class_kl(t, s, temperature=0.0)
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        class_kl(t, s[:, :2], temperature=1.0)


# --- cosine_embedding_loss

def test_cosine_matches_numpy() -> None:
    s, t = _randn(7, B, EL), _randn(8, B, EL)
    assert cosine_embedding_loss(s, t).item() == pytest.approx(_np_cosine_loss(s.numpy(), t.numpy()), rel=1e-12)


def test_cosine_properties() -> None:
    s = _randn(9, B, EL)
    assert cosine_embedding_loss(s, s.clone()).item() == pytest.approx(0.0, abs=1e-14)
    assert cosine_embedding_loss(s, 5.0 * s).item() == pytest.approx(0.0, abs=1e-14)  # scale-invariant
    assert cosine_embedding_loss(s, -s).item() == pytest.approx(2.0, abs=1e-14)  # opposite
    for seed in range(4):
        v = cosine_embedding_loss(_randn(seed, B, EL), _randn(seed + 20, B, EL)).item()
        assert 0.0 <= v <= 2.0
    zero = torch.zeros(B, EL, dtype=F64)
    assert cosine_embedding_loss(zero, s).item() == pytest.approx(1.0)  # zero vector: orthogonal, no NaN


def test_cosine_gradcheck_and_teacher_detached() -> None:
    t = _randn(10, 3, EP).requires_grad_(True)
    s = _randn(11, 3, EP).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: cosine_embedding_loss(x, t), (s,))
    cosine_embedding_loss(s, t).backward()
    assert t.grad is None and s.grad is not None


def test_cosine_rejects_width_mismatch() -> None:
    with pytest.raises(ValueError, match="map the student head"):
        cosine_embedding_loss(_randn(0, B, EL), _randn(1, B, EP))


# --- EmbeddingMap

def test_embedding_map_identity_or_linear_without_bias() -> None:
    same = EmbeddingMap(EL, EL)
    x = _randn(12, B, EL).float()
    assert torch.equal(same(x), x) and not list(same.parameters())
    grow = EmbeddingMap(EL, 10)
    assert grow(x).shape == (B, 10)
    assert [p.shape for p in grow.parameters()] == [torch.Size([10, EL])]
    with pytest.raises(ValueError):
        EmbeddingMap(0, 3)


def test_embedding_map_learns_to_align() -> None:
    """The map is what lets a narrower student head match a wider teacher embedding."""
    torch.manual_seed(0)
    student = torch.randn(64, 4)
    teacher = student @ torch.randn(4, 8)  # a linear image of the student's space
    m = EmbeddingMap(4, 8)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    start = cosine_embedding_loss(m(student), teacher).item()
    for _ in range(200):
        loss = cosine_embedding_loss(m(student), teacher)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert start > 0.3 and loss.item() < 0.01


# --- emodistill_terms / weights / total

def _batch(seed: int = 0, grad: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape: int, scale: float = 1.0, student: bool = False) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=g, dtype=F64)).requires_grad_(grad and student)

    return dict(
        student_logits=leaf(B, C, scale=2.0, student=True),
        ling_emb_mapped=leaf(B, EL, student=True),
        pros_emb_mapped=leaf(B, EP, student=True),
        labels=torch.randint(0, C, (B,), generator=g),
        teacher_p_logits=leaf(B, C, scale=2.0),
        teacher_l_logits=leaf(B, C, scale=2.0),
        teacher_p_emb=leaf(B, EP),
        teacher_l_emb=leaf(B, EL),
    )


def test_terms_match_numpy() -> None:
    b = _batch(1, grad=False)
    terms = emodistill_terms(**b, tau_p=0.5, tau_l=4.0)
    assert tuple(terms) == EMODISTILL_TERMS
    n = {k: v.numpy() for k, v in b.items()}
    ref = {
        "ce": _np_ce(n["student_logits"], n["labels"]),
        "kl_prosodic": _np_class_kl(n["teacher_p_logits"], n["student_logits"], 0.5),
        "kl_linguistic": _np_class_kl(n["teacher_l_logits"], n["student_logits"], 4.0),
        "cos_prosodic": _np_cosine_loss(n["pros_emb_mapped"], n["teacher_p_emb"]),
        "cos_linguistic": _np_cosine_loss(n["ling_emb_mapped"], n["teacher_l_emb"]),
    }
    for k, v in ref.items():
        assert terms[k].item() == pytest.approx(v, rel=1e-12), k


def test_terms_default_temperatures_are_the_papers() -> None:
    b = _batch(2, grad=False)
    default = emodistill_terms(**b)
    explicit = emodistill_terms(**b, tau_p=0.5, tau_l=4.0)
    for k in EMODISTILL_TERMS:
        assert default[k].item() == explicit[k].item()


def test_total_gradcheck() -> None:
    b = _batch(3)
    w = emodistill_weights(0.7, 1.3, 0.4)
    students = (b["student_logits"], b["ling_emb_mapped"], b["pros_emb_mapped"])

    def total(logits: torch.Tensor, ling: torch.Tensor, pros: torch.Tensor) -> torch.Tensor:
        args = {**b, "student_logits": logits, "ling_emb_mapped": ling, "pros_emb_mapped": pros}
        return emodistill_total(emodistill_terms(**args), w)

    assert torch.autograd.gradcheck(total, students)
    # and the total is the weighted sum of the logged terms
    terms = emodistill_terms(**b)
    expected = sum(w[k] * terms[k].item() for k in EMODISTILL_TERMS)
    assert total(*students).item() == pytest.approx(expected, rel=1e-12)


def test_weights_switch_a_teacher_off_entirely() -> None:
    assert emodistill_weights(1.0, 2.0, 0.5) == {
        "ce": 1.0, "kl_prosodic": 1.0, "kl_linguistic": 2.0, "cos_prosodic": 0.5, "cos_linguistic": 0.5}
    assert emodistill_weights(0.0, 2.0, 0.5)["cos_prosodic"] == 0.0
    assert emodistill_weights(1.0, 0.0, 0.5)["cos_linguistic"] == 0.0
    with pytest.raises(ValueError, match="w_cos"):
        emodistill_weights(1.0, 1.0, -0.1)


@pytest.mark.parametrize(("ablated", "fields"), [
    ("prosodic", ("teacher_p_logits", "teacher_p_emb")),
    ("linguistic", ("teacher_l_logits", "teacher_l_emb")),
])
def test_zero_teacher_weight_leaves_no_gradient_path(ablated: str, fields: tuple[str, ...]) -> None:
    """With w_p = 0 (w_l = 0) the student's gradient does not depend on that teacher at all: NaN
    teacher outputs change neither the loss nor any gradient, and the ablated head gets none."""
    w = emodistill_weights(0.0, 1.0, 0.5) if ablated == "prosodic" else emodistill_weights(1.0, 0.0, 0.5)
    head = "pros_emb_mapped" if ablated == "prosodic" else "ling_emb_mapped"

    def grads(poison: bool) -> tuple[float, list[torch.Tensor | None]]:
        b = _batch(4)
        if poison:
            for f in fields:
                b[f] = torch.full_like(b[f], float("nan"))
        total = emodistill_total(emodistill_terms(**b), w)
        total.backward()
        return total.item(), [b[k].grad for k in ("student_logits", "ling_emb_mapped", "pros_emb_mapped")]

    clean_value, clean = grads(False)
    dirty_value, dirty = grads(True)
    assert dirty_value == clean_value
    for g_clean, g_dirty in zip(clean, dirty):
        if g_clean is None:
            assert g_dirty is None
        else:
            assert g_dirty is not None and torch.equal(g_clean, g_dirty)
    assert dict(zip(("student_logits", "ling_emb_mapped", "pros_emb_mapped"), clean))[head] is None


def test_total_rejects_unknown_and_handles_all_zero() -> None:
    terms = emodistill_terms(**_batch(5, grad=False))
    with pytest.raises(ValueError, match="not computed"):
        emodistill_total(terms, {"cka": 1.0})
    assert emodistill_total(terms, dict.fromkeys(EMODISTILL_TERMS, 0.0)).item() == 0.0
