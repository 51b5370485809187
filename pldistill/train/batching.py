"""Batches of clips of similar audio-token length (length bucketing), for one epoch.

A batch is padded to its longest clip, so random batches of clips between 1 and 30 s spend most of
their compute on padding. Sorting by length and cutting the sorted order into batches removes
most of it; shuffling inside buckets of a few batches, and shuffling the order of the batches,
keeps the epochs random. Every draw comes from one ``numpy.random.Generator``: the same seed gives
the same batches, on every rank.

With per-sample loss reductions (:mod:`pldistill.losses.reduction`) a batch of B clips has the
same loss and gradient as B single clips accumulated, so bucketing changes which clips share a
step, not the mathematics of a step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bucket_batches", "rank_bucket_batches", "padded_fraction"]


def bucket_batches(lengths: Sequence[int] | np.ndarray, batch_size: int, rng: np.random.Generator, *,
                   batches_per_bucket: int = 4) -> list[np.ndarray]:
    """One epoch of batches of clip indices, each clip exactly once.

    Args:
        lengths: ``(n,)`` audio-token length (or any size measure) of each clip.
        batch_size: clips per batch; only the batch holding the longest clips may be smaller.
        rng: the epoch's generator; its state advances.
        batches_per_bucket: the sorted order is cut into buckets of this many batches and shuffled
            inside each bucket before it is cut into batches, so batches differ from epoch to epoch
            while their lengths stay close. 1: batches are consecutive runs of the sorted order.

    Returns:
        A list of ``int64`` index arrays in a random order.
    """
    return rank_bucket_batches(lengths, batch_size, rng, world=1, rank=0, batches_per_bucket=batches_per_bucket)


def rank_bucket_batches(lengths: Sequence[int] | np.ndarray, batch_size: int, rng: np.random.Generator, *,
                        world: int, rank: int, batches_per_bucket: int = 4) -> list[np.ndarray]:
    """``rank``'s share of one epoch of bucketed batches, split from one order common to all ranks.

    Every rank calls this with a generator in the same state and gets the same number of batches
    (DDP needs every rank to take the same number of steps), with the same number of clips at each
    step. ``n % world`` clips chosen at random sit the epoch out; the others appear exactly once
    over all ranks. A step's ``world`` batches come from one run of ``world * batch_size`` clips
    of the sorted order, dealt out in turn, so the ranks' batches at a step have similar lengths
    and no rank waits long for another.

    Args:
        world: number of ranks; rank: this rank, ``0 <= rank < world``.
        lengths, batch_size, rng, batches_per_bucket: as in :func:`bucket_batches` (a bucket holds
            ``batches_per_bucket`` steps of ``world`` batches).

    Returns:
        This rank's batches, ``int64`` index arrays, in step order.
    """
    lengths = _check(lengths, batch_size, world, rank, batches_per_bucket)
    n = lengths.shape[0]
    kept = rng.permutation(n)[: n - n % world]  # random ties, and the random clips left out
    order = kept[np.argsort(lengths[kept], kind="stable")]
    step = batch_size * world
    bucket = step * batches_per_bucket
    for start in range(0, order.shape[0], bucket):
        rng.shuffle(order[start : start + bucket])  # a view: shuffles in place
    steps = [order[i : i + step] for i in range(0, order.shape[0], step)]
    out = []
    for s in rng.permutation(len(steps)):
        run = steps[s][np.argsort(lengths[steps[s]], kind="stable")]
        out.append(run[rank::world].astype(np.int64))
    return out


def padded_fraction(lengths: Sequence[int] | np.ndarray, batches: Sequence[np.ndarray]) -> float:
    """The share of padding when each batch is padded to its longest clip: ``1 - real / padded``."""
    lengths = np.asarray(lengths)
    padded = sum(int(lengths[b].max()) * len(b) for b in batches if len(b))
    real = sum(int(lengths[b].sum()) for b in batches)
    return 1.0 - real / padded if padded else 0.0


def _check(lengths: Sequence[int] | np.ndarray, batch_size: int, world: int, rank: int,
           batches_per_bucket: int) -> np.ndarray:
    arr = np.asarray(lengths)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"lengths must be a 1-D sequence of numbers, got shape {arr.shape} dtype {arr.dtype}")
    for name, value in (("batch_size", batch_size), ("world", world), ("batches_per_bucket", batches_per_bucket)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    return arr
