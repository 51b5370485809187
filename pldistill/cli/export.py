"""``export`` and ``predict``: turn a sweep's best student into a folder people can run, and run it."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pldistill.cli._app import app
from pldistill.cli.results import Format, OutputFormat, ResultsDir

if TYPE_CHECKING:
    from pldistill.serve.predict import PredictionRun

__all__ = ["export", "predict", "print_predictions"]


@app.command()
def export(
    sweep: Annotated[str, typer.Argument(help="The sweep (a folder under --results).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (must be empty or absent unless --force).")],
    trial: Annotated[str | None, typer.Option("--trial", help="Trial id (default: the sweep's best).",
                                              show_default=False)] = None,
    best: Annotated[bool, typer.Option("--best", help="The sweep's best completed trial by its metric "
                                                      "(the default).")] = False,
    fold: Annotated[int | None, typer.Option("--fold", min=1, help="Fold whose student to export (default: "
                                             "the trial's best by the sweep's metric).", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Replicate seed whose student to export (default: "
                                             "the trial's best run by the sweep's metric).",
                                             show_default=False)] = None,
    adapter: Annotated[bool, typer.Option("--adapter", help="Keep LoRA as a peft adapter in OUT_DIR/adapter "
                                                            "instead of merging it.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty OUT_DIR.")] = False,
    results: ResultsDir = Path("results"),
) -> None:
    """Write a trial's student as a standalone Hugging Face folder (weights, processor, labels, model card)
    that Qwen2AudioForConditionalGeneration.from_pretrained and AutoProcessor.from_pretrained load."""
    from pldistill.errors import InputError
    from pldistill.serve._quiet import quiet_hf
    from pldistill.serve.export import export_student

    if best and trial is not None:
        raise InputError(None, "--trial", "give --trial ID or --best, not both")
    with quiet_hf():
        src, folder = export_student(results, sweep, out_dir, trial=trial, fold=fold, seed=seed, adapter=adapter,
                                     force=force)
    typer.echo(f"exported {src.sweep}/{src.trial_id} seed {src.seed} fold {src.fold} (epoch {src.epoch}, "
               f"{'adapter' if adapter else 'LoRA merged'}) to {folder}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `pldistill-sweep export`.")],
    audio: Annotated[list[Path] | None, typer.Argument(help="WAV/FLAC files (any sample rate; resampled to "
                                                            "16 kHz).", show_default=False)] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="An EmoBox JSONL manifest: predict its "
                                                  "clips and print UA/WA/F1 against its labels.",
                                                  show_default=False)] = None,
    audio_root: Annotated[Path | None, typer.Option("--audio-root", help="Where the manifest's wav paths "
                                                    "resolve (default: its manifests folder).",
                                                    show_default=False)] = None,
    fmt: Format = OutputFormat.table,
) -> None:
    """Print, per file, the predicted emotion and every label's score (closed-set log-likelihood, as the
    sweep's evaluation scores). Audio longer than the model's window (its labels file and card say
    which) is cropped to the window's first seconds, as training cropped it; no sliding windows.
    A file that cannot be read is reported on one line and the others are still predicted (exit 2)."""
    from pldistill.errors import InputError
    from pldistill.serve._quiet import quiet_hf
    from pldistill.serve.predict import load_exported, predict_files, predict_manifest

    if not audio and manifest is None:
        raise InputError(None, "AUDIO", "give audio files or --manifest")
    runs = []
    with quiet_hf():
        model = load_exported(model_dir)
        if audio:
            runs.append(predict_files(model, audio))
        if manifest is not None:
            runs.append(predict_manifest(model, manifest, audio_root=audio_root))
    failed = False
    for run in runs:
        for line in run.errors:
            print(f"error: {line}", file=sys.stderr)
        failed |= bool(run.errors)
        print_predictions(run, fmt)
    if failed:
        raise typer.Exit(2)


def print_predictions(run: PredictionRun, fmt: OutputFormat) -> None:
    """One row per clip: file, key, (label), prediction, one score per label; then the metrics."""
    truth = run.metrics is not None
    if fmt is OutputFormat.json:
        blob = {"labels": list(run.labels), "window_s": run.window_s,
                "long_audio": f"cropped to the first {run.window_s:g} s",
                "predictions": [{k: v for k, v in p.__dict__.items() if truth or k != "label"}
                                for p in run.predictions],
                "errors": run.errors, **({"metrics": run.metrics} if truth else {})}
        sys.stdout.write(json.dumps(blob, indent=2, ensure_ascii=False) + "\n")
        return
    head = ["file", "key", *(["label"] if truth else []), "prediction", *run.labels]
    rows = [[p.file, p.key, *([str(p.label)] if truth else []), p.prediction,
             *(f"{p.scores[lab]:.4f}" for lab in run.labels)] for p in run.predictions]
    summary = (f"UA {run.metrics['ua']:.4f}  WA {run.metrics['wa']:.4f}  F1 {run.metrics['f1']:.4f}  "
               f"over {len(run.predictions)} clips" if run.metrics else None)
    if fmt is OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerows([head, *rows])
        if summary:  # stdout stays one CSV table; the figures go beside it
            print(summary, file=sys.stderr)
        return
    from pldistill.cli._table import new_table, print_table, table_console

    table = new_table(f"closed-set scores (log-likelihood); audio cropped to {run.window_s:g} s", head,
                      right=run.labels)
    for row in rows:
        table.add_row(*row)
    print_table(table)
    if summary:
        table_console().print(summary)
