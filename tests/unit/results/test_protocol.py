"""The protocol block (pldistill.results.protocol): read from resolved configs, compared with the declared
table of the PL-Distill paper's section 3.1, per row where rows differ, and in every report; the shipped
sweep files' descriptions say what they run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pldistill.config import TrialConfig
from pldistill.results import ResultsStore
from pldistill.results import report as rep
from pldistill.results.protocol import (
    SweepProtocol,
    caption_lines,
    describe,
    paper_differences,
    protocol_lines,
    sweep_protocol,
)

SWEEPS = Path(__file__).resolve().parents[3] / "sweeps"


def _paper(**changes: dict) -> TrialConfig:
    """A trial in the paper's setup (section 3.1), with ``changes`` merged into its sections."""
    cfg = {"data": {"source": "emobox", "manifests": "/m", "dataset": "iemocap", "folds": [1, 2, 3, 4, 5]},
           "model": {"teacher": "/models/Qwen2-Audio-7B-Instruct", "student_llm": "/models/Qwen2-0.5B-Instruct"},
           "hparams": {"objective": "pl_distill"}}
    for section, values in changes.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return TrialConfig.model_validate(cfg)


def test_the_papers_setup_differs_only_in_the_validation_carve_out() -> None:
    """Defaults of pldistill.config that are the paper's (epochs, batch x accumulation, LoRA, eq. 8's
    weights) compare equal, so the declared table and the config cannot drift apart unseen."""
    assert paper_differences([_paper()]) == [
        "validation carve-out: paper none described (EmoBox ships no validation split); here 15% of each fold's "
        "training clips"]


@pytest.mark.parametrize("changes, line", [
    ({"data": {"labelled_fraction": 0.1}}, "labelled fraction: paper 1 (every training clip labelled); here 0.1"),
    ({"train": {"batch_size": 8, "grad_accum": 1}}, "batch x accumulation: paper 1 x 16; here 8 x 1"),
    ({"train": {"epochs": 3}}, "epochs: paper 5; here 3"),
    ({"model": {"teacher_finetune": {"enabled": True}}}, "teacher fine-tuned: paper no (used as is); here yes"),
    ({"hparams": {"objective": "pl_distill", "beta": 0.0}}, "PL-Distill's alpha, beta, gamma, t: paper 1, 0.8, 1, 2; "
                                                             "here 1, 0, 1, 2"),
    ({"hparams": {"objective": "pl_distill", "lora_rank": 4}}, "LoRA rank, alpha: paper 8, 256; here 4, 256"),
    ({"data": {"source": "synthetic", "dataset": "synthetic", "manifests": None}},
     "corpus: paper IEMOCAP, RAVDESS, SAVEE (EmoBox partitions); here synthetic"),
])
def test_each_difference_from_the_paper_is_listed(changes: dict, line: str) -> None:
    diffs = paper_differences([_paper(**changes)])
    assert line in diffs and len(diffs) == 2  # and the validation carve-out


def test_tiny_teacher_with_random_encoder_is_named() -> None:
    cfg = _paper(model={"teacher": "tiny", "student_llm": "tiny", "teacher_finetune": {"train_encoder": False}},
                 data={"source": "synthetic", "dataset": "synthetic", "manifests": None, "labelled_fraction": 0.1})
    diffs = "\n".join(paper_differences([cfg]))
    assert "teacher's audio encoder: paper pretrained (Whisper's, inside Qwen2-Audio); here random (never trained)" in diffs
    teacher = describe(cfg)["audio-LM teacher"]
    assert "fine-tuned 20 epochs" in teacher and "labelled training clips (10%)" in teacher
    assert "a pool of 24 further speakers (1,536 clips)" in teacher and teacher.endswith("random (never trained)")


def test_a_setting_that_does_not_apply_is_not_compared() -> None:
    """LoRA and eq. 8's weights mean nothing to an EmoDistill classifier; alpha of forward KL is unused."""
    emo = _paper(hparams={"objective": "emodistill", "lora_rank": 2})
    fkl = _paper(hparams={"objective": "forward_kl", "alpha": 0.0})
    assert paper_differences([emo, fkl]) == paper_differences([_paper()])
    assert "EmoDistill's teachers (EmoDistill rows)" in describe(emo)
    assert "EmoDistill's teachers (EmoDistill rows)" not in describe(fkl)


def _row(tid: str, cfg: TrialConfig, objective: str = "sft", val: float = 0.5) -> dict:
    return {"trial_id": tid, "status": "completed", "objective": objective, "dataset": cfg.data.dataset,
            "val_ua": val, "test_ua": val, "test_wa": val, "test_f1": val, "config_json": cfg.to_json()}


def test_rows_that_differ_in_protocol_say_so_each() -> None:
    half, full = _paper(data={"labelled_fraction": 0.5}), _paper()
    p = sweep_protocol([_row("a", half), _row("b", full), {"trial_id": "c", "config_json": '{"bad": 1}'}])
    assert set(p.configs) == {"a", "b"}  # a config that no longer validates is left out
    assert p.varying() == ["labels"]
    assert p.of_trial("b") == {"labels": "every training clip labelled"}
    lines = protocol_lines(p)
    assert any(ln.startswith("- labels: differs between trials (each row says its own): 50% of each") for ln in lines)
    assert "- labelled fraction: paper 1 (every training clip labelled); here 0.5" in lines

    class Cell:
        def __init__(self, trial_id: str) -> None:
            self.trial_id = trial_id

    caption = caption_lines(p, {"SFT": {"iemocap": Cell("a")}, "Forward KL": {"iemocap": Cell("b")}})
    assert caption[1:] == ["Rows differ in protocol; each row's own:",
                           f"- SFT: labels: {describe(half)['labels']}",
                           "- Forward KL: labels: every training clip labelled"]
    assert caption_lines(SweepProtocol({"b": full}), {"SFT": {"iemocap": Cell("b")}}) == [
        "Protocol: as at the top of this report; differs from the paper's section 3.1 in validation carve-out."]


def test_ce_options_are_read_from_the_config() -> None:
    assert describe(_paper(hparams={"ce_reduction": "mean"}))["CE"] == "ce_divisor expected_labelled, ce_reduction mean"
    assert describe(_paper(hparams={"ce_divisor": "batch"}))["CE"] == "ce_divisor batch, ce_reduction sum"


def test_seeds_say_the_replication_rule_not_only_the_first_seeds() -> None:
    """A sweep that replicates until decided ran up to max_seeds: its list alone ("0, 1, 2") would say three."""
    assert describe(_paper(train={"seeds": [0, 1]}))["seeds"] == "0, 1"
    line = describe(_paper(train={"seeds": [0, 1, 2],
                                  "replicates": {"min_seeds": 3, "max_seeds": 8, "half_width": 0.02}}))["seeds"]
    assert line.startswith("0, 1, 2, then one more at a time (up to 8: seeds 0 to 7) until the stratified 95% "
                           "interval of val_ua is within ±0.02"), line
    assert "never a test figure" in line


def test_report_carries_the_block_on_top_and_in_each_caption(tmp_path: Path,
                                                              trial: Callable[..., object]) -> None:
    root = tmp_path / "results"
    store = ResultsStore(root, "semi")
    store.write_sweep_meta({"metric": "val_ua", "mode": "max", "config": {"search": {"algorithm": "grid"}}})
    cfgs = {"s": _paper(data={"labelled_fraction": 0.1}, hparams={"objective": "sft"}),
            "l": _paper(data={"labelled_fraction": 0.1}, hparams={"objective": "ldist"}),
            "p": _paper(data={"labelled_fraction": 0.2})}
    for tid, cfg in cfgs.items():
        store.write_trial(trial(tid, objective=cfg.hparams.objective, dataset="iemocap",
                                hparams={"objective": cfg.hparams.objective}, config_json=cfg.to_json()))
    md = rep.render_markdown(rep.build_report(root, "semi"), {})
    top, table1 = md.split("## Table 1", 1)
    assert "- labelled fraction: paper 1 (every training clip labelled); here 0.1 | 0.2" in top
    assert "- batch x accumulation" not in top  # the paper's 1 x 16 (the default)
    caption = table1.split("| Method |", 1)[0]
    assert "differs from the paper's section 3.1 in validation carve-out, labelled fraction." in caption
    assert "- PL-Distill: labels: 20% of each fold's training clips labelled" in caption
    assert "- SFT: labels: 10% of each fold's" in caption
    assert f"What each teacher saw: audio-LM teacher: {describe(cfgs['s'])['audio-LM teacher']}." in caption
    assert "What each teacher saw" not in md.split("## Table 2", 1)[1]
    assert "Protocol: as at the top" in md.split("## Table 2", 1)[1]


def _shipped() -> list[Path]:
    return sorted(SWEEPS.glob("*.yaml"))


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: p.name)
def test_shipped_sweep_descriptions_say_what_they_run(path: Path) -> None:
    """A sweep that differs from the paper does not claim the paper's settings, and its description
    names a labelled fraction and a random teacher encoder where it runs them."""
    from pldistill.sweep.load import load_sweep
    from pldistill.sweep.space import shared_config

    sweep = load_sweep(path)
    cfg = shared_config(sweep, trial_id="t")
    text = sweep.description or ""
    assert "paper's settings" not in text or not paper_differences([cfg])
    if cfg.data.labelled_fraction < 1:
        assert f"{100 * cfg.data.labelled_fraction:g}% labels" in text
    if describe(cfg)["audio-LM teacher"].endswith("random (never trained)"):
        assert "random teacher encoder" in text


def _trial_row(tid: str, objective: str, val: float, **hp: object) -> dict:
    return {"trial_id": tid, "status": "completed", "objective": objective, "dataset": "synthetic", "val_ua": val,
            "test_ua": val, "test_wa": val, "test_f1": val, **{f"hp_{k}": v for k, v in hp.items()}}


_CAAD = [_trial_row("c05", "caad", 0.60, caad_contrast=0.5, pseudo_target="label", gamma=1.0),
         _trial_row("c1", "caad", 0.70, caad_contrast=1.0, pseudo_target="label", gamma=1.0),
         _trial_row("c2", "caad", 0.65, caad_contrast=2.0, pseudo_target="label", gamma=1.0),
         _trial_row("cm", "caad", 0.62, caad_contrast=1.0, pseudo_target="metadata", gamma=1.0),
         _trial_row("s", "sft", 0.50, caad_contrast=1.0, pseudo_target="label", gamma=1.0)]


def test_a_grid_gives_each_configuration_its_row() -> None:
    """CAAD's a = 0.5, 1, 2 and its metadata target are four rows, not one best-of-4 pick."""
    from pldistill.results.variants import named_method_table

    t, picks = named_method_table(_CAAD, "val_ua", "max", {"config": {"search": {"algorithm": "grid"}}})
    assert list(t.rows) == ["SFT", "CAAD (gold target, a = 0.5)", "CAAD (gold target, a = 1)",
                            "CAAD (gold target, a = 2)", "CAAD (metadata target, a = 1)"]
    assert [c["synthetic"].trial_id for c in list(t.rows.values())[1:]] == ["c05", "c1", "c2", "cm"]
    assert picks == []


def test_a_sampled_dimension_makes_a_pick_that_says_so() -> None:
    """An Optuna sweep that sampled caad_contrast: one row per target, best of n by val UA, the others listed."""
    from pldistill.results.variants import named_method_table, reference_row

    meta = {"config": {"search": {"algorithm": "optuna", "space": {"caad_contrast": {"type": "uniform"}}}}}
    t, picks = named_method_table(_CAAD, "val_ua", "max", meta)
    assert list(t.rows) == ["SFT", "CAAD (gold target; best of 3 by val UA)", "CAAD (metadata target)"]
    assert t.rows["CAAD (gold target; best of 3 by val UA)"]["synthetic"].trial_id == "c1"
    assert picks == ["- CAAD (gold target; best of 3 by val UA), synthetic: `c1` (val_ua 0.7000; caad_contrast 1) "
                     "picked over `c2` (val_ua 0.6500; caad_contrast 2), `c05` (val_ua 0.6000; caad_contrast 0.5)"]
    assert reference_row(t, "CAAD") == "CAAD (gold target; best of 3 by val UA)"
    assert reference_row(t, "SFT") == "SFT"


def test_a_search_lists_a_few_runners_up_and_counts_the_rest() -> None:
    """A random search's 40 runners-up in one line hid the pick: three by name, the rest as a count."""
    from pldistill.results.variants import named_method_table

    rows = [_trial_row(f"c{i}", "caad", 0.70 - i / 100, caad_contrast=0.5 + i, pseudo_target="label", gamma=1.0)
            for i in range(6)]
    meta = {"config": {"search": {"algorithm": "optuna", "space": {"caad_contrast": {"type": "uniform"}}}}}
    _, picks = named_method_table(rows, "val_ua", "max", meta)
    assert picks == ["- CAAD (gold target; best of 6 by val UA), synthetic: `c0` (val_ua 0.7000; caad_contrast 0.5) picked over "
                     "`c1` (val_ua 0.6900; caad_contrast 1.5), `c2` (val_ua 0.6800; caad_contrast 2.5), "
                     "`c3` (val_ua 0.6700; caad_contrast 3.5), and 2 more (val_ua down to 0.6500)"]


def test_a_pick_names_only_the_hyperparameters_its_objective_reads() -> None:
    """A search samples gamma and temperature for every trial; SFT's pick differs in neither."""
    from pldistill.results.variants import named_method_table

    rows = [_trial_row(f"s{i}", "sft", 0.6 - i / 100, lr=1e-3 * (i + 1), gamma=0.5 + i, temperature=1.0 + i)
            for i in range(2)]
    rows += [_trial_row(f"f{i}", "forward_kl", 0.6 - i / 100, lr=1e-3, gamma=0.5 + i, temperature=1.0)
             for i in range(2)]
    meta = {"config": {"search": {"algorithm": "random", "space": {"lr": {}, "gamma": {}, "temperature": {}}}}}
    _, picks = named_method_table(rows, "val_ua", "max", meta)
    assert picks == ["- SFT (best of 2 by val UA), synthetic: `s0` (val_ua 0.6000; lr 0.001) picked over "
                     "`s1` (val_ua 0.5900; lr 0.002)",
                     "- Forward KL (best of 2 by val UA), synthetic: `f0` (val_ua 0.6000; gamma 0.5) picked over "
                     "`f1` (val_ua 0.5900; gamma 1.5)"]


def test_an_item_with_many_values_lists_a_few_and_counts_them() -> None:
    """A learning rate searched over 120 trials made the protocol's training line 120 values long."""
    configs = [_paper(hparams={"lr": 1e-4 * (i + 1), "lora_rank": i + 1}) for i in range(6)]
    p = SweepProtocol({str(i): c for i, c in enumerate(configs)})
    lines = protocol_lines(p)
    training = next(ln for ln in lines if ln.startswith("- training: differs between trials"))
    assert training.count("lr ") == 4 and training.endswith("... (6 distinct values in all)"), training
    lora = next(ln for ln in lines if ln.startswith("- LoRA rank, alpha: paper 8, 256; here "))
    assert lora.endswith("... (6 distinct values in all)"), lora


@pytest.mark.parametrize("objective", ["pl_distill", "emodistill"])
def test_the_model_card_carries_its_trials_protocol(objective: str) -> None:
    """Both card families: the student's own protocol and its differences from the paper."""
    from pldistill.serve import TrialStudent
    from pldistill.serve.card import model_card

    cfg = _paper(data={"labelled_fraction": 0.1}, hparams={"objective": objective})
    src = TrialStudent(sweep="s", trial_id="t", seed=0, fold=1, epoch=1, best_dir=Path("x"), config=cfg,
                       row={"status": "completed"}, intervals={})
    meta = {"labels": ["A", "B"], "prompt": "p", "window_s": 4.0, "vocab": 10, "encoder": "whisper",
            "family": "classifier" if objective == "emodistill" else "audiolm"}
    card = model_card(src, meta, adapter=False)
    protocol = card.split("## Protocol\n", 1)[1].split("## Results", 1)[0]
    assert f"- labels: {describe(cfg)['labels']}\n" in protocol
    assert ("EmoDistill's teachers" in protocol) == (objective == "emodistill")
    assert "- labelled fraction: paper 1 (every training clip labelled); here 0.1\n" in protocol


def test_the_launch_summary_reads_the_protocol_back_from_the_results(tmp_path: Path,
                                                                      trial: Callable[..., object]) -> None:
    from pldistill.sweep.launch import protocol_of

    store = ResultsStore(tmp_path, "semi")
    cfg = _paper(data={"labelled_fraction": 0.1})
    store.write_trial(trial("a", config_json=cfg.to_json()))
    assert protocol_of(tmp_path, "semi") == protocol_lines(SweepProtocol({"a": cfg}))
    assert protocol_of(tmp_path, "none") == ["Protocol: not recorded (no trial holds a resolved config)."]
