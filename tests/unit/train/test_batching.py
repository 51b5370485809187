"""Length bucketing: every clip once, deterministic per seed, similar lengths, ranks in step."""

from __future__ import annotations

import numpy as np
import pytest

from pldistill.train.batching import bucket_batches, padded_fraction, rank_bucket_batches


def _lengths(n: int = 203, seed: int = 0) -> np.ndarray:
    """Audio-token counts of clips of 1-30 s (25 tokens/s), with many ties."""
    return np.random.default_rng(seed).integers(1, 31, n) * 25


@pytest.mark.parametrize("batch_size", [1, 4, 16])
@pytest.mark.parametrize("per_bucket", [1, 3])
def test_every_clip_exactly_once(batch_size: int, per_bucket: int) -> None:
    lengths = _lengths()
    batches = bucket_batches(lengths, batch_size, np.random.default_rng(1), batches_per_bucket=per_bucket)
    flat = np.concatenate(batches)
    assert flat.dtype == np.int64
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    sizes = [len(b) for b in batches]
    assert sizes.count(batch_size) >= len(sizes) - 1 and len(batches) == -(-len(lengths) // batch_size)


def test_deterministic_for_a_seed_and_random_across_seeds() -> None:
    lengths = _lengths()
    a = bucket_batches(lengths, 8, np.random.default_rng(5))
    b = bucket_batches(lengths, 8, np.random.default_rng(5))
    c = bucket_batches(lengths, 8, np.random.default_rng(6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    # the generator advances: two epochs from one generator differ
    rng = np.random.default_rng(5)
    first, second = bucket_batches(lengths, 8, rng), bucket_batches(lengths, 8, rng)
    assert not all(np.array_equal(x, y) for x, y in zip(first, second))


def test_batches_are_runs_of_the_sorted_order_and_in_random_order() -> None:
    lengths = _lengths()
    batches = bucket_batches(lengths, 8, np.random.default_rng(2), batches_per_bucket=1)
    spans = sorted((lengths[b].min(), lengths[b].max()) for b in batches)
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))  # no two batches overlap
    maxima = [lengths[b].max() for b in batches]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def test_buckets_cut_padding_and_shuffle_within() -> None:
    lengths = _lengths(2000)
    rng = np.random.default_rng(3)
    random = [rng.permutation(len(lengths))[i : i + 16] for i in range(0, len(lengths), 16)]
    tight = bucket_batches(lengths, 16, np.random.default_rng(3), batches_per_bucket=1)
    loose = bucket_batches(lengths, 16, np.random.default_rng(3), batches_per_bucket=8)
    assert padded_fraction(lengths, random) > 0.35
    assert padded_fraction(lengths, tight) < 0.02
    assert padded_fraction(lengths, tight) <= padded_fraction(lengths, loose) < 0.1
    # bucketing keeps lengths close, and the shuffle inside buckets varies the batches between epochs
    as_sets = {frozenset(b.tolist()) for b in tight}
    assert sum(frozenset(b.tolist()) in as_sets for b in loose) < len(loose) // 2


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_ranks_split_one_order(world: int, batch_size: int) -> None:
    lengths = _lengths(103)
    per_rank = [rank_bucket_batches(lengths, batch_size, np.random.default_rng(9), world=world, rank=r)
                for r in range(world)]
    counts = {len(b) for b in per_rank}
    assert len(counts) == 1  # the same number of steps on every rank
    for step in zip(*per_rank):
        assert len({len(b) for b in step}) == 1  # and the same number of clips at each step
    flat = np.concatenate([np.concatenate(b) for b in per_rank])
    assert len(set(flat.tolist())) == len(flat) == len(lengths) - len(lengths) % world
    if world == 1:
        expected = bucket_batches(lengths, batch_size, np.random.default_rng(9))
        assert all(np.array_equal(x, y) for x, y in zip(per_rank[0], expected))


def test_a_step_takes_one_run_of_the_sorted_order() -> None:
    """With one step per bucket, the ranks' batches at a step together are a run of the sorted order:
    their lengths are as close as a step of world * batch_size clips allows."""
    lengths, world = _lengths(96), 3
    per_rank = [rank_bucket_batches(lengths, 4, np.random.default_rng(4), world=world, rank=r,
                                    batches_per_bucket=1) for r in range(world)]
    spans = sorted((min(lengths[b].min() for b in s), max(lengths[b].max() for b in s)) for s in zip(*per_rank))
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))


def test_fewer_clips_than_ranks_and_invalid_arguments() -> None:
    assert rank_bucket_batches([10, 20], 4, np.random.default_rng(0), world=3, rank=1) == []
    assert bucket_batches([], 4, np.random.default_rng(0)) == []
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="batch_size"):
        bucket_batches([1, 2], 0, rng)
    with pytest.raises(ValueError, match="rank"):
        rank_bucket_batches([1, 2], 1, rng, world=2, rank=2)
    with pytest.raises(ValueError, match="1-D"):
        bucket_batches([[1, 2]], 1, rng)
    assert padded_fraction([3, 1], [np.array([0, 1])]) == pytest.approx(1 / 3)
