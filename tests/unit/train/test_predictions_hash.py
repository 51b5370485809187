"""Each run's test predictions are hashed into the trial's row (``fold_metrics.predictions_sha256``):
two runs agree there only when their outputs agree to the last bit."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from pldistill.results import TrialRecord
from pldistill.train.loop import PREDICTIONS_FILE, predictions_hash, write_predictions

LABELS = ("ang", "hap", "neu", "sad")


def _scored(seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [(f"clip{i}", int(rng.integers(4)), [float(x) for x in rng.normal(size=4).astype(np.float32)], None)
            for i in range(6)]


def test_the_hash_is_of_the_written_predictions_and_changes_with_the_last_bit(tmp_path) -> None:
    scored = _scored()
    digest = write_predictions(tmp_path, scored, LABELS)
    rows = pq.read_table(tmp_path / PREDICTIONS_FILE).to_pylist()
    assert digest == predictions_hash([(r["key"], r["label"], r["scores"], r["lexical"]) for r in rows])
    assert digest == predictions_hash(_scored()) and len(digest) == 16
    nudged = [*scored[:-1], (scored[-1][0], scored[-1][1], [np.nextafter(scored[-1][2][0], 9.0), *scored[-1][2][1:]],
                             None)]
    assert predictions_hash(nudged) != digest  # one score one ulp away
    assert predictions_hash(list(reversed(scored))) != digest  # another order is another run's output


def test_the_trial_row_carries_each_runs_hash() -> None:
    folds = [{"fold": 1, "seed": s, "best_epoch": 1, "best": {}, "teacher": {}, "predictions_sha256": h}
             for s, h in ((0, "aa"), (1, "bb"))]
    record = TrialRecord.from_result({"metrics": {}, "folds": folds}, trial_id="t", status="completed")
    assert [f["predictions_sha256"] for f in record.to_row()["fold_metrics"]] == ["aa", "bb"]
