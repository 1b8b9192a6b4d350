"""The growth plan: the final size a budget asks for, and when each growth event comes. Arithmetic only.

**Size.** Within the range where fixed widths were measured on CIFAR-10 (``size_ref`` fit, 3e12–3e13), the
target is the best fixed width's MACs, ``size_ref_macs · (budget / size_ref_budget) ** size_exponent``.
Above the top of that range (``size_fit_max_budget``) one power law cannot go on: repeated data loses value
after a few tens of epochs, and at 1e16–3e17 published CIFAR-10 recipes train 0.5–5 GMACs for 40–200
epochs (docs/algorithms.md). There the target follows a second power law, joined to the fit at the top of
the measured range and passing through the published anchor (``size_anchor_budget``,
``size_anchor_macs``: WRN-28-10, 5.2 GMACs x 200 epochs = 3.2e17 FLOPs). ``--target-macs`` overrides both.

**When.** Growth comes in ``K`` events, at least ``growth_steps`` and as many more as the target needs so
that no event multiplies the MACs by more than ``max_event_growth``: geometric in MACs,
``seed · (target/seed) ** (k/K)``. Event k comes after the network as it then is has trained
``check_epochs`` epochs since the previous event, or ``grow_until_frac / K`` of the budget, whichever
is less: at small budgets (up to 3e13 for resnet20-thin) the budget share is less and the checks are at
10/20/30/40%, as they were measured; at large budgets the seed trains a few epochs, not thousands, and
the final network trains on nearly all of the budget.

Example:
    >>> from growth.config import GrowConfig
    >>> plan = plan_growth(GrowConfig(budget_flops=3e13), seed_macs=2.62e6, train_size=45_000)
    >>> [round(e.at_fraction, 3) for e in plan.events], round(plan.target_macs / 1e6, 2)
    ([0.1, 0.2, 0.3, 0.4], 4.8)
    >>> big = plan_growth(GrowConfig(budget_flops=2e17), seed_macs=2.62e6, train_size=45_000)
    >>> len(big.events), round(big.seed_epochs, 1), round(big.final_share, 3)
    (11, 5.0, 0.974)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import SIZE_FIT_MIN_BUDGET, GrowConfig

#: Training FLOPs per sample per MAC: forward FLOPs are 2 x MACs, training 3 x forward (docs/algorithms.md §4).
TRAIN_FLOPS_PER_MAC = 6


@dataclass(frozen=True)
class GrowthEvent:
    """One planned growth event: when (share of the budget spent) and to what size."""

    index: int               # 1-based
    at_fraction: float       # share of the budget spent when its check fires
    goal_macs: float         # the network's MACs after it
    epochs_before: float     # epochs the network trains between the previous event (or the start) and this one


@dataclass(frozen=True)
class GrowthPlan:
    """What a growth run will do, fixed before its first step (``grow plan`` prints it)."""

    seed_macs: float
    target_macs: float
    size_rule: str           # how the target was derived, in words
    grows: bool
    events: tuple[GrowthEvent, ...]
    final_epochs: float      # epochs of the final network after the last event
    final_share: float       # share of the budget spent after the last event

    @property
    def seed_epochs(self) -> float:
        """Epochs the seed trains before the first event (all of them if it does not grow)."""
        return self.events[0].epochs_before if self.events else self.final_epochs


def fitted_macs(config: GrowConfig, budget: float) -> float:
    """The fixed-width fit: ``size_ref_macs · (budget / size_ref_budget) ** size_exponent``."""
    return config.size_ref_macs * (budget / config.size_ref_budget) ** config.size_exponent


def target_macs(config: GrowConfig) -> float:
    """The final size for this budget: ``--target-macs``, or the size rule (see the module docstring)."""
    if config.target_macs is not None:
        return float(config.target_macs)
    top = config.size_fit_max_budget
    if config.budget_flops <= top:
        return fitted_macs(config, config.budget_flops)
    joined = fitted_macs(config, top)
    exponent = math.log(config.size_anchor_macs / joined) / math.log(config.size_anchor_budget / top)
    return joined * (config.budget_flops / top) ** exponent


def size_rule(config: GrowConfig) -> str:
    """How :func:`target_macs` was derived for this budget, in words (the plan and the run say it)."""
    if config.target_macs is not None:
        return "--target-macs"
    low, top = SIZE_FIT_MIN_BUDGET, config.size_fit_max_budget
    if config.budget_flops > top:
        return (f"above the measured range ({low:.0e}..{top:.0e}): joined to the published point "
                f"{config.size_anchor_macs / 1e9:.2g} GMACs at {config.size_anchor_budget:.2g} FLOPs")
    if config.budget_flops < low:
        return f"below the measured range ({low:.0e}..{top:.0e}): the fit extrapolated"
    return f"the fixed-width fit, measured at {low:.0e}..{top:.0e}"


def plans_growth(config: GrowConfig, seed_macs: float) -> bool:
    """Whether a run grows at all: the target is at least ``min_growth`` x the seed (and allocation is not none).

    When it does not, the run is DessiLBI on the seed whatever the allocation: ``grow bench`` uses
    this to recognise the controls that are the very same run as ``grow``.

    >>> plans_growth(GrowConfig(budget_flops=1e13, target_macs=3e6), seed_macs=2.62e6)
    False
    """
    return config.allocation != "none" and target_macs(config) >= config.min_growth * seed_macs


def step_targets(seed_macs: float, target: float, steps: int) -> list[float]:
    """MACs after each growth step: geometric from the seed to the target.

    >>> step_targets(seed_macs=1e6, target=16e6, steps=4)
    [2000000.0, 4000000.0, 8000000.0, 16000000.0]
    """
    return [round(seed_macs * (target / seed_macs) ** (k / steps), 6) for k in range(1, steps + 1)]


def event_count(config: GrowConfig, seed_macs: float, target: float) -> int:
    """``growth_steps``, or more where the target needs them (no event above ``max_event_growth`` x MACs)."""
    needed = math.ceil(math.log(target / seed_macs) / math.log(config.max_event_growth) - 1e-9)
    return max(config.growth_steps, needed)


def plan_growth(config: GrowConfig, seed_macs: float, train_size: int) -> GrowthPlan:
    """The plan of a growth run from a seed of ``seed_macs`` on ``train_size`` training images."""
    budget = config.budget_flops
    target = target_macs(config)

    def epochs(share: float, macs: float) -> float:
        return share * budget / (TRAIN_FLOPS_PER_MAC * macs * train_size)

    if not plans_growth(config, seed_macs):
        return GrowthPlan(seed_macs, target, size_rule(config), False, (), epochs(1.0, seed_macs), 1.0)
    count = event_count(config, seed_macs, target)
    goals = step_targets(seed_macs, target, count)
    events, at, macs = [], 0.0, seed_macs
    for k, goal in enumerate(goals, start=1):
        share = min(config.grow_until_frac / count,
                    config.check_epochs * TRAIN_FLOPS_PER_MAC * macs * train_size / budget)
        at += share
        events.append(GrowthEvent(k, at, goal, epochs(share, macs)))
        macs = goal
    return GrowthPlan(seed_macs, target, size_rule(config), True, tuple(events), epochs(1 - at, target), 1 - at)


def describe_plan(plan: GrowthPlan) -> str:
    """The plan in one line, as a run shows it before its first step.

    >>> print(describe_plan(plan_growth(GrowConfig(budget_flops=3e13), seed_macs=2.62e6, train_size=45_000)))
    plan: grow 2.62M -> 4.8M MACs (the fixed-width fit, measured at 3e+12..3e+13) in 4 events, the first after \
4.24 epochs of the seed, the last at 40% of the budget; the final network then trains 13.9 epochs
    """
    if not plan.grows:
        return (f"plan: no growth, the seed ({plan.seed_macs / 1e6:.3g}M MACs) suffices for the target "
                f"{plan.target_macs / 1e6:.3g}M ({plan.size_rule}); it trains {plan.final_epochs:.3g} epochs")
    return (f"plan: grow {plan.seed_macs / 1e6:.3g}M -> {plan.target_macs / 1e6:.3g}M MACs ({plan.size_rule}) in "
            f"{len(plan.events)} events, the first after {plan.seed_epochs:.3g} epochs of the seed, the last at "
            f"{100 * plan.events[-1].at_fraction:.3g}% of the budget; the final network then trains "
            f"{plan.final_epochs:.3g} epochs")
