"""``bench/north_star.py``: clip counting from EmoBox manifests and the projection arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _bench import load_bench

ROOT = Path(__file__).resolve().parents[2]
REAL_MANIFESTS = ROOT.parent / "shared" / "emobox"




ns = load_bench("north_star")

SAVEE_RAW = {"a": "Angry", "d": "Disgust", "f": "Fear", "h": "Happy", "n": "Neutral", "sa": "Sad", "su": "Surprise"}
SPEAKERS = ("DC", "JE", "JK", "KL")


def _savee_like(root: Path) -> Path:
    """SAVEE's layout with 4 speakers x 7 emotions x 2 clips; fold k tests speaker k."""
    d = root / "savee"
    d.mkdir(parents=True)
    (d / "label_map.json").write_text(json.dumps(SAVEE_RAW))

    def line(spk: str, emo: str, i: int) -> str:
        length = 7.2 if (spk, emo, i) == ("KL", "a", 1) else 3.0  # one long clip: an 8 s window
        return json.dumps({"key": f"savee-{spk}-{emo}{i:02d}", "dataset": "savee", "wav": f"w/{spk}_{emo}{i}.wav",
                           "type": "raw", "sample_rate": 16000, "num_frame": int(16000 * length), "task": "category",
                           "length": length, "emo": emo, "channel": 1})

    for k, test_spk in enumerate(SPEAKERS, 1):
        fold = d / f"fold_{k}"
        fold.mkdir()
        for part, spks in (("test", [test_spk]), ("train", [s for s in SPEAKERS if s != test_spk])):
            lines = [line(s, e, i) for s in spks for e in SAVEE_RAW for i in (1, 2)]
            (fold / f"savee_{part}_fold_{k}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_fold_counts_follow_the_speaker_disjoint_validation_carve(tmp_path: Path) -> None:
    folds = ns.dataset_folds(_savee_like(tmp_path), "savee")
    assert [f.fold for f in folds] == [1, 2, 3, 4]
    for f in folds:
        # 42 training clips of 3 speakers; 15 % of them is 6.3 clips, so one whole speaker (14) is held out
        assert (f.train, f.val, f.test) == (28, 14, 14)
        # the window covers the fold's longest clip (KL's 7.2 s one is in every fold, train or test)
        assert f.window_s == 8.0
    assert ns.fold_counts(tmp_path, "savee", 2, val_fraction=0.4).val == 28  # 0.4 x 42 = 16.8: two speakers


@pytest.mark.skipif(not REAL_MANIFESTS.is_dir(), reason="the shared EmoBox manifests are not here")
def test_real_manifests_give_the_benchmark_clip_counts() -> None:
    totals = {}
    for d in ns.DATASETS:
        folds = ns.dataset_folds(REAL_MANIFESTS, d)
        totals[d] = (len(folds), sum(f.train + f.val for f in folds), sum(f.test for f in folds))
        assert all(f.val > 0 for f in folds)
    # fold counts and clips per fold file (every clip is tested once; train files hold the others)
    assert totals == {"iemocap": (5, 22124, 5531), "ravdess": (6, 7200, 1440), "savee": (4, 1440, 480)}


def test_lpt_puts_the_longest_jobs_first_on_the_least_loaded_slot() -> None:
    assert ns.lpt_makespan([3, 3, 2, 2, 2], 2) == 7  # 3+2+2 | 3+2 (LPT, not the optimum 6)
    assert ns.lpt_makespan([5, 1, 1], 3) == 5
    assert ns.lpt_makespan([1, 2, 3], 1) == 6
    with pytest.raises(ValueError, match="slots"):
        ns.lpt_makespan([1], 0)


def _hand_case():
    folds = {"d": [ns.FoldCounts("d", 1, 100, 10, 20, 5.0), ns.FoldCounts("d", 2, 200, 10, 20, 5.0)]}
    rates = ns.Rates(train_sps=10.0, eval_sps=30.0, cache_cps=50.0, overhead_s=5.0)
    grid = ns.Grid("g", ("a", "b"), teacher_eval=True, datasets=("d",))
    return folds, rates, grid


def test_projection_of_a_hand_case() -> None:
    folds, rates, grid = _hand_case()
    # a trial: 2 epochs x train / 10 + 2 epochs x (val + test) / 30 + 5 s: fold 1 20 + 2 + 5, fold 2 40 + 2 + 5
    assert ns.trial_seconds(folds["d"][0], 2, 10.0, rates) == {"train": 20.0, "eval": 2.0, "overhead": 5.0}
    p = ns.project(grid, folds, rates, cached=True, epochs=2, seeds=1, gpus=2)
    assert p.trials == 4
    # prepare: caches 130/50 = 2.6 and 230/50 = 4.6 s, teacher scoring 20/50 = 0.4 s twice, on 2 GPUs
    assert p.prepare_wall_s == pytest.approx(4.6)
    assert p.trials_wall_s == pytest.approx(74.0)  # 47 + 27 on each GPU
    assert p.wall_s == pytest.approx(78.6)
    assert p.gpu_s == pytest.approx({"train": 120.0, "eval": 8.0, "overhead": 20.0, "cache build": 7.2,
                                     "teacher scoring": 0.8})
    assert p.dominant == ("train", pytest.approx(120.0 / 156.0))
    # two trials per GPU: 4 slots, each trial on half a GPU; online: no cache to build
    two = ns.project(grid, folds, rates, cached=False, epochs=2, seeds=1, gpus=2, trials_per_gpu=2)
    assert two.trials_wall_s == pytest.approx(47.0) and two.prepare_wall_s == pytest.approx(0.4)
    assert two.gpu_s["train"] == pytest.approx(60.0) and two.gpu_s["cache build"] == 0.0
    # three seeds triple the trials; testing only once: 2 x 10 val + 20 test clips per trial
    assert ns.project(grid, folds, rates, cached=True, epochs=2, seeds=3, gpus=2).trials == 12
    once = ns.trial_seconds(folds["d"][0], 2, 10.0, rates, test_each_epoch=False)
    assert once["eval"] == pytest.approx(40 / 30)


def test_sft_uses_its_own_rate() -> None:
    folds, rates, _ = _hand_case()
    grid = ns.Grid("g", ("sft",), teacher_eval=False, datasets=("d",))
    slow = ns.project(grid, folds, rates, cached=True, epochs=1, seeds=1, gpus=1)
    fast = ns.project(grid, folds, ns.Rates(**{**vars(rates), "sft_sps": 20.0}), cached=True, epochs=1,
                      seeds=1, gpus=1)
    assert slow.gpu_s["train"] == pytest.approx(30.0) and fast.gpu_s["train"] == pytest.approx(15.0)


@pytest.mark.skipif(not REAL_MANIFESTS.is_dir(), reason="the shared EmoBox manifests are not here")
def test_main_prints_the_grids_and_takes_a_new_measurement(capsys: pytest.CaptureFixture[str]) -> None:
    out = ns.main([])
    text = capsys.readouterr().out
    assert "Tables 1 + 2" in text and "assumptions" in text and "dominant" in text
    fast, slow = out[("Table 1", "cached")]
    assert fast.wall_s < slow.wall_s and fast.trials == 5 * 15 * 3  # 5 methods x 15 folds x 3 seeds
    assert out[("Table 2", "cached")][0].trials == 3 * 15 * 3
    # a plugged-in rate twice the fast end's halves the training GPU time
    doubled = ns.main(["--train-sps", str(2 * 1 / 0.137), "--sft-sps", str(2 * 1 / 0.137)])
    capsys.readouterr()
    got, ref = doubled[("Table 1", "cached")][0].gpu_s["train"], fast.gpu_s["train"]
    assert got == pytest.approx(ref / 2)
