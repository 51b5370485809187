"""``pldistill-sweep data``: synthesise the embedded corpus, inspect EmoBox manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pldistill.cli._app import data_app

__all__ = ["synth", "info"]


@data_app.command("synth")
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write into (the corpus goes to OUT_DIR/synthetic).")],
    speakers: Annotated[int | None, typer.Option(min=2, help="Synthetic speakers (alternating F/M).")] = None,
    per_class: Annotated[int | None, typer.Option(min=1, help="Clips per speaker and emotion.")] = None,
    folds: Annotated[int | None, typer.Option(min=2, help="Speaker-independent folds (<= speakers).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; the corpus is byte-identical per seed.")] = None,
    teacher_speakers: Annotated[int | None, typer.Option(
        min=0, help="Extra speakers in no fold, heard only by a teacher fine-tuned here (teacher_pool.jsonl).")] = None,
    conflict: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Fraction of clips whose words express another emotion (the rest keeps the "
                               "default congruent:neutral ratio).")] = None,
    processes: Annotated[int, typer.Option(min=1, help="Speakers spoken at a time (output unchanged).")] = 2,
) -> None:
    """Write the synthetic emotional-speech corpus (eSpeak NG) in EmoBox format, with transcripts
    and lexical conditions (reused if already there). Unset options take data.synth's defaults."""
    import time

    from rich.console import Console

    from pldistill.config import SynthConfig
    from pldistill.data.synth import synth_config, synthesize_corpus

    overrides: dict[str, Any] = {k: v for k, v in {"speakers": speakers, "per_class": per_class, "folds": folds,
                                   "seed": seed, "teacher_speakers": teacher_speakers}.items() if v is not None}
    if conflict is not None:
        d = SynthConfig()
        rest = (1.0 - conflict) / (d.congruent + d.neutral)
        overrides.update(conflict=conflict, congruent=d.congruent * rest, neutral=1.0 - conflict - d.congruent * rest)
    cfg = synth_config(None, **overrides)
    start = time.perf_counter()
    existed = (out_dir / "synthetic").exists()
    manifests = synthesize_corpus(out_dir, cfg, processes=processes)
    clips = cfg.speakers * cfg.per_class * len(cfg.labels)
    verb = "reused" if existed else f"wrote in {time.perf_counter() - start:.1f} s"
    pool = cfg.teacher_speakers * cfg.per_class * len(cfg.labels)
    Console().print(f"{verb}: {clips} clips, {cfg.speakers} speakers, {cfg.folds} folds"
                    + (f" (+ {pool} clips of {cfg.teacher_speakers} teacher-pool speakers)" if pool else "") + ", labels "
                    f"{', '.join(cfg.labels)}; words congruent {cfg.congruent:.0%}, neutral {cfg.neutral:.0%}, "
                    f"conflict {cfg.conflict:.0%}\nmanifests and audio root: {manifests} (dataset 'synthetic')")


@data_app.command("info")
def info(
    manifests_dir: Annotated[Path, typer.Argument(help="Folder holding <dataset>/label_map.json and fold_<k>/.")],
    dataset: Annotated[str, typer.Argument(help="Dataset name, e.g. iemocap, ravdess, savee, synthetic.")],
    transcripts: Annotated[Path | None, typer.Option(
        help="JSONL of {\"key\": ..., \"transcript\": ...} lines for manifests without transcripts.")] = None,
    egemaps: Annotated[bool, typer.Option(
        "--egemaps", help="Also read the audio and summarise eGeMAPS features per emotion (~60 ms a clip).")] = False,
    audio_root: Annotated[Path | None, typer.Option(help="Audio root for --egemaps (default: MANIFESTS_DIR).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder for the eGeMAPS features.")] = None,
) -> None:
    """Folds, class counts, speakers, clip lengths, transcripts and lexical conditions of an EmoBox
    dataset (manifests only); with --egemaps, per-emotion means of a few eGeMAPS features."""
    from pldistill.cli._table import table_console
    from pldistill.data.emobox import load_fold, resolve_dataset

    spec, label_map = resolve_dataset(manifests_dir, dataset)
    splits = [load_fold(manifests_dir, spec.name, k, val_fraction=0.0, audio_root=audio_root,
                        transcripts=transcripts) for k in range(1, spec.num_folds + 1)]
    clips = list({c.key: c for split in splits for c in split.train + split.test}.values())
    console = table_console()
    for table in _fold_tables(spec, splits):
        console.print(table)
    console.print(_lengths_line(label_map, clips))
    console.print(_words_table(spec.labels, clips))
    if egemaps:
        console.print(_egemaps_table(spec.labels, clips, cache_dir))


def _fold_tables(spec, splits) -> tuple[Any, Any]:
    import numpy as np
    from rich import box
    from rich.table import Table

    counts = Table(title=f"{spec.name}: {len(spec.labels)} classes, {spec.num_folds} folds",
                   box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    clips_table = Table(title="speakers and clip lengths (s)", box=box.SIMPLE_HEAD)
    for column in ("fold", "split", "clips", *spec.labels):
        counts.add_column(column, justify="left" if column == "split" else "right", min_width=len(column))
    for column in ("fold", "split", "speakers", "mean", "median", "p95", "max", "test speakers"):
        clips_table.add_column(column, justify="left" if column in ("split", "test speakers") else "right")
    for k, split in enumerate(splits, start=1):
        for name, clips in (("train", split.train), ("test", split.test)):
            secs = np.array([c.duration for c in clips])
            speakers = sorted({c.speaker or "?" for c in clips})
            fold = str(k) if name == "train" else ""
            counts.add_row(fold, name, str(len(clips)),
                           *(str(sum(c.label == lab for c in clips)) for lab in spec.labels))
            clips_table.add_row(fold, name, str(len(speakers)), f"{secs.mean():.2f}", f"{np.median(secs):.2f}",
                                f"{np.percentile(secs, 95):.2f}", f"{secs.max():.2f}",
                                ", ".join(speakers) if name == "test" else "")
    return counts, clips_table


def _lengths_line(label_map: dict[str, str], clips: list) -> str:
    from pldistill.data.features import choose_window

    lengths = [c.duration for c in clips]
    longest = max(lengths)
    window = choose_window([min(longest, 30.0)])  # capped here; the truncation is reported below
    longer = sum(1 for x in lengths if x > window)
    raw = ", ".join(f"{r}->{c}" for r, c in label_map.items())
    return (f"label map: {raw}\n{len(lengths)} distinct clips, longest {longest:.2f} s; encoder window "
            f"{window:g} s" + (f" ({longer} clips longer, truncated)" if longer else ""))


def _words_table(labels: tuple[str, ...], clips: list) -> Any:
    """Per emotion: clips with a transcript, and how their words relate to the label."""
    from rich import box
    from rich.table import Table

    from pldistill.data.sentences import LEXICAL_CONDITIONS

    with_text = [c for c in clips if c.transcript is not None]
    table = Table(title=f"words: {len(with_text)} of {len(clips)} clips have a transcript, "
                        f"{len({c.transcript for c in with_text})} distinct", box=box.SIMPLE_HEAD)
    for column in ("emotion", "clips", "transcript", *LEXICAL_CONDITIONS, "unmarked"):
        table.add_column(column, justify="left" if column == "emotion" else "right")
    for label in labels:
        mine = [c for c in clips if c.label == label]
        table.add_row(label, str(len(mine)), str(sum(c.transcript is not None for c in mine)),
                      *(str(sum(c.lexical == cond for c in mine)) for cond in LEXICAL_CONDITIONS),
                      str(sum(c.lexical is None for c in mine)))
    return table


#: eGeMAPS features ``data info --egemaps`` shows, with short column names.
_SUMMARY = {"F0semitoneFrom27.5Hz_sma3nz_amean": "F0 mean (st)",
            "F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2": "F0 range (st)",
            "loudness_sma3_amean": "loudness",
            "VoicedSegmentsPerSec": "voiced seg/s",
            "MeanUnvoicedSegmentLength": "pause (s)",
            "alphaRatioV_sma3nz_amean": "alpha ratio (dB)",
            "HNRdBACF_sma3nz_amean": "HNR (dB)",
            "jitterLocal_sma3nz_amean": "jitter"}


def _egemaps_table(labels: tuple[str, ...], clips: list, cache_dir: Path | None) -> Any:
    import numpy as np
    from rich import box
    from rich.table import Table

    from pldistill.data.egemaps import compute_egemaps

    feats = compute_egemaps(clips, cache_dir)
    label_of = {c.key: c.label for c in clips}
    y = np.array([label_of[k] for k in feats.keys])
    table = Table(title=f"eGeMAPS: per-emotion means over {len(feats)} clips ({feats.values.shape[1]} features)",
                  box=box.SIMPLE_HEAD)
    table.add_column("emotion")
    for short in _SUMMARY.values():
        table.add_column(short, justify="right")
    for label in labels:
        mask = y == label
        table.add_row(label, *(f"{feats.column(name)[mask].mean():.3g}" if mask.any() else "-" for name in _SUMMARY))
    return table
