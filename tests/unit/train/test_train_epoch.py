"""``trial._train_epoch`` takes length-bucketed micro-batches: deterministic for a seed, every clip
once, the same number of steps on every rank, and far less padding than random batches.

The step and the collation are replaced by recorders (the mathematics of a step is tested in
``test_microbatch.py``), so this runs in milliseconds without models.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pldistill.config import TrainConfig
from pldistill.losses import ObjectiveOutput
from pldistill.train import loop, trial
from pldistill.train.batching import padded_fraction

N_CLIPS = 203


def _clips(n: int = N_CLIPS) -> list[SimpleNamespace]:
    """Clips of 1-30 s (25 audio tokens/s), many ties."""
    tokens = np.random.default_rng(0).integers(1, 31, n) * 25
    return [SimpleNamespace(key=f"c{i}", num_audio_tokens=int(t)) for i, t in enumerate(tokens)]


def _fold(clips, tc: TrainConfig, seed: int, world: int) -> SimpleNamespace:
    per_rank = len(clips) // world
    micro = -(-per_rank // tc.batch_size)
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.1)
    schedule = loop.Schedule(per_rank, micro, micro, 0, (0.1,))
    head = torch.nn.Module()
    head.p = param
    return SimpleNamespace(schedule=schedule, rng=np.random.default_rng(seed), train=clips, data=SimpleNamespace(
        train=clips, labels=("a", "b")), teacher=SimpleNamespace(tokenizer=None), device=torch.device("cpu"),
        wrapped=head, head=head, models=SimpleNamespace(param=param), optimizer=optimizer, step=0,
        pseudo_targets=None)


@pytest.fixture
def recorded(monkeypatch):
    """Every micro-batch ``_train_epoch`` collates, as a list of clip keys."""
    seen: list[list[str]] = []

    def fake_collate(examples, tokenizer, labels):
        seen.append([ex.key for ex in examples])
        return SimpleNamespace(to=lambda device: len(examples))

    def fake_step(models, n_clips, pseudo=None):
        loss = models.param.sum() * n_clips
        return ObjectiveOutput(total=loss, terms={"ce": loss.detach()})

    monkeypatch.setattr(trial, "collate", fake_collate)
    monkeypatch.setattr(trial, "distill_step", fake_step)
    return seen


def _epochs(recorded, seed: int, tc: TrainConfig, n_epochs: int = 2, world: int = 1, rank: int = 0,
            monkeypatch=None) -> list[list[list[str]]]:
    if monkeypatch is not None:
        monkeypatch.setattr(trial, "rank_world", lambda: (rank, world))
    clips = _clips()
    f = _fold(clips, tc, seed, world)
    out = []
    for _ in range(n_epochs):
        recorded.clear()
        trial._train_epoch(f, tc)
        out.append([list(b) for b in recorded])
    return out


def test_same_seed_same_batches_and_every_clip_once(recorded):
    tc = TrainConfig(batch_size=8, grad_accum=2)
    a, b, c = _epochs(recorded, 3, tc), _epochs(recorded, 3, tc), _epochs(recorded, 4, tc)
    assert a == b and a != c
    assert a[0] != a[1]  # the generator advances: epochs differ
    for epoch in a:
        assert len(epoch) == -(-N_CLIPS // 8)
        assert sorted(k for batch in epoch for k in batch) == sorted(f"c{i}" for i in range(N_CLIPS))


def test_bucketed_batches_pad_far_less_than_random_ones(recorded):
    clips = _clips()
    lengths = np.array([c.num_audio_tokens for c in clips])
    index = {c.key: i for i, c in enumerate(clips)}

    def padding(per_bucket: int) -> float:
        tc = TrainConfig(batch_size=16, batches_per_bucket=per_bucket)
        epoch = _epochs(recorded, 0, tc, n_epochs=1)[0]
        return padded_fraction(lengths, [np.array([index[k] for k in batch]) for batch in epoch])

    # what _train_epoch did before: a random permutation cut into batches
    order = np.random.default_rng(0).permutation(len(clips))
    random = padded_fraction(lengths, [order[i:i + 16] for i in range(0, len(clips), 16)])
    assert random > 0.35
    # the default bucket (4 batches = 64 of these 203 clips) spans a third of the lengths; a
    # fold of thousands of clips, or one batch per bucket, leaves almost none
    assert padding(TrainConfig().batches_per_bucket) < 0.6 * random
    assert padding(1) < 0.1


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_take_the_same_number_of_steps_on_disjoint_clips(recorded, monkeypatch, world):
    tc = TrainConfig(batch_size=4, grad_accum=3)
    per_rank = [_epochs(recorded, 1, tc, n_epochs=1, world=world, rank=r, monkeypatch=monkeypatch)[0]
                for r in range(world)]
    assert len({len(batches) for batches in per_rank}) == 1
    for step in zip(*per_rank):
        assert len({len(b) for b in step}) == 1
    keys = [k for batches in per_rank for b in batches for k in b]
    assert len(keys) == len(set(keys)) == N_CLIPS - N_CLIPS % world


def test_max_steps_per_epoch_cuts_the_epoch(recorded):
    tc = TrainConfig(batch_size=4, grad_accum=2, max_steps_per_epoch=3)
    f = _fold(_clips(), tc, 0, 1)
    f.schedule = loop.Schedule(f.schedule.per_rank, 6, 3, 0, (0.1,))  # as _setup_fold caps it
    trial._train_epoch(f, tc)
    assert len(recorded) == 6 and f.step == 3
