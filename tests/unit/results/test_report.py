"""``pldistill-sweep report``: every table cell against what ``query`` returns for that cell, the PNGs,
Optuna's importances, atomic replacement and the one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from pldistill.cli import run_app
from pldistill.errors import InputError
from pldistill.results import FoldMetrics, ResultsStore, run_query
from pldistill.results import report as rep
from pldistill.results.space import ParamSpec
from pldistill.results.wording import MARKERS

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SPACE = {"alpha": {"type": "uniform", "low": 0.0, "high": 2.0},
          "lora_rank": {"type": "int", "low": 2, "high": 16, "log": False, "step": 1},
          "weighting": {"type": "choice", "values": ["uniform", "attention_last"]}}


def _t(make_trial: Callable[..., object], tid: str, objective: str, dataset: str, val_ua: float, test_ua: float, *, status: str = "completed",
       alpha: float = 1.0, beta: float = 0.8, weighting: str = "attention_last", rank: int = 8,
       minute: int = 0) -> object:
    hp = {"objective": objective, "alpha": alpha, "beta": beta, "gamma": 1.0, "weighting": weighting,
          "lora_rank": rank, "cka_estimator": "biased"}
    # one run, on the trial's one fold: its cells show the run's test UA, n = 1 (a fold without a finite
    # run would refuse the estimate)
    runs = [FoldMetrics(fold=1, best_epoch=2, test_ua=test_ua)] if status == "completed" else []
    return make_trial(tid, status=status, test_ua=test_ua, objective=objective, dataset=dataset, hparams=hp,
                      val_ua=val_ua if status == "completed" else None, folds=[1], fold_metrics=runs,
                      test_wa=test_ua - 0.01, test_f1=test_ua - 0.02, teacher_test_ua=0.4 + int(tid[1]) / 100,
                      teacher_test_wa=0.40, teacher_test_f1=0.39, ended_at=T0 + dt.timedelta(minutes=minute))


@pytest.fixture
def root(tmp_path: Path, trial: Callable[..., object]) -> Path:
    """``mix``: four objectives on two datasets, several trials per cell, a tie, a NaN metric, a term
    switched off, failed/running trials; an Optuna space of 3 dimensions. ``lonely``: one trial."""
    root = tmp_path / "results"
    mix = ResultsStore(root, "mix")
    mix.write_sweep_meta({"metric": "val_ua", "mode": "max", "started_at": T0,
                          "config": {"name": "mix", "search": {"algorithm": "optuna", "space": _SPACE,
                                                               "grid": {}, "variants": []}}})
    trials = [
        _t(trial, "a1", "pl_distill", "iemocap", 0.70, 0.66, alpha=0.3, rank=4, minute=1),
        _t(trial, "a2", "pl_distill", "iemocap", 0.75, 0.61, alpha=1.7, rank=12, minute=2),  # best val, lower test
        _t(trial, "a3", "pl_distill", "iemocap", 0.60, 0.72, weighting="uniform", alpha=0.9, rank=6, minute=3),
        _t(trial, "a4", "pl_distill", "iemocap", 0.64, 0.59, weighting="uniform", alpha=1.2, rank=3, minute=4),
        _t(trial, "a5", "pl_distill", "iemocap", 0.62, 0.58, beta=0.0, alpha=0.5, rank=16, minute=5),
        _t(trial, "a6", "pl_distill", "iemocap", math.nan, 0.99, alpha=1.0, rank=8, minute=6),  # NaN: never shown
        _t(trial, "a7", "pl_distill", "iemocap", 0.99, 0.98, status="running"),
        _t(trial, "a8", "pl_distill", "iemocap", 0.99, 0.97, status="failed"),
        _t(trial, "b1", "ldist", "iemocap", 0.55, 0.52, rank=5, weighting="uniform", minute=7),
        _t(trial, "b2", "ldist", "ravdess", 0.50, 0.47, rank=9, weighting="uniform", minute=8),
        _t(trial, "c2", "sft", "ravdess", 0.45, 0.44, rank=10, minute=10),   # c1 and c2 tie on val_ua:
        _t(trial, "c1", "sft", "ravdess", 0.45, 0.40, rank=2, minute=9),     # the lower id wins
        _t(trial, "d1", "forward_kl", "iemocap", 0.58, 0.57, rank=7, alpha=0.1, minute=11),
        _t(trial, "e1", "pl_distill", "ravdess", 0.80, 0.78, alpha=0.7, rank=14, minute=12),
    ]
    for t in trials:
        mix.write_trial(t)
    lonely = ResultsStore(root, "lonely")
    lonely.write_sweep_meta({"metric": "test_ua", "mode": "max", "config": {"search": {"space": _SPACE}}})
    lonely.write_trial(_t(trial, "z1", "pl_distill", "savee", 0.5, 0.5))
    return root


def _best_sql(sweep: str, where: str, cols: str = "trial_id, test_ua, test_wa, test_f1") -> str:
    return (f"select {cols} from trials where sweep = '{sweep}' and status = 'completed' and {where} "
            "and val_ua is not null and not isnan(val_ua) order by val_ua desc, trial_id limit 1")


def _md_row(md: str, label: str, section: str = "## Table 1") -> list[str]:
    """The cells of row ``label`` of the first table after heading ``section``."""
    line = next(ln for ln in md.split(section, 1)[1].splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def _pct(v: float) -> str:
    """A cell as rendered for a trial without per-run figures: its mean, n = 1."""
    return f"{100 * v:.2f} (n=1, no CI)"


#: A row per configuration the sweep fixed (beta is not in mix's search space), and a row picked among
#: trials by val_ua says so (pldistill.results.variants).
PLD = "PL-Distill (beta = 0.8; best of 4 on iemocap, 1 on ravdess by val UA)"
TABLE1 = {PLD: "objective = 'pl_distill' and hp_beta <> 0", "PL-Distill (beta = 0)": "objective = 'pl_distill' "
          "and hp_beta = 0", "LDist": "objective = 'ldist'", "SFT (best of 2 by val UA)": "objective = 'sft'",
          "Forward KL": "objective = 'forward_kl'"}
TABLE2 = {
    "LDist": "objective = 'ldist'",
    "LDist + PDist (CKA)": "objective = 'pl_distill' and hp_weighting = 'uniform' and hp_beta <> 0",
    "LDist + PDist (AwCKA)": "objective = 'pl_distill' and hp_weighting = 'attention_last' and hp_beta <> 0",
    "LDist + PDist (AwCKA) w/o KL(audio)": "objective = 'pl_distill' and hp_weighting = 'attention_last' "
                                           "and hp_beta = 0",
}


def test_table1_cells_match_query(root: Path) -> None:
    r = rep.build_report(root, "mix")
    t = r.table1
    assert (r.metric, r.mode) == ("val_ua", "max")
    assert t.datasets == ["iemocap", "ravdess"]
    assert list(t.rows) == ["Teacher", "SFT (best of 2 by val UA)", "Forward KL", "LDist", "PL-Distill (beta = 0)",
                            PLD]  # the paper's order, then the values
    md = rep.render_markdown(r, {})
    for label, where in TABLE1.items():
        shown = _md_row(md, label)
        for i, d in enumerate(t.datasets):
            found = run_query(root, _best_sql("mix", f"{where} and dataset = '{d}'")).to_pylist()
            cell = t.rows[label].get(d)
            if not found:
                assert cell is None and shown[3 * i:3 * i + 3] == ["–"] * 3
                continue
            exp = found[0]
            assert cell.trial_id == exp["trial_id"]
            assert cell.scores == {m: exp[m] for m in ("test_ua", "test_wa", "test_f1")}
            assert shown[3 * i:3 * i + 3] == [_pct(exp[m]) for m in ("test_ua", "test_wa", "test_f1")]
    assert t.rows[PLD]["iemocap"].trial_id == "a2"  # by val_ua, not by test_ua (a3, a6)
    assert t.rows["SFT (best of 2 by val UA)"]["ravdess"].trial_id == "c1"          # the tie
    # the reference row is SFT's pick, so the differences find it (SFT ran on ravdess only)
    assert r.reference == "SFT (best of 2 by val UA)" and list(r.diffs1) == ["ravdess"]


def test_teacher_row_matches_query(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = rep.build_report(root, "mix")
    md = rep.render_markdown(r, {})
    for i, d in enumerate(r.table1.datasets):  # through the CLI this time
        sql = _best_sql("mix", f"dataset = '{d}'", "trial_id, teacher_test_ua, teacher_test_wa, teacher_test_f1")
        assert run_app(["query", sql, "--results", str(root), "--format", "json"]) == 0
        exp = json.loads(capsys.readouterr().out)[0]
        cell = r.table1.rows["Teacher"][d]
        assert cell.trial_id == exp["trial_id"]
        assert [cell.scores[m] for m in ("test_ua", "test_wa", "test_f1")] == [
            exp["teacher_test_ua"], exp["teacher_test_wa"], exp["teacher_test_f1"]]
        assert _md_row(md, "Teacher")[3 * i] == _pct(exp["teacher_test_ua"])
    best_header = md.split("## Best trials")[1].splitlines()[2]
    assert "| teacher_test_ua | teacher_test_wa | teacher_test_f1 |" in best_header  # beside the students


def test_table2_cells_match_query(root: Path) -> None:
    r = rep.build_report(root, "mix")
    t = r.table2
    assert set(t.rows) == set(TABLE2)
    assert list(t.rows)[:3] == ["LDist", "LDist + PDist (CKA)", "LDist + PDist (AwCKA)"]
    md = rep.render_markdown(r, {})
    for label, where in TABLE2.items():
        shown = _md_row(md, label, "## Table 2")
        for i, d in enumerate(t.datasets):
            found = run_query(root, _best_sql("mix", f"{where} and dataset = '{d}'")).to_pylist()
            cell = t.rows[label].get(d)
            if not found:
                assert cell is None and shown[2 * i:2 * i + 2] == ["–", "–"]
                continue
            assert cell.trial_id == found[0]["trial_id"]
            assert shown[2 * i:2 * i + 2] == [_pct(found[0]["test_ua"]), _pct(found[0]["test_wa"])]


def test_best_trials_and_importances(root: Path) -> None:
    r = rep.build_report(root, "mix", top=3)
    exp = run_query(root, "select trial_id from trials where sweep = 'mix' and status = 'completed' and "
                          "not isnan(val_ua) order by val_ua desc, trial_id limit 3").column("trial_id").to_pylist()
    assert [b["trial_id"] for b in r.best] == exp
    assert [p.name for p in r.params] == ["alpha", "lora_rank", "weighting"]
    assert r.importances is not None and set(r.importances) == {"alpha", "lora_rank", "weighting"}
    assert sum(r.importances.values()) == pytest.approx(1.0)
    assert r.importances_note == "11 completed trials"  # not the NaN, running and failed ones
    ids = [h[0] for h in r.history]
    assert ids == ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "c1", "c2", "d1", "e1"]  # by ended_at
    assert [h.best for h in r.history] == [max(h.value for h in r.history[:i + 1]) for i in range(len(ids))]


def test_report_reads_the_space_the_launch_recorded(root: Path, trial: Callable[..., object]) -> None:
    """``space`` in sweep.json wins over the config's search section (which only old sweeps need)."""
    recorded = [ParamSpec("alpha", "float", 0.0, 2.0), ParamSpec("lora_rank", "int", 2, 16, log=True),
                ParamSpec("beta", "categorical", choices=[0.0, 0.8])]
    store = ResultsStore(root, "spaced")
    store.write_sweep_meta({"metric": "val_ua", "mode": "max", "space": [p.to_json() for p in recorded],
                            "config": {"search": {"space": _SPACE}}})
    for i, (alpha, rank, beta) in enumerate([(0.2, 2, 0.0), (1.5, 16, 0.8), (0.9, 5, 0.8)]):
        store.write_trial(_t(trial, f"s{i}", "pl_distill", "iemocap", 0.5 + alpha / 10, 0.5, alpha=alpha, rank=rank,
                             beta=beta, minute=i))
    r = rep.build_report(root, "spaced")
    assert r.params == recorded and r.params_source == "the search space the launch sampled (sweep.json)"
    assert r.importances is None  # 3 trials: too few for importances to mean anything
    assert r.importances_note == "withheld: they would rest on 3 completed trials, fewer than 10"
    legacy = rep.build_report(root, "mix")  # no space recorded: the config's search section
    assert legacy.params_source == "the sweep's search section (sweep.json)"


def test_search_space_inferred_without_config(results_root: Path) -> None:
    """The shared fixture's ``ablation`` sweep has no search section: the varying hp_* columns count."""
    r = rep.build_report(results_root, "ablation")
    names = {p.name for p in r.params}
    assert names == {"alpha", "weighting", "kl_t2_scaling", "lora_rank"}
    n = sum(1 for row in r.rows if row.get("status") == "completed")
    assert (r.importances is not None and set(r.importances) <= names) if n >= 10 else r.importances is None
    assert "no search section" in r.params_source


def test_cli_writes_report_and_pngs(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    assert run_app(["report", "mix", "--results", str(root)]) == 0
    out = root / "mix" / "report"
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    for png in ("metric_vs_params.png", "history.png", "importances.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and f"]({png})" in md
        with Image.open(out / png) as im:
            im.verify()
            assert im.size[0] > 100 and im.size[1] > 100
    assert "is best by `val_ua` (max;" in md
    assert "## Hyperparameter importances (Optuna)" in md and "`weighting`" in md

    # Written again: replaced whole, nothing left beside it.
    (out / "stale.txt").write_text("old")
    assert run_app(["report", "mix", "--results", str(root)]) == 0
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in (root / "mix").iterdir() if p.name.startswith(".")) == []


def test_one_trial_sweep_omits_with_sentences(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "lonely-report"
    assert run_app(["report", "lonely", "--results", str(root), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## Table 2: ablation\n\nOmitted:" in md
    assert "Not computed: withheld: they would rest on 1 completed trial, fewer than 10" in md
    assert "**Selected on test.**" in md  # lonely's metric is test_ua
    assert not (out / "importances.png").exists() and (out / "history.png").is_file()


def test_failed_write_leaves_old_report(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    rep.write_report(root, "lonely", out)
    before = (out / "report.md").read_text()

    def boom(*a: object, **k: object) -> str:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rep, "render_markdown", boom)
    with pytest.raises(RuntimeError):
        rep.write_report(root, "mix", out)
    assert (out / "report.md").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "results"]


@pytest.mark.parametrize("args, message", [
    (["report", "nope"], "unknown sweep 'nope'; sweeps here: lonely, mix"),
    (["report", "mix", "--results", "/nonexistent/results"], "no results folder here"),
])
def test_one_line_errors(root: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    if "--results" not in args:
        args = [*args, "--results", str(root)]
    assert run_app(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_refuses_to_replace_a_folder_that_is_not_a_report(root: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    assert run_app(["report", "mix", "--results", str(root), "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "is not a report folder" in err and err.count("\n") == 1
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]


def test_cells_carry_ci_over_runs_and_rows_their_paired_difference(tmp_path: Path, trial: Callable[..., object]) -> None:
    """Three (seed, fold) runs per trial: mean ± t half-width, n=3; the paired difference to the
    reference over the matched runs, by hand. One run only: the clip-level bootstrap of the saved
    test predictions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pldistill.results.schema import FoldMetrics

    root = tmp_path / "results"
    store = ResultsStore(root, "reps")
    store.write_sweep_meta({"metric": "val_ua", "mode": "max"})
    runs = [(0, 1), (0, 2), (1, 1)]
    sft, pld = [0.50, 0.60, 0.55], [0.56, 0.62, 0.64]

    def write(tid: str, objective: str, values: list[float]) -> None:
        fms = [FoldMetrics(seed=s, fold=f, best_epoch=1, test_ua=v, teacher_test_ua=0.9) for (s, f), v in zip(runs, values)]
        store.write_trial(_t(trial, tid, objective, "synthetic", 0.6, sum(values) / 3, minute=1).__class__(
            **{**vars(_t(trial, tid, objective, "synthetic", 0.6, sum(values) / 3)), "fold_metrics": fms,
               "seeds": [0, 1]}))

    write("s1", "sft", sft)
    write("p1", "pl_distill", pld)
    r = rep.build_report(root, "reps")
    # sft, stratified by fold: fold 1 (.50, .55) mean .525, s^2 .00125; fold 2 (.60) one run, given fold 1's
    # variance -> mean .5625, var (.00125/2 + .00125/1) / 4 = .00046875, 1 df -> half width
    # 12.706205 * .0216506 = .275102.
    md = rep.render_markdown(r, {})
    assert _md_row(md, "SFT")[0] == "56.25 ± 27.51 (n=3, S1)"
    assert f"Intervals: S1: {MARKERS['stratified-pooled'][1]}." in md
    # paired (the same three runs): differences .06, .02 (fold 2), .09; fold 1 mean .075, s^2 .00045 ->
    # mean (.075 + .02)/2 = .0475 (= .61 - .5625, the cells' means), var (.00045/2 + .00045/1)/4 = .00016875,
    # 1 df -> half width 12.706205 * .0129904 = .165059
    diff = r.diffs1["synthetic"]["PL-Distill"].difference
    assert diff.n == 3 and diff.mean == pytest.approx(0.0475)
    assert (diff.high - diff.low) / 2 == pytest.approx(0.165059, abs=1e-6)
    below = md.split("### Paired differences to SFT", 1)[1]
    assert "+4.75 [-11.76, 21.26] (n=3, S1) p=" in below and "Holm p=" in below
    assert "not distinguishable from SFT" in below
    assert "Verdicts use Holm-adjusted p-values over the 1 comparison of this table" in below

    # one run each: no t interval; the clip-level bootstrap over the saved predictions decides
    single = ResultsStore(root, "single")
    single.write_sweep_meta({"metric": "val_ua", "mode": "max"})
    labels = [0, 1, 0, 1] * 25
    for tid, objective, preds in (("s1", "sft", [1 - y for y in labels[:50]] + labels[50:]),
                                  ("p1", "pl_distill", labels)):
        base = _t(trial, tid, objective, "synthetic", 0.6, 0.5)
        single.write_trial(base.__class__(**{**vars(base), "fold_metrics": [FoldMetrics(seed=0, fold=1, test_ua=0.5)]}))
        best = root / "single" / "runs" / tid / "seed_0" / "fold_1" / "best"
        best.mkdir(parents=True)
        keys = [f"c{i:03d}" for i in range(len(labels))]
        pq.write_table(pa.table({"key": keys, "label": labels, "pred": preds}), best / "test_predictions.parquet")
    one = rep.build_report(root, "single").diffs1["synthetic"]["PL-Distill"].difference
    assert one.unit == "clips" and one.mean == pytest.approx(0.5) and one.low > 0
    with pytest.raises(InputError, match="unknown objective 'sfd'"):
        rep.build_report(root, "single", reference="sfd")


def test_caad_has_its_table1_row_after_the_paper_methods() -> None:
    """CAAD's label comes from the loss registry, and its row follows the paper's methods."""
    from pldistill.results.tables import method_table

    rows = [{"trial_id": t, "status": "completed", "objective": o, "dataset": "synthetic", "val_ua": v,
             "test_ua": v, "test_wa": v, "test_f1": v}
            for t, o, v in (("c1", "caad", 0.7), ("c2", "caad", 0.6), ("p1", "pl_distill", 0.65),
                            ("f1", "forward_kl", 0.5))]
    t = method_table(rows, "val_ua", "max")
    assert list(t.rows) == ["Forward KL", "PL-Distill", "CAAD (gold target)"]  # pseudo_target: label by default
    assert t.rows["CAAD (gold target)"]["synthetic"].trial_id == "c1"
    assert t.rows["CAAD (gold target)"]["synthetic"].n_trials == 2


def test_emodistill_and_its_single_teacher_ablations_are_table1_rows() -> None:
    """EmoDistill with w_p = 0 or w_l = 0 is a row of its own (not hidden behind the full method's best
    trial), right after EmoDistill, which follows the audio-LLM methods."""
    from pldistill.results.tables import method_table

    def row(t, o, v, **hp):
        return {"trial_id": t, "status": "completed", "objective": o, "dataset": "synthetic", "val_ua": v,
                "test_ua": v, "test_wa": v, "test_f1": v, **{f"hp_{k}": x for k, x in hp.items()}}

    rows = [row("e1", "emodistill", 0.6, w_p=1.0, w_l=1.0), row("p0", "emodistill", 0.9, w_p=0.0, w_l=1.0),
            row("l0", "emodistill", 0.8, w_p=1.0, w_l=0.0), row("e2", "emodistill", 0.5),  # defaults: w = 1
            row("s1", "sft", 0.55), row("c1", "caad", 0.7)]
    t = method_table(rows, "val_ua", "max")
    assert list(t.rows) == ["SFT", "CAAD (gold target)", "EmoDistill", "EmoDistill w/o prosodic teacher",
                            "EmoDistill w/o linguistic teacher"]
    assert t.rows["EmoDistill"]["synthetic"].trial_id == "e1" and t.rows["EmoDistill"]["synthetic"].n_trials == 2
    assert t.rows["EmoDistill w/o prosodic teacher"]["synthetic"].trial_id == "p0"
    assert t.rows["EmoDistill w/o linguistic teacher"]["synthetic"].trial_id == "l0"
    # the Teacher row is the audio teacher's, from the best trial that recorded it (not EmoDistill's best)
    rows[4]["teacher_test_ua"] = rows[4]["teacher_test_wa"] = rows[4]["teacher_test_f1"] = 0.95
    t = method_table(rows, "val_ua", "max")
    assert list(t.rows)[0] == "Teacher" and t.rows["Teacher"]["synthetic"].trial_id == "s1"
