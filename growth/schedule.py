"""The budget's schedule: the learning rate as a function of the fraction of the budget spent, how many
steps a share of the budget buys, and the size of the next batch when the budget nears its end (so the
ledger ends within one sample's cost)."""

from __future__ import annotations

import math

from .config import TrainConfig


def lr_at(config: TrainConfig, fraction: float) -> float:
    """Learning rate after ``fraction`` of the budget: warm-up, then decay to 0 at 1.0."""
    if fraction < config.warmup_frac:
        return config.lr * min(1.0, (fraction + 1e-3) / config.warmup_frac)  # never past the peak
    if config.schedule == "constant":
        return config.lr
    start = max(config.warmup_frac, config.decay_start_frac)
    progress = (fraction - start) / max(1e-12, 1 - start)
    progress = min(1.0, max(0.0, progress))
    if config.schedule == "linear":
        return config.lr * (1 - progress)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def steps_in(config: TrainConfig, budget_frac: float, train_flops_per_sample: float, train_size: int) -> int:
    """How many steps (at least 1) ``budget_frac`` of the budget buys at ``train_flops_per_sample``, with
    batches of ``config.batch_size`` (or the whole training set, if smaller).

    >>> steps_in(TrainConfig(budget_flops=1e9, batch_size=100), 0.5, train_flops_per_sample=1e3, train_size=10**4)
    5000
    """
    batch = min(config.batch_size, train_size)
    return max(1, math.ceil(budget_frac * config.budget_flops / (train_flops_per_sample * batch)))


def next_batch_size(batch_size: int, affordable: int, available: int | None = None) -> int:
    """Size of the next batch when ``affordable`` more samples fit in the budget (< 2: stop).

    A batch never exceeds the ``available`` training images (what is charged is what is trained).
    A lone last sample cannot make a batch of its own (BatchNorm), so when exactly one would be left
    over it joins this batch (or this batch leaves two for the last one): the ledger still ends
    within one sample's cost of the budget.
    """
    batch = min(batch_size if available is None else min(batch_size, available), affordable)
    if affordable - batch == 1:
        if available is None or batch < available:
            batch += 1
        elif batch > 2:
            batch -= 1
    return batch
