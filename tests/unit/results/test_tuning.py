"""Tuning curves against an independent computation from the order statistics, their bands, and
which sweeps get them (random search only)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pldistill.results.tuning import TUNING_KS, tuning_curve, tuning_curves, tuning_markdown


def _expected_max(ys: np.ndarray, k: int) -> float:
    """E[max of k iid draws from the empirical distribution] = sum_i x_(i) [(i/n)^k - ((i-1)/n)^k]."""
    x, n = np.sort(ys), len(ys)
    i = np.arange(1, n + 1)
    return float(np.sum(x * ((i / n) ** k - ((i - 1) / n) ** k)))


def _median_max(ys: np.ndarray, k: int) -> float:
    """The median of the max of k draws: the smallest x_(i) with F(x_(i))^k = (i/n)^k >= 1/2."""
    x, n = np.sort(ys), len(ys)
    return float(x[math.ceil(n * 0.5 ** (1 / k)) - 1])


def _expected_min(ys: np.ndarray, k: int) -> float:
    """E[min of k draws] = sum_i x_(i) [(1 - (i-1)/n)^k - (1 - i/n)^k]."""
    x, n = np.sort(ys), len(ys)
    i = np.arange(1, n + 1)
    return float(np.sum(x * ((1 - (i - 1) / n) ** k - (1 - i / n) ** k)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curves_match_the_order_statistics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ys = rng.beta(4, 6, size=17)  # 17: n * 0.5 ** (1 / k) never lands on an integer
    median = tuning_curve("m", ys)
    mean = tuning_curve("m", ys, kind="mean")
    for k in range(1, 18):
        assert median.at(k)[0] == pytest.approx(_median_max(ys, k), abs=1e-12)
        assert mean.at(k)[0] == pytest.approx(_expected_max(ys, k), abs=1e-12)
    assert mean.at(1)[0] == pytest.approx(ys.mean())
    minimized = tuning_curve("m", ys, kind="mean", mode="min")
    assert [minimized.at(k)[0] for k in (1, 4, 17)] == pytest.approx([_expected_min(ys, k) for k in (1, 4, 17)])


@pytest.mark.parametrize("kind", ["median", "mean"])
def test_bands_contain_the_curve_and_stay_in_the_support(kind: str) -> None:
    ys = np.random.default_rng(3).uniform(0.3, 0.7, size=24)
    c = tuning_curve("m", ys, kind=kind)
    assert c.n == 24 and len(c.point) == len(c.lower) == len(c.upper) == 24
    for k in range(1, 25):
        point, lower, upper = c.at(k)
        assert 0.0 <= lower <= point <= upper <= 1.0
    # more trials never lower the best score to expect, nor its band
    for seq in (c.point, c.lower, c.upper):
        assert all(a <= b + 1e-12 for a, b in zip(seq, seq[1:]))
    # a band says something: it is narrower than the support where data are dense
    assert c.upper[0] - c.lower[0] < 0.5


def test_wider_confidence_gives_wider_bands() -> None:
    ys = np.random.default_rng(4).uniform(0.3, 0.7, size=30)
    narrow, wide = tuning_curve("m", ys, confidence=0.5), tuning_curve("m", ys, confidence=0.95)
    assert all(w <= n for w, n in zip(wide.lower, narrow.lower))
    assert all(w >= n for w, n in zip(wide.upper, narrow.upper))
    assert sum(wide.upper) - sum(wide.lower) > sum(narrow.upper) - sum(narrow.lower)


def _rows(trial: Callable[..., object], scores: dict[str, list[float]]) -> list[dict[str, object]]:
    rows = []
    for objective, vals in scores.items():
        for i, v in enumerate(vals):
            rows.append(trial(f"{objective}-{i}", objective=objective, hparams={"objective": objective},
                              val_ua=v).to_row())  # type: ignore[attr-defined]
    return rows


_RANDOM = {"config": {"search": {"algorithm": "random"}}}


def test_one_curve_per_method_over_its_finished_trials(trial: Callable[..., object]) -> None:
    rng = np.random.default_rng(5)
    scores = {"sft": list(rng.uniform(0.3, 0.5, 7)), "pl_distill": list(rng.uniform(0.4, 0.6, 9))}
    rows = _rows(trial, scores)
    rows.append(trial("p", status="pruned", objective="sft", val_ua=0.99).to_row())  # type: ignore[attr-defined]
    rows.append(trial("n", objective="sft", val_ua=math.nan).to_row())  # type: ignore[attr-defined]
    t = tuning_curves(rows, _RANDOM, "val_ua", "max")
    assert t.why is None and t.left_out == 2
    got = {c.method: c for c in t.curves}
    assert list(got) == ["SFT", "PL-Distill"]  # Table 1's order
    assert sorted(got["SFT"].scores) == pytest.approx(sorted(scores["sft"]))
    assert got["PL-Distill"].at(9)[0] == pytest.approx(_median_max(np.array(scores["pl_distill"]), 9))
    md = "\n".join(tuning_markdown(t, "tuning_curves.png"))
    assert "![tuning curves](tuning_curves.png)" in md and "2 trials left out" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| SFT |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:2] == ["SFT", "7"] and len(cells) == 2 + len(TUNING_KS) + 1
    point, lower, upper = got["SFT"].at(5)
    assert cells[3] == f"{100 * point:.1f} [{100 * lower:.1f}, {100 * upper:.1f}]"


def test_a_loss_metric_is_minimised_and_not_shown_as_percent(trial: Callable[..., object]) -> None:
    losses = [1.9, 1.2, 1.5, 0.8, 1.1, 1.4, 2.3]
    rows = [trial(f"s{i}", objective="sft", hparams={"objective": "sft"}, val_loss=v).to_row()  # type: ignore[attr-defined]
            for i, v in enumerate(losses)]
    t = tuning_curves(rows, _RANDOM, "val_loss", "min")
    (c,) = t.curves
    assert c.at(7)[0] == min(losses) and c.at(1)[0] == pytest.approx(float(np.median(losses)))
    assert all(lo <= p <= hi for lo, p, hi in zip(c.lower, c.point, c.upper))
    assert all(a >= b for a, b in zip(c.point, c.point[1:]))  # more trials, a lower loss to expect
    assert c.lower[-1] == -math.inf  # a loss has no floor the band could lean on
    row = next(ln for ln in tuning_markdown(t, None) if ln.startswith("| SFT |"))
    assert row.split("|")[5].strip().startswith(f"{min(losses):.4g} [")


@pytest.mark.parametrize(("algorithm", "words"), [("optuna", "TPE"), ("grid", "grid"), (None, "not recorded")])
def test_no_curve_without_random_search(trial: Callable[..., object], algorithm: str | None, words: str) -> None:
    rows = _rows(trial, {"sft": [0.4, 0.5, 0.6]})
    meta = {"config": {"search": {"algorithm": algorithm}}} if algorithm else None
    t = tuning_curves(rows, meta, "val_ua", "max")
    assert t.curves == [] and words in (t.why or "")
    md = tuning_markdown(t, None)
    assert sum(ln.startswith("No tuning curve:") for ln in md) == 1 and not any(ln.startswith("|") for ln in md)


def test_report_draws_the_curves_of_a_random_sweep(trial: Callable[..., object], tmp_path: Path) -> None:
    from PIL import Image

    from pldistill.cli import run_app
    from pldistill.results import ResultsStore

    root = tmp_path / "results"
    rng = np.random.default_rng(6)
    scores = {"sft": list(rng.uniform(0.3, 0.5, 6)), "forward_kl": list(rng.uniform(0.35, 0.55, 5))}
    for name, algorithm in (("rand", "random"), ("tpe", "optuna")):
        store = ResultsStore(root, name)
        store.write_sweep_meta({"metric": "val_ua", "mode": "max", "config": {"search": {"algorithm": algorithm}}})
        for objective, vals in scores.items():
            for i, v in enumerate(vals):
                store.write_trial(trial(f"{objective}-{i}", objective=objective, hparams={"objective": objective},
                                        val_ua=v))  # type: ignore[arg-type]
    assert run_app(["report", "rand", "--results", str(root)]) == 0
    out = root / "rand" / "report"
    md = (out / "report.md").read_text()
    assert "## Tuning curves (random search)" in md and "](tuning_curves.png)" in md
    with Image.open(out / "tuning_curves.png") as im:
        im.verify()
    section = md.split("## Tuning curves")[1]
    row = next(ln for ln in section.splitlines() if ln.startswith("| Forward KL |"))
    median = _median_max(np.array(scores["forward_kl"]), 5)
    assert row.split("|")[2].strip() == "5" and row.split("|")[5].strip().startswith(f"{100 * median:.1f} [")
    assert run_app(["report", "tpe", "--results", str(root)]) == 0
    md = (root / "tpe" / "report" / "report.md").read_text()
    assert "No tuning curve: this sweep searched with Optuna's TPE" in md
    assert not (root / "tpe" / "report" / "tuning_curves.png").exists()
