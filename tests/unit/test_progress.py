"""``pldistill.progress``: throttled plain lines off a terminal, a rich bar on one."""

from __future__ import annotations

import io
import re

import pytest

from pldistill.progress import StepProgress, format_seconds, track


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_tenth_with_counts(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    with StepProgress(200, "teacher fine-tune fold 1", unit="steps", tty=False, clock=clock) as bar:
        for _ in range(200):
            clock.now += 0.5
            bar.advance()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10  # 20, 40, ..., 200: one per 10 %, none repeated at exit
    counts = [int(re.search(r": (\d+)/200 steps", ln).group(1)) for ln in lines]
    assert counts == list(range(20, 201, 20))
    assert lines[0] == "teacher fine-tune fold 1: 20/200 steps (10%), 10s elapsed, ~1m30s left"
    assert lines[-1] == "teacher fine-tune fold 1: 200/200 steps (100%), 1m40s elapsed"


def test_plain_lines_every_n_seconds_when_slow(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    got: list[str] = []
    with StepProgress(1000, "cache", tty=False, every_s=30.0, clock=clock, log=got.append) as bar:
        for _ in range(50):  # 5 % of the total, 100 s: the time throttle speaks
            clock.now += 2.0
            bar.advance()
    assert capsys.readouterr().out == ""  # everything went to log=
    assert [re.search(r": (\d+)/", ln).group(1) for ln in got] == ["15", "30", "45", "50"]  # 30 s apart, then exit


def test_unknown_total_and_disabled(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    with StepProgress(None, "scan", unit="files", tty=False, clock=clock) as bar:
        bar.advance(3)
        clock.now += 31
        bar.advance(2)
    assert capsys.readouterr().out.splitlines() == ["scan: 5 files, 31s elapsed"]
    with StepProgress(10, "quiet", tty=False, enabled=False) as bar:
        bar.advance(10)
    assert capsys.readouterr().out == ""


def test_track_counts_items(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(track(range(7), description="items", tty=False)) == list(range(7))
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("items: 7/7 (100%)")
    assert len(lines) == 7  # a step of 1 every 10 % of 7 items: each item once, no duplicate at exit


def test_tty_mode_draws_a_rich_bar() -> None:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    got: list[str] = []
    with StepProgress(40, "synthesising corpus", unit="clips", tty=True, console=console, log=got.append) as bar:
        for _ in range(40):
            bar.advance()
    assert bar.done == 40 and got == []  # the bar, not plain lines
    text = buf.getvalue()
    assert "synthesising corpus" in text and "40/40" in text and "clips" in text


def test_default_mode_follows_isatty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert StepProgress(1, "x").tty is False
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert StepProgress(1, "x").tty is True


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (42, "42s"), (187, "3m07s"), (3720, "1h02m")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_synth_reports_progress_to_log(tmp_path) -> None:
    from pldistill.data.synth import synthesize_corpus

    got: list[str] = []
    synthesize_corpus(tmp_path, speakers=2, teacher_speakers=0, per_class=5, folds=2, labels=("Neutral", "Happy"), log=got.append)
    assert got[-1].startswith("synthesising corpus: 20/20 clips (100%)")
    assert [int(re.search(r": (\d+)/20", ln).group(1)) for ln in got] == list(range(2, 21, 2))


def test_teacher_finetune_reports_progress_to_log(tmp_path) -> None:
    """The tiny teacher's fine-tuning (2 epochs of 1 batch) logs its epochs and its step counts."""
    from pldistill.config import TrialConfig
    from pldistill.train.dataset import prepare_fold
    from pldistill.train.teacher import ensure_teacher

    cfg = TrialConfig.model_validate({
        "data": {"source": "synthetic", "dataset": "synthetic", "folds": [1],
                 "synth": {"speakers": 4, "teacher_speakers": 0, "per_class": 2, "folds": 2}},
        "model": {"teacher_finetune": {"epochs": 2}},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "num_threads": 1},
        "output_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")})
    got: list[str] = []
    ensure_teacher(cfg, prepare_fold(cfg, 1), log=got.append)
    steps = [ln for ln in got if " steps (" in ln]
    assert steps[-1].startswith("teacher fine-tune fold 1: 2/2 steps (100%)")
    assert any(ln.startswith("teacher fine-tune fold 1 epoch 2/2: loss") for ln in got)  # the old lines stay
