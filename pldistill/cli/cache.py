"""``pldistill-sweep cache``: build a sweep's teacher cache (encoder and teacher outputs, once per fold)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pldistill.cli._app import app

__all__ = ["cache_cmd"]


@app.command("cache")
def cache_cmd(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep file, e.g. sweeps/smoke.yaml.")],
    address: Annotated[str | None, typer.Option("--address", help="Build on this Ray cluster instead of a "
                                                "private local one.")] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", help="CPUs of the local Ray (default: all).")] = None,
    actors: Annotated[int | None, typer.Option("--actors", min=1, help="Ray Data actors, each loading the "
                                               "teacher once (default: one per GPU, else 1).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips per teacher forward.")] = 16,
) -> None:
    """Compute the teacher cache of SWEEP_FILE with Ray Data (`launch` does it too when it is missing).

    Per fold, for every clip: the encoder output, the teacher's projector rows, its attention from the
    response to the audio tokens in every layer and its final hidden states at the audio and response
    positions, in Parquet under <cache_dir>/teacher_outputs/<key>/. A complete cache is reused.
    """
    from pldistill.sweep.cache import CacheBuildOptions, build_sweep_cache
    from pldistill.sweep.load import load_sweep

    sweep = load_sweep(sweep_file)
    gpus = 1.0 if sweep.resources.gpus_per_worker > 0 else 0.0
    opts = CacheBuildOptions(address=address, num_cpus=num_cpus, actors=actors, gpus_per_actor=gpus,
                             batch_size=batch_size)
    for path in build_sweep_cache(sweep, log=typer.echo, opts=opts):
        typer.echo(f"teacher cache: {path}")
