"""How many seeds each trial used, and why no more: typed columns in the trials table that SQL, ``best``
and ``status`` read (``search.replicates``: pldistill.train.replicates)."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pyarrow.parquet as pq
import pytest

from pldistill.results import (
    ResultsStore,
    SchemaError,
    TrialRecord,
    best_trials,
    run_query,
    sweep_status,
    trials_table,
)


def _result(seeds: list[int], stop: str | None, half: float | None) -> dict:
    """``asdict(TrialResult)`` of a trial over folds 1 and 2."""
    folds = [{"fold": f, "seed": s, "best_epoch": 1, "best": {"val_ua": 0.6 + s / 100, "test_ua": 0.5},
              "teacher": {}} for s in seeds for f in (1, 2)]
    return {"folds": folds, "metrics": {"val_ua": 0.61, "test_ua": 0.5}, "wall_s": 1.0, "samples_per_s": 1.0,
            "world_size": 1, "restarts": 0, "seeds_used": len(seeds) if stop else 0, "seeds_stop": stop,
            "seeds_half_width": half}


def test_a_trial_result_fills_typed_seed_columns():
    record = TrialRecord.from_result(_result([0, 1, 2, 3], "precision", 0.021), sweep="s", trial_id="t", status="completed")
    table = trials_table([record])
    assert str(table.schema.field("seeds_used").type) == "int64"
    assert str(table.schema.field("seeds_stop").type) == "string"
    assert str(table.schema.field("seeds_half_width").type) == "double"
    row = table.to_pylist()[0]
    assert (row["seeds"], row["seeds_used"], row["seeds_stop"], row["seeds_half_width"]) == \
        ([0, 1, 2, 3], 4, "precision", 0.021)
    # a result from before adaptive replication (no such keys, or the dataclass defaults) leaves them null
    old = TrialRecord.from_result(_result([0], None, None), sweep="s", trial_id="t", status="completed")
    assert (old.seeds_used, old.seeds_stop, old.seeds_half_width) == (None, None, None)


def test_an_unknown_stop_reason_is_refused(trial):
    make_trial = trial  # the results conftest's factory (a fixture: "conftest" names two modules under xdist)
    with pytest.raises(SchemaError, match="trials: column seeds_stop: expected one of precision, cap, fixed, got 'bored'"):
        trials_table([make_trial("t", seeds_used=3, seeds_stop="bored")])


@pytest.fixture
def root(tmp_path, trial):
    make_trial = trial
    root = tmp_path / "results"
    store = ResultsStore(root, "adaptive")
    store.write_sweep_meta({"metric": "val_ua", "mode": "max"})
    store.write_trial(make_trial("t0", test_ua=0.70, seeds_used=3, seeds_stop="precision", seeds_half_width=0.02))
    store.write_trial(make_trial("t1", test_ua=0.60, seeds_used=10, seeds_stop="cap", seeds_half_width=0.041))
    # a sweep written before the columns existed: its file lacks them (absent, not null)
    old = trials_table([make_trial("t9", sweep="old")])
    old = old.drop_columns([c for c in old.column_names if c.startswith("seeds_")])
    (root / "old" / "trials").mkdir(parents=True)
    pq.write_table(old, root / "old" / "trials" / "t9.parquet")
    return root


def test_sql_selects_trials_by_seeds_used_and_stop(root):
    rows = run_query(root, "SELECT trial_id, seeds_used, seeds_stop FROM trials WHERE seeds_stop = 'cap'").to_pylist()
    assert rows == [{"trial_id": "t1", "seeds_used": 10, "seeds_stop": "cap"}]
    assert run_query(root, "SELECT seeds_used FROM trials WHERE sweep = 'old'").to_pylist() == [{"seeds_used": None}]


def test_best_and_status_show_the_seeds_used(root):
    best = best_trials(root, metric="val_ua", sweep="adaptive").to_pylist()[0]
    assert (best["trial_id"], best["seeds_used"], best["seeds_stop"]) == ("t0", 3, "precision")
    status = {r["sweep"]: r for r in sweep_status(root).to_pylist()}
    assert status["adaptive"]["best_seeds"] == "3 (precision)"
    assert status["old"]["best_seeds"] is None

    from pldistill.cli.results import OutputFormat, print_best

    out = io.StringIO()
    with redirect_stdout(out):
        print_best(root, sweep="adaptive", fmt=OutputFormat.table)
    header = next(line for line in out.getvalue().splitlines() if "seeds_used" in line)
    assert "seeds_stop" in header and "precision" in out.getvalue()


def test_status_of_results_older_than_the_seed_columns(root):
    only_old = root.parent / "only_old"
    only_old.mkdir()
    (root / "old").rename(only_old / "old")
    assert [r["best_seeds"] for r in sweep_status(only_old).to_pylist()] == [None]  # no such columns at all


def test_every_table_row_says_its_seeds_and_why_no_more(root, trial):
    """Table 1's row of the trial that stopped on precision says "3 (precision)"; a trial at the cap
    "10 (cap)" (each its own method here, so each is a row)."""
    from pldistill.results import report as rep

    ResultsStore(root, "adaptive").write_trial(trial("t1", test_ua=0.60, objective="sft", seeds_used=10,
                                                     seeds_stop="cap", seeds_half_width=0.041))
    md = rep.render_markdown(rep.build_report(root, "adaptive"), {})
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert "synthetic seeds" in table[0]
    assert any(line.startswith("| PL-Distill") and line.rstrip(" |").endswith("3 (precision)") for line in table)
    assert any(line.startswith("| SFT") and line.rstrip(" |").endswith("10 (cap)") for line in table)
