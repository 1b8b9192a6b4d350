"""Tests for growth.schedule: the learning rate over the budget, and the batch choice that spends every
whole sample of it."""

from __future__ import annotations

import pytest

from growth.compute import Ledger
from growth.config import TrainConfig
from growth.schedule import lr_at, next_batch_size

# --------------------------------------------------------------------------- batch choice


@pytest.mark.parametrize("available", [None, 3, 4, 5, 64, 128, 1000])
@pytest.mark.parametrize("batch_size", [2, 3, 4, 128])
@pytest.mark.parametrize("affordable", [0, 1, 2, 3, 4, 5, 6, 17, 129, 130, 131, 257, 1000])
def test_batch_choice_spends_every_whole_sample(batch_size: int, affordable: int, available: int | None) -> None:
    """The loop's batch choice, replayed on a bare ledger: batches of 2..batch_size (+1 once, to
    absorb a lone last sample), never more than the training images, and the run ends less than
    one sample short of the budget."""
    per_sample = 1000.0
    ledger = Ledger(budget_flops=(affordable + 0.25) * per_sample)
    batches = []
    while True:
        batch = next_batch_size(batch_size, ledger.affordable_samples(per_sample), available)
        if batch < 2:
            break
        ledger.charge(batch * per_sample, batch)
        batches.append(batch)
    limit = batch_size if available is None else min(batch_size, available)
    assert all(2 <= b <= limit + 1 for b in batches)
    assert available is None or all(b <= available for b in batches)
    assert all(b == limit for b in batches[:-2])
    assert sum(batches) == (affordable if affordable >= 2 else 0)
    assert ledger.budget_flops - ledger.spent_flops < per_sample or affordable < 2


# --------------------------------------------------------------------------- learning-rate schedule


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_reaches_zero_at_the_end(schedule: str) -> None:
    config = TrainConfig(lr=0.1, warmup_frac=0.05, schedule=schedule)
    assert lr_at(config, 1.0) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(config, 0.999) < 0.01 * config.lr
    assert lr_at(config, 0.05) == pytest.approx(config.lr)
    lrs = [lr_at(config, f / 1000) for f in range(50, 1001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # non-increasing after warm-up
    assert all(lr >= 0 for lr in lrs)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_lr_warmup_increases_to_the_peak(schedule: str) -> None:
    config = TrainConfig(lr=0.2, warmup_frac=0.1, schedule=schedule)
    fractions = [i / 1000 for i in range(0, 100)]
    lrs = [lr_at(config, f) for f in fractions]
    assert all(0 < lr <= config.lr for lr in lrs)
    assert all(a < b for a, b in zip(lrs, lrs[1:]))  # strictly increasing
    assert lrs[0] < 0.05 * config.lr
    assert lr_at(config, 0.0999) == pytest.approx(config.lr, rel=0.01)  # continuous at the peak
    assert lr_at(config, 0.1) == pytest.approx(config.lr)
    # over the whole budget: rises to the peak, never past it, then never rises again
    curve = [lr_at(config, f / 10000) for f in range(10001)]
    top = curve.index(max(curve))
    assert max(curve) <= config.lr
    assert all(a <= b for a, b in zip(curve[:top], curve[1:top + 1]))
    assert all(a >= b for a, b in zip(curve[top:], curve[top + 1:]))


def test_lr_constant_schedule_holds_the_peak() -> None:
    config = TrainConfig(lr=0.05, warmup_frac=0.1, schedule="constant")
    for fraction in (0.1, 0.5, 0.99, 1.0):
        assert lr_at(config, fraction) == config.lr


def test_lr_without_warmup_starts_at_the_peak() -> None:
    config = TrainConfig(lr=0.1, warmup_frac=0.0, schedule="cosine")
    assert lr_at(config, 0.0) == pytest.approx(config.lr)
    assert lr_at(config, 0.5) == pytest.approx(0.05)
    assert lr_at(config, 1.0) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_decay_start_holds_the_peak(schedule: str) -> None:
    config = TrainConfig(lr=0.1, warmup_frac=0.05, schedule=schedule, decay_start_frac=0.5)
    for fraction in (0.05, 0.1, 0.3, 0.49, 0.5):
        assert lr_at(config, fraction) == pytest.approx(config.lr), fraction
    assert lr_at(config, 0.6) < config.lr
    assert lr_at(config, 0.75) == pytest.approx(0.05)  # half-way through the decay, both schedules
    assert lr_at(config, 1.0) == pytest.approx(0.0, abs=1e-15)
    lrs = [lr_at(config, f / 100) for f in range(50, 101)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
