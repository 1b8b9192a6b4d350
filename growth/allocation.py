"""Where a growth step's MACs go: whole channels to the groups Γ chose, the others only when those are capped.

A growth step has a MACs goal (growth.plan: geometric steps from the seed to the target) and a list of
*chosen* groups with their scores (Γ's choice). :func:`allocate` spends the goal in whole channels, in
tiers: first the chosen groups, then, only if every chosen group has reached its per-step cap, the
others. A unit is one channel, or the width multiple from 16 channels on (:func:`next_width`): a
multiple of 8 is a unit to add, never a rounding that freezes a 16-channel group.

**By value** (``rule="value"``, Γ's rule). One unit at a time to the group whose unit buys the most
``score x ΔU`` per MAC, until no unit of the tier fits in the goal, where ``U = Σ_layers log(a·b / (a+b))``
over the layers' input and output widths ``a, b`` (:func:`_utility`). U is concave in every width (a
channel added to 6 is worth more than one added to 30) and, for a given ``a·b``, largest at ``a = b``
(a stage's blocks and their inner convs grow together); the MACs are the price (a channel costs its
resolution times its neighbours' widths). With equal scores the rule settles where every layer's
resolution x width² is equal: width doubling as the resolution halves, the proportion of the
hand-designed ResNets. Γ's scores tilt it towards the groups whose filters Γ uses. A chosen 4-channel
group grows under a step that affords one channel.

**Alike** (``rule="alike"``, the uniform control and ``grow plan``). Uniform scaling in whole channels:
one unit each (cheapest first), the largest common factor ``f <= cap`` at which ``floor(width · f)``
keeps the network within the goal, then the rest one unit at a time to the least-grown group.

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

import math
from typing import TYPE_CHECKING, Callable, Literal

import torch

from search_spaces import family_of
from search_spaces.errors import FamilyError

from .compute import measure_cost
from .graph import ChannelGroup, groups_of_genotype
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
    added = allocate(genotype, equal, [], goal_macs, cap, input_shape, rule="alike")
    return with_widths(genotype, {g.name: g.width + added.get(g.name, 0) for g in groups_of_genotype(genotype)})


def allocate(genotype: Genotype, chosen: dict[str, float], others: list[str], goal_macs: float, cap: float,
             input_shape: tuple[int, int, int], multiple: int = 1,
             rule: Literal["value", "alike"] = "value") -> dict[str, int]:
    """Channels to add per group (see the module docstring); ``chosen`` maps the chosen groups to their score.

    ``rule="value"``: one unit at a time to the group with the most ``score x ΔU`` per MAC (:func:`_utility`).
    ``rule="alike"``: one unit each, a common factor, then the least grown (uniform scaling)."""
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

    def capped(name: str, widths: dict[str, int]) -> bool:
        return next_width(widths[name], multiple) > ceiling(name)

    order = {name: i for i, name in enumerate(start)}
    utility = _utility(groups)
    for tier_scores in (chosen, dict.fromkeys(others, 1.0)):
        if tier_scores is not chosen and not all(capped(name, widths) for name in chosen):
            break
        if rule == "value":
            widths = _by_value(widths, tier_scores, utility, goal_macs, macs, capped, order, multiple)
        else:
            widths = _alike(widths, start, tier_scores, goal_macs, macs, capped, ceiling, order, cap, multiple)
    return {name: widths[name] - start[name] for name in start if widths[name] > start[name]}


def _utility(groups: list[ChannelGroup]) -> Callable[[dict[str, int]], float]:
    """``widths -> Σ over layers of log(a·b / (a + b))``, ``a, b`` a layer's input and output widths: concave
    in each width and largest, at a given ``a·b``, where ``a = b``, so that a stage's blocks and their inner
    convs grow together. Layers with one side fixed (the stem reads the image's channels, the classifier
    writes the classes) are left out: their harmonic width is bounded by that side."""
    reads = {layer: g.name for g in groups for layer in g.consumers}
    pairs = [(reads[layer], g.name) for g in groups for layer in g.producers if layer in reads]

    def utility(widths: dict[str, int]) -> float:
        return sum(math.log(widths[a] * widths[b] / (widths[a] + widths[b])) for a, b in pairs)
    return utility


def _by_value(widths: dict[str, int], scores: dict[str, float], utility: Callable[[dict[str, int]], float],
              goal_macs: float, macs: Callable[[dict[str, int]], float], capped: Callable[[str, dict[str, int]], bool],
              order: dict[str, int], multiple: int) -> dict[str, int]:
    """One unit at a time to the open group whose unit buys the most ``score x utility gain`` per MAC."""
    current, useful = macs(widths), utility(widths)
    open_groups = [n for n in scores if scores[n] > 0]
    while True:
        open_groups = [n for n in open_groups if not capped(n, widths)]
        best: tuple[float, int, dict[str, int], float, float] | None = None
        for name in list(open_groups):
            trial = {**widths, name: next_width(widths[name], multiple)}
            cost = macs(trial)
            if cost > goal_macs:
                open_groups.remove(name)  # its unit no longer fits; it never will in this step
                continue
            gain = utility(trial)
            value = scores[name] * (gain - useful) / max(cost - current, 1.0)
            if best is None or (value, -order[name]) > (best[0], best[1]):
                best = (value, -order[name], trial, cost, gain)
        if best is None:
            return widths
        widths, current, useful = best[2], best[3], best[4]


def _alike(widths: dict[str, int], start: dict[str, int], tier_scores: dict[str, float], goal_macs: float,
           macs: Callable[[dict[str, int]], float], capped: Callable[[str, dict[str, int]], bool],
           ceiling: Callable[[str], int], order: dict[str, int], cap: float, multiple: int) -> dict[str, int]:
    """Uniform scaling of a tier in whole channels: one unit each, a common factor, then the least grown."""
    base = macs(widths)
    unit_cost = {n: macs({**widths, n: next_width(widths[n], multiple)}) - base for n in tier_scores}
    # best score first; among equal scores the cheapest unit first, so that ties (and the uniform
    # control, where every score is equal) do not spend a small step on the first costly groups
    tier = sorted(tier_scores, key=lambda n: (-tier_scores[n], unit_cost[n], order[n]))
    # 1. one unit each
    for name in tier:
        trial = {**widths, name: next_width(widths[name], multiple)}
        if not capped(name, widths) and macs(trial) <= goal_macs:
            widths = trial

    # 2. a common factor on top
    def scaled(factor: float) -> dict[str, int]:
        return {**widths, **{n: min(ceiling(n), max(widths[n], floor_width(start[n], start[n] * factor, multiple)))
                             for n in tier}}

    lo, hi = 1.0, cap
    if macs(scaled(hi)) <= goal_macs:
        lo = hi
    else:
        for _ in range(20):  # MACs rise monotonically with the factor
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if macs(scaled(mid)) <= goal_macs else (lo, mid)
    widths = scaled(lo)
    # 3. the rest, one unit at a time to the group that has grown least
    open_groups = [n for n in tier if not capped(n, widths)]
    while open_groups:
        name = min(open_groups, key=lambda n: (widths[n] / start[n], tier.index(n), order[n]))
        trial = {**widths, name: next_width(widths[name], multiple)}
        if macs(trial) <= goal_macs:
            widths = trial
        else:
            open_groups.remove(name)
        open_groups = [n for n in open_groups if not capped(n, widths)]
    return widths
