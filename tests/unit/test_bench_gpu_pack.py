"""``bench/gpu_pack.py``: k cached trials as k processes on one device; wiring checked on CPU."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from _bench import load_bench

ROOT = Path(__file__).resolve().parents[2]




gp = load_bench("gpu_pack")


def test_parse_trials() -> None:
    assert gp.parse_trials("1,2,4,8") == [1, 2, 4, 8]
    for bad in ("", "0,1", "1,1", "a"):
        with pytest.raises(argparse.ArgumentTypeError, match="--trials"):
            gp.parse_trials(bad)


def _report(sps: float, steps: int = 10) -> dict:
    return {"steps": steps, "elapsed_s": 1.0, "samples_per_s": sps, "step_s_median": 1 / sps,
            "peak_alloc_gib": 3.0, "peak_reserved_gib": 4.0, "device_used_gib": 9.0, "peak_rss_gib": 1.0}


def test_summary_sums_the_trials_and_compares_with_one() -> None:
    rows = gp.summarize([{"k": 1, "status": "ok", "reports": [_report(4.0)]},
                         {"k": 2, "status": "ok", "reports": [_report(3.0), _report(3.5)]},
                         {"k": 4, "status": "timeout (5 s) while stepping", "reports": []}])
    assert rows[0][:5] == ["1", "4.00", "0.250", "4.00", "1.00"]
    assert rows[1][1] == "3.00-3.50" and rows[1][3] == "6.50" and rows[1][4] == "1.62"
    assert rows[1][5:8] == ["3.0", "4.0", "9.0"] and rows[1][-1] == "ok, 20 steps"
    assert rows[2][0] == "4" and rows[2][-1].startswith("timeout") and rows[2][1] == "-"
    assert all(len(r) == len(gp.HEADER) for r in rows)


def _args(**kw) -> argparse.Namespace:
    args = gp._parser().parse_args(["--dry-run"])
    args.scale, args.device, args.seconds, args.warmup = 1 / 32, "cpu", 0.5, 1
    return argparse.Namespace(**{**vars(args), **kw})


def test_a_row_that_runs_out_of_time_kills_its_trials(tmp_path: Path) -> None:
    row = gp._run_k(_args(timeout=0.2), tmp_path, 2)
    assert row["status"].startswith("timeout") and row["reports"] == []


def test_a_trial_that_fails_is_reported(tmp_path: Path) -> None:
    row = gp._run_k(_args(timeout=120.0), tmp_path, 1)  # nothing prepared in tmp_path: the trial cannot start
    assert "failed" in row["status"] and row["reports"] == []


def test_dry_run_measures_one_and_two_trials_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    rows = gp.main(["--dry-run", "--seconds", "0.5"])
    out = capsys.readouterr().out
    assert [r["k"] for r in rows] == [1, 2] and all(r["status"] == "ok" for r in rows)
    assert [len(r["reports"]) for r in rows] == [1, 2]
    for r in rows:
        for rep in r["reports"]:
            assert rep["steps"] >= 1 and rep["samples_per_s"] > 0 and rep["peak_rss_gib"] > 0
            assert rep["peak_alloc_gib"] is None  # CPU: no CUDA figures are claimed
    assert "aggregate samples/s" in out and "device cpu" in out
