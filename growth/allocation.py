"""Where a growth step's MACs go: whole channels to the groups Γ chose, the others only when those are capped.

A growth step has a MACs goal (growth.controller: geometric steps from the seed to the target) and a list
of *chosen* groups (Γ's choice, best score first). :func:`allocate` spends the goal in whole channels,
in tiers: first the chosen groups, then, only if every chosen group has reached its per-step cap, the
others. Within a tier:

1. **One unit each.** Every group of the tier gains one unit (one channel, or the width multiple from 16
   channels on, :func:`next_width`), best score first (equal scores: the cheapest unit first), as long as
   the network stays within the goal. A
   chosen 4-channel group therefore grows under a step that affords one channel of it, and a width
   multiple of 8 is a unit to add, never a rounding that freezes a 16-channel group.
2. **A common factor.** On top, the largest factor ``f <= cap`` such that every group of the tier at
   ``floor(width · f)`` (to an allowed width) keeps the network within the goal: the chosen part of the
   network scales as one, as a uniformly scaled network would.
3. **The rest, one unit at a time**, to the group of the tier that has grown least (relative to its width
   at the step's start; ties: best score, then network order) whose unit still fits, until none fits.

What is left of the goal after the chosen tier stays unspent unless every chosen group is capped: the
step goals are absolute MACs, so the next check (with a fresh reading of Γ) spends it.

Example:
    >>> import search_spaces
    >>> genotype = search_spaces.get_genotype("resnet8-thin")          # widths 4, 8, 16
    >>> seed = 848_032.0  # its MACs at 32x32
    >>> added = allocate(genotype, {"stage3": 0.9}, [], goal_macs=1.05 * seed, cap=2.0, input_shape=(3, 32, 32))
    >>> added   # a 5% step: stage 3 alone, in whole channels
    {'stage3': 4}
    >>> next_width(15, multiple=8), next_width(16, multiple=8), next_width(5, multiple=8)
    (16, 24, 6)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from search_spaces import family_of
from search_spaces.errors import FamilyError

from .compute import measure_cost
from .graph import groups_of_genotype
from .operators import resized_genotype

if TYPE_CHECKING:
    from search_spaces import Genotype

#: Widths from here on are multiples of the width multiple (narrower layers are not worth a padded tile).
WIDTH_MULTIPLE_FROM = 16


def next_width(width: int, multiple: int = 1) -> int:
    """The next allowed width above ``width``: one more channel, or from 16 channels on the next multiple
    of ``multiple`` (the allocation's unit)."""
    if multiple == 1 or width + 1 < WIDTH_MULTIPLE_FROM:
        return width + 1
    return max(WIDTH_MULTIPLE_FROM, multiple * (width // multiple + 1))


def floor_width(width: int, goal: float, multiple: int = 1) -> int:
    """The largest allowed width at most ``goal`` (never below ``width``).

    >>> floor_width(12, 17.5, 8), floor_width(12, 15.5, 8), floor_width(20, 23.0, 8), floor_width(10, 13.9)
    (16, 15, 20, 13)
    """
    best = width
    while next_width(best, multiple) <= goal + 1e-9:
        best = next_width(best, multiple)
    return best


def with_widths(genotype: Genotype, widths: dict[str, int]) -> Genotype:
    """``genotype`` with each named group widened to ``widths[name]`` (new channels appended)."""
    for name, width in widths.items():
        group = next(g for g in groups_of_genotype(genotype) if g.name == name)
        if width > group.width:
            genotype = resized_genotype(genotype, group, torch.arange(group.width), width - group.width)
    return genotype


def widened_alike(genotype: Genotype, goal_macs: float, input_shape: tuple[int, int, int]) -> Genotype:
    """``genotype`` with every group grown alike (equal scores) to at most ``goal_macs``: the architecture a
    size target implies before Γ has said anything (``grow plan``; the start of a run says if it falls short).

    >>> import search_spaces
    >>> widened_alike(search_spaces.get_genotype("resnet8-thin"), 3.4e6, (3, 32, 32)).compact()
    [[8, 8], [17, 17], [35, 34]]
    """
    seed = float(measure_cost(genotype, input_shape).macs)
    equal = {g.name: 1.0 for g in groups_of_genotype(genotype)}
    cap = 1.5 * (goal_macs / seed) ** 0.5 + 1  # MACs grow about as width squared: room to reach the goal
    added = allocate(genotype, equal, [], goal_macs, cap, input_shape)
    return with_widths(genotype, {g.name: g.width + added.get(g.name, 0) for g in groups_of_genotype(genotype)})


def allocate(genotype: Genotype, chosen: dict[str, float], others: list[str], goal_macs: float, cap: float,
             input_shape: tuple[int, int, int], multiple: int = 1) -> dict[str, int]:
    """Channels to add per group (see the module docstring); ``chosen`` maps the chosen groups to their score."""
    groups = groups_of_genotype(genotype)
    start: dict[str, int] = {g.name: g.width for g in groups}
    widths = dict(start)
    family, keys = family_of(genotype), {g.name: g.key for g in groups}

    def macs(candidate: dict[str, int]) -> float:
        try:  # the family's analytic count: exact, and no model is built (a 2e17 network has millions of weights)
            return family.forward_flops(genotype, input_shape, {keys[n]: w for n, w in candidate.items()}) / 2
        except FamilyError:  # a family without one
            return float(measure_cost(with_widths(genotype, candidate), input_shape).macs)

    def ceiling(name: str) -> int:  # the per-step cap, but always room for one unit
        return max(floor_width(start[name], start[name] * cap, multiple), next_width(start[name], multiple))

    def capped(name: str) -> bool:
        return next_width(widths[name], multiple) > ceiling(name)

    order = {name: i for i, name in enumerate(start)}
    base = macs(widths)
    for tier_scores in (chosen, dict.fromkeys(others, 0.0)):
        if tier_scores is not chosen and not all(capped(name) for name in chosen):
            break
        unit_cost = {n: macs({**widths, n: next_width(widths[n], multiple)}) - base for n in tier_scores}
        # best score first; among equal scores the cheapest unit first, so that ties (and the uniform
        # control, where every score is equal) do not spend a small step on the first costly groups
        tier = sorted(tier_scores, key=lambda n: (-tier_scores[n], unit_cost[n], order[n]))
        # 1. one unit each
        for name in tier:
            trial = {**widths, name: next_width(widths[name], multiple)}
            if not capped(name) and macs(trial) <= goal_macs:
                widths = trial

        # 2. a common factor on top
        def scaled(factor: float) -> dict[str, int]:
            return {**widths, **{n: min(ceiling(n), max(widths[n], floor_width(start[n], start[n] * factor,
                                                                                multiple))) for n in tier}}

        lo, hi = 1.0, cap
        if macs(scaled(hi)) <= goal_macs:
            lo = hi
        else:
            for _ in range(20):  # MACs rise monotonically with the factor
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if macs(scaled(mid)) <= goal_macs else (lo, mid)
        widths = scaled(lo)
        # 3. the rest, one unit at a time to the group that has grown least
        open_groups = [n for n in tier if not capped(n)]
        while open_groups:
            name = min(open_groups, key=lambda n: (widths[n] / start[n], tier.index(n), order[n]))
            trial = {**widths, name: next_width(widths[name], multiple)}
            if macs(trial) <= goal_macs:
                widths = trial
            else:
                open_groups.remove(name)
            open_groups = [n for n in open_groups if not capped(n)]
    return {name: widths[name] - start[name] for name in start if widths[name] > start[name]}
