"""``pldistill-sweep data``: synthesise the embedded corpus, inspect EmoBox manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pldistill.cli._app import data_app

__all__ = ["synth", "info"]


@data_app.command("synth")
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write into (the corpus goes to OUT_DIR/synthetic).")],
    speakers: Annotated[int, typer.Option(min=2, help="Synthetic speakers (alternating F/M).")] = 8,
    per_class: Annotated[int, typer.Option(min=1, help="Clips per speaker and emotion.")] = 6,
    folds: Annotated[int, typer.Option(min=2, help="Speaker-independent folds (<= speakers).")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed; the corpus is byte-identical per seed.")] = 0,
) -> None:
    """Write the synthetic emotional-speech corpus in EmoBox format (reused if already there)."""
    import time

    from rich.console import Console

    from pldistill.data.synth import SYNTH_LABELS, synthesize_corpus

    start = time.perf_counter()
    existed = (out_dir / "synthetic").exists()
    manifests = synthesize_corpus(out_dir, speakers=speakers, per_class=per_class, folds=folds, seed=seed)
    clips = speakers * per_class * len(SYNTH_LABELS)
    verb = "reused" if existed else f"wrote in {time.perf_counter() - start:.1f} s"
    Console().print(f"{verb}: {clips} clips, {speakers} speakers, {folds} folds, labels "
                    f"{', '.join(SYNTH_LABELS)}\nmanifests and audio root: {manifests} "
                    f"(dataset 'synthetic')")


@data_app.command("info")
def info(
    manifests_dir: Annotated[Path, typer.Argument(help="Folder holding <dataset>/label_map.json and fold_<k>/.")],
    dataset: Annotated[str, typer.Argument(help="Dataset name, e.g. iemocap, ravdess, savee, synthetic.")],
) -> None:
    """Folds, class counts, speakers and clip lengths of an EmoBox dataset (manifests only)."""
    import numpy as np
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from pldistill.data.emobox import load_fold, resolve_dataset
    from pldistill.data.features import choose_window

    spec, label_map = resolve_dataset(manifests_dir, dataset)
    counts = Table(title=f"{spec.name}: {len(spec.labels)} classes, {spec.num_folds} folds",
                   box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    clips_table = Table(title="speakers and clip lengths (s)", box=box.SIMPLE_HEAD)
    for column in ("fold", "split", "clips", *spec.labels):
        counts.add_column(column, justify="left" if column == "split" else "right", min_width=len(column))
    for column in ("fold", "split", "speakers", "mean", "median", "p95", "max", "test speakers"):
        clips_table.add_column(column, justify="left" if column in ("split", "test speakers") else "right")
    lengths: dict[str, float] = {}
    for k in range(1, spec.num_folds + 1):
        split = load_fold(manifests_dir, spec.name, k, val_fraction=0.0)
        for name, clips in (("train", split.train), ("test", split.test)):
            secs = np.array([c.duration for c in clips])
            lengths.update((c.key, c.duration) for c in clips)
            speakers = sorted({c.speaker or "?" for c in clips})
            fold = str(k) if name == "train" else ""
            counts.add_row(fold, name, str(len(clips)),
                           *(str(sum(c.label == lab for c in clips)) for lab in spec.labels))
            clips_table.add_row(fold, name, str(len(speakers)), f"{secs.mean():.2f}", f"{np.median(secs):.2f}",
                                f"{np.percentile(secs, 95):.2f}", f"{secs.max():.2f}",
                                ", ".join(speakers) if name == "test" else "")
    console = Console()
    console.print(counts)
    console.print(clips_table)
    longest = max(lengths.values())
    window = choose_window([min(longest, 30.0)])  # capped here; the truncation is reported below
    longer = sum(1 for x in lengths.values() if x > window)
    raw = ", ".join(f"{r}->{c}" for r, c in label_map.items())
    console.print(f"label map: {raw}\n{len(lengths)} distinct clips, longest {longest:.2f} s; encoder window "
                  f"{window:g} s" + (f" ({longer} clips longer, truncated)" if longer else ""))
