"""Shared machinery of the pruning baselines (slimming, sss, dessilbi-prune): the rules every pruning
method obeys, the prune to a MACs target, the choice of the dense network to start from, and a
controller that prunes once and then fine-tunes.

Pruning always goes through :func:`growth.operators.prune`, one coupled channel group at a time, so a
ResNet stage (stem or downsampling shortcut, every block's last conv, the residual additions: the
residual stream) loses the same channels everywhere and the zero-padding shortcut's routing stays
exact; the optimizer's per-parameter state is cut alongside.

**Scores.** Each method scores each *producer* conv's filters its paper's way (slimming ``|γ|``, SSS its
factor, DessiLBI the entry into supp Γ); :func:`group_scores` turns them into one score per channel of
each coupled group (a stage group has one producer per block plus the stem or shortcut) by their mean,
so that a many-producer group is on the scale of a one-producer group.

**Ranking** (:func:`plan_prune_to_macs`). The papers rank all channels by one global threshold; none of
them prunes a ResNet's residual stream, whose channels are scored from other layers (the last BN of
every block) than the inner convs'. So scores are normalised *per group kind* (``stage`` and ``inner``
for a ResNet, one kind ``conv`` for a VGG): each kind's scores are divided by the kind's mean score.
Within a kind this is the paper's one global threshold unchanged; across kinds a channel goes when it
is weak *for its kind*. Then every channel above its group's minimum width is ranked by its normalised
score (ties: network order, then channel index) and removed worst first.

**Minimum width** (:func:`min_width`), one rule for every pruning method and every group kind (the
residual stream as one coupled group, each inner conv, each VGG conv)::

    min_width(w) = min(w, max(2, ceil(0.25 · w)))    w: the group's width in the network that was trained

A group keeps its ``min_width`` best-scored channels whatever the target. The share is a judgement: it
leaves the ranking free to cut a layer by 75% (a deep cut by the papers' standards), keeps every layer
at least as wide as the start at width x0.25 (4/8/16 channels for ResNet-20), and rules out the 1-3
channel layers one global threshold produced (stages of one channel left validation accuracy at
chance). With this rule the smallest network a prune can reach has about 1/16 of its start's MACs.

**MACs target** (:data:`MACS_TOLERANCE` = 2%). Removing channels worst first, the prune stops at the
first network with ``MACs <= target``; a channel whose removal would take the network below
``0.98 · target`` (one channel of a wide early layer can be several % of a small target) is skipped and
the next-ranked one tried; if every remaining removal would, the network reached (at most 2% above the
target) stays. The result meets ``|MACs/target − 1| <= 2%`` whenever the minimum widths and the
channels' granularity allow it; when they do not, the event and ``summary.json`` say so
(``target_met: false``, ``target_note``) instead of hiding it. MACs are priced analytically
(:meth:`search_spaces.Family.forward_flops`, equal to ``measure_cost``) where the family can.

**Start** (:func:`choose_start`): scores mean something only after some training, and a budget too
small to pre-train the full seed gives noise. The start is the largest uniform scaling of the seed
(:meth:`search_spaces.Family.scaled`) whose pre-training (``prune_frac`` of the budget) covers at least
``MIN_PRETRAIN_EPOCHS`` = 1 epoch of the training set, bounded by the target: at least 2x the target's
MACs (a pruning method prunes at least half; below that the budget's epochs are what they are, and the
summary says how many) and at most 8x (= 1/(2 · 0.25²): then the minimum widths force at most half the
target, so the scores decide the rest), and never wider than the seed. ``summary.json`` records it as
``start`` (``"resnet20"``, or ``"resnet20@0.667"`` for the seed at width x0.667), ``start_macs``,
``pretrain_epochs`` and ``start_rule``. Without a MACs target the start is the seed.

**Schedule** (:class:`PruneOnceController`). Train the start; at the first evaluation with
``ledger.fraction_spent >= prune_frac`` call the method's ``prune``, log one ``"prune"`` event to
``growth.jsonl`` (as a growth run logs its events), and fine-tune for the rest of the budget.
``prune_frac`` = 0.5 for every method: Network Slimming's own split (160 epochs with the penalty, 160
of fine-tuning), so the three methods differ only in how they score. Penalty strengths follow rules of
their own, in each method's module docstring, computed from :func:`pretrain_lr_sum`.

Example:
    >>> import search_spaces, torch
    >>> model = search_spaces.create_model("resnet20-thin")
    >>> scores = group_scores(model, bn_scale_scores(model))
    >>> full = measure_cost(model, (3, 32, 32)).macs
    >>> plan = prune_to_macs(model, scores, full / 2, (3, 32, 32))
    >>> plan.met, abs(plan.macs / (full / 2) - 1) <= MACS_TOLERANCE, plan.macs == measure_cost(model, (3, 32, 32)).macs
    (True, True, True)
    >>> min_width(16), min_width(64), min_width(4), min_width(1)
    (4, 16, 2, 1)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from growth.compute import TRAIN_FLOPS_PER_FORWARD_FLOP, measure_cost
from growth.config import ConfigError, TrainConfig
from growth.graph import ChannelGroup, channel_groups, find_group, groups_of_genotype
from growth.operators import prune
from growth.trainer import Controller
from search_spaces import FamilyError, family_of, genotype_of, genotype_to_dict

from .fixed import uniform_genotype

if TYPE_CHECKING:
    from growth.trainer import Trainer
    from search_spaces import Genotype

    from .registry import MethodOptions

#: The minimum-width rule (:func:`min_width`): a group keeps at least this share of its trained width...
MIN_WIDTH_FRAC = 0.25
#: ... and at least this many channels.
MIN_WIDTH_CHANNELS = 2
#: A prune to a MACs target ends within this relative distance of it.
MACS_TOLERANCE = 0.02
#: The start is the largest network whose pre-training covers at least this many epochs ...
MIN_PRETRAIN_EPOCHS = 1.0
#: ... but at least this multiple of the target's MACs ...
START_MIN_RATIO = 2.0
#: ... and at most this one: the minimum-width network of the start then has at most half the target.
START_MAX_RATIO = 0.5 / MIN_WIDTH_FRAC ** 2
#: The prune point, as a share of the budget (Network Slimming's equal split of train and fine-tune).
PRUNE_FRAC = 0.5


def min_width(width: int) -> int:
    """The fewest channels a group of ``width`` trained channels may be pruned to, in every pruning
    method: ``min(width, max(2, ceil(0.25 · width)))`` (why: the module docstring)."""
    return min(width, max(MIN_WIDTH_CHANNELS, math.ceil(MIN_WIDTH_FRAC * width - 1e-9)))


# -- scores -------------------------------------------------------------------------------------------


def bn_scale_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """``|γ|`` of the BatchNorm after each producer conv, keyed by the conv's module name."""
    modules = dict(model.named_modules())
    return {conv: modules[norm].weight.detach().abs().float().cpu()
            for group in channel_groups(model) for conv, norm in zip(group.producers, group.norms)}


def group_scores(model: nn.Module, producer_scores: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One score per channel of every coupled group: the mean of its producers' filter scores (keeps a
    many-producer stage group on the scale of a one-producer group)."""
    return {group.name: torch.stack([producer_scores[p].detach().float().cpu() for p in group.producers]).mean(0)
            for group in channel_groups(model)}


def normalised_by_kind(groups: list[ChannelGroup], scores: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every group's scores divided by the mean score of all channels of its kind (a kind whose mean
    is 0 keeps its scores): one threshold then cuts each kind relative to itself."""
    by_kind: dict[str, list[torch.Tensor]] = {}
    for group in groups:
        by_kind.setdefault(group.kind, []).append(scores[group.name].detach().float().cpu())
    mean = {kind: float(torch.cat(s).mean()) for kind, s in by_kind.items()}
    return {g.name: scores[g.name].detach().float().cpu() / (mean[g.kind] if mean[g.kind] > 0 else 1.0)
            for g in groups}


def keep_at_least(keep: torch.Tensor, scores: torch.Tensor, minimum: int) -> torch.Tensor:
    """Indices (ascending) of the channels in the boolean mask ``keep``, topped up with the best-scored
    others (ties: lower index) until there are ``minimum``."""
    keep = keep.clone().bool()
    for c in sorted(range(keep.numel()), key=lambda c: (-float(scores[c]), c)):
        if int(keep.sum()) >= minimum:
            break
        keep[c] = True
    return keep.nonzero().flatten()


# -- pricing ------------------------------------------------------------------------------------------


def macs_with_widths(genotype: Genotype, widths: Mapping[Any, int], input_shape: tuple[int, int, int]) -> int:
    """MACs of ``genotype`` with group ``key -> width`` overrides: the family's analytic count where it
    has one (exactly ``measure_cost``'s), else a measurement of the resized genotype."""
    family = family_of(genotype)
    try:
        return int(family.forward_flops(genotype, input_shape, widths=dict(widths))) // 2
    except FamilyError:
        g = genotype
        for key, width in widths.items():
            g = family.resized(g, key, list(range(width)), 0)
        return measure_cost(g, input_shape).macs


# -- pruning to a MACs target -------------------------------------------------------------------------


@dataclass
class PrunePlan:
    """What :func:`plan_prune_to_macs` decided."""

    keep: dict[str, torch.Tensor]   # group name -> kept channel indices (ascending); shrinking groups only
    macs: int                       # MACs of the pruned architecture
    target_macs: float
    pruned: int                     # channels removed, over all groups
    skipped: int                    # channels ranked below the last removed one, kept to stay in the window
    threshold: float | None         # normalised score of the last channel removed (None: nothing removed)
    floor_macs: int                 # MACs with every group at its minimum width
    min_widths: dict[str, int]      # group name -> minimum width
    note: str | None = None         # why the target was not met (None: it was)

    @property
    def met(self) -> bool:
        """``|MACs/target − 1| <= MACS_TOLERANCE``."""
        return abs(self.macs / self.target_macs - 1) <= MACS_TOLERANCE + 1e-12

    def detail(self) -> dict[str, Any]:
        """The fields a prune event records."""
        return {"target_met": self.met, "target_note": self.note,
                "macs_to_target": round(self.macs / self.target_macs, 4), "floor_macs": self.floor_macs,
                "min_widths": self.min_widths, "threshold": self.threshold,
                "channels_pruned": self.pruned, "channels_skipped": self.skipped}


def _removal_order(groups: list[ChannelGroup], normalised: Mapping[str, torch.Tensor], minimum: Mapping[str, int],
                   first: Mapping[str, torch.Tensor]) -> list[tuple[int, float, int, int]]:
    """Every channel that may go, worst first, as ``(0 if in first else 1, normalised score, group
    index, channel)``; each group's ``minimum`` best channels by the same key are not candidates."""
    order = []
    for gi, group in enumerate(groups):
        s, f = normalised[group.name], first.get(group.name)
        if s.shape != (group.width,):
            raise ValueError(f"{group.name}: {tuple(s.shape)} scores for {group.width} channels")
        ranked = sorted((0 if f is not None and bool(f[c]) else 1, float(s[c]), gi, c) for c in range(group.width))
        order += ranked[: group.width - minimum[group.name]]
    return sorted(order)


def plan_prune_to_macs(genotype: Genotype, scores: Mapping[str, torch.Tensor], target_macs: float,
                       input_shape: tuple[int, int, int], *, min_widths: Mapping[str, int] | None = None,
                       first: Mapping[str, torch.Tensor] | None = None) -> PrunePlan:
    """The prune of ``genotype`` to ``target_macs`` (module docstring: ranking, minimum width, target);
    edits nothing.

    ``min_widths``: group name -> minimum width, where it is not ``min_width`` of the group's width
    (a group already pruned by the method). ``first``: group name -> boolean mask of channels removed
    before any other (SSS's dead channels, whose removal is exact).
    """
    groups = groups_of_genotype(genotype)
    minimum = {g.name: min(g.width, (min_widths or {}).get(g.name, min_width(g.width))) for g in groups}
    order = _removal_order(groups, normalised_by_kind(groups, scores), minimum, first or {})

    def macs(removed: list[int]) -> int:
        counts = [0] * len(groups)
        for i in removed:
            counts[order[i][2]] += 1
        return macs_with_widths(genotype, {g.key: g.width - n for g, n in zip(groups, counts) if n}, input_shape)

    upper, lower = (1 + MACS_TOLERANCE) * target_macs, (1 - MACS_TOLERANCE) * target_macs
    everything = list(range(len(order)))
    floor = macs(everything)

    def plan(removed: list[int], skipped: int = 0, note: str | None = None) -> PrunePlan:
        gone: dict[int, set[int]] = {}
        for i in removed:
            gone.setdefault(order[i][2], set()).add(order[i][3])
        keep = {groups[gi].name: torch.tensor([c for c in range(groups[gi].width) if c not in cs], dtype=torch.long)
                for gi, cs in sorted(gone.items())}
        threshold = order[max(removed)][1] if removed else None
        return PrunePlan(keep, macs(removed), target_macs, len(removed), skipped, threshold, floor, minimum, note)

    if macs([]) <= target_macs:
        full = macs([])
        note = None if full >= lower else (f"the network has {full / target_macs:.3f}x the target's MACs "
                                           "before channel pruning")
        return plan([], note=note)
    if floor > upper:
        return plan(everything, note=f"the minimum widths allow no fewer than {floor} MACs "
                                     f"({floor / target_macs:.3f}x the target)")
    if floor > target_macs:
        return plan(everything)
    lo, hi = 0, len(order)  # macs(prefix lo) > target >= macs(prefix hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if macs(everything[:mid]) <= target_macs else (mid, hi)
    removed, skipped, now = everything[:lo], 0, macs(everything[:lo])
    for i in everything[lo:]:  # worst first; skip a removal that would undershoot the window
        after = macs([*removed, i])
        if after < lower:
            skipped += 1
            continue
        removed.append(i)
        now = after
        if now <= target_macs:
            break
    if now <= upper:
        return plan(removed, skipped)
    closest = everything[:hi]  # no removal lands in the window: the first prefix below the target
    return plan(closest, note=f"no channel removal lands within {MACS_TOLERANCE:.0%} of the target (channels too "
                              f"coarse): {macs(closest) / target_macs:.3f}x the target")


def prune_to_keep(model: nn.Module, keep: Mapping[str, torch.Tensor | list[int]],
                  optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
    """Keep channels ``keep[group]`` (indices into the group's current channels) of each named group.

    Groups not named, or named with all their channels, are left alone. Indices are applied in
    ascending order, so surviving channels keep their relative order.
    """
    for name, indices in keep.items():
        group = find_group(model, name)
        kept = torch.as_tensor(indices, dtype=torch.long).flatten().unique(sorted=True)
        if kept.numel() == group.width:
            continue
        prune(model, group, kept, optimizer)
    return model


def prune_to_macs(model: nn.Module, scores: Mapping[str, torch.Tensor], target_macs: float,
                  input_shape: tuple[int, int, int], optimizer: torch.optim.Optimizer | None = None, *,
                  min_widths: Mapping[str, int] | None = None,
                  first: Mapping[str, torch.Tensor] | None = None) -> PrunePlan:
    """Prune ``model`` in place by :func:`plan_prune_to_macs`; returns the plan."""
    plan = plan_prune_to_macs(genotype_of(model), scores, target_macs, input_shape, min_widths=min_widths,
                              first=first)
    prune_to_keep(model, plan.keep, optimizer)
    return plan


# -- the start and the schedule -----------------------------------------------------------------------


@dataclass(frozen=True)
class PruneStart:
    """The dense network a pruning method trains before its prune (:func:`choose_start`)."""

    seed: str
    multiplier: float       # 1.0: the seed itself
    genotype: Genotype
    macs: int
    pretrain_epochs: float  # epochs of the training set that prune_frac of the budget buys on it
    rule: str               # which bound decided: seed, budget, min ratio, max ratio

    @property
    def label(self) -> str:
        return self.seed if self.multiplier == 1.0 else f"{self.seed}@{self.multiplier:.3g}"

    def summary(self) -> dict[str, Any]:
        return {"start": self.label, "start_macs": self.macs, "pretrain_epochs": round(self.pretrain_epochs, 3),
                "start_rule": self.rule}


def _largest_multiplier(genotype: Genotype, fits: Callable[[Genotype], bool]) -> float:
    """The largest width multiplier in (0, 1] whose uniform scaling of ``genotype`` ``fits`` (1.0 when
    the genotype itself does; ``fits`` must be monotone in the multiplier)."""
    if fits(genotype):
        return 1.0
    lo, hi = 1e-3, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(uniform_genotype(genotype, mid)) else (lo, mid)
    return lo


def choose_start(seed: str, genotype: Genotype, input_shape: tuple[int, int, int], *, budget_flops: float,
                 prune_frac: float, target_macs: float | None, train_size: int | None,
                 min_pretrain_epochs: float = MIN_PRETRAIN_EPOCHS) -> PruneStart:
    """The start of a pruning run (the rule: module docstring, **Start**)."""
    def cost(g: Genotype) -> tuple[int, float]:
        macs = macs_with_widths(g, {}, input_shape)
        if train_size is None:
            return macs, math.inf
        per_sample = TRAIN_FLOPS_PER_FORWARD_FLOP * 2 * macs
        return macs, prune_frac * budget_flops / (per_sample * train_size)

    if target_macs is None:
        return PruneStart(seed, 1.0, genotype, *cost(genotype), "seed")
    if train_size is None:
        raise ConfigError("a pruning method with a MACs target needs the training-set size to choose its start")
    low = _largest_multiplier(genotype, lambda g: cost(g)[0] <= START_MIN_RATIO * target_macs)
    cap = _largest_multiplier(genotype, lambda g: cost(g)[0] <= START_MAX_RATIO * target_macs)
    affordable = _largest_multiplier(genotype, lambda g: cost(g)[1] >= min_pretrain_epochs)
    multiplier = min(1.0, max(low, min(affordable, cap)))
    if multiplier == 1.0:
        rule = "seed"
    elif multiplier == low and affordable < low:
        rule = f"{START_MIN_RATIO:g}x target"
    elif multiplier == cap and cap < affordable:
        rule = f"{START_MAX_RATIO:g}x target"
    else:
        rule = f"budget: {min_pretrain_epochs:g} epoch(s) of pre-training"
    start = genotype if multiplier == 1.0 else uniform_genotype(genotype, multiplier)
    return PruneStart(seed, multiplier, start, *cost(start), rule)


def pretrain_lr_sum(trainer: Trainer, prune_frac: float) -> float:
    """Σ_t η_t over the steps before the prune point (warm-up included), at the start's cost per step:
    how far a constant penalty gradient moves a parameter by then (the penalty-strength rules)."""
    from growth.schedule import lr_at, steps_in

    cfg = trainer.config
    steps = steps_in(cfg, prune_frac, trainer.cost.train_flops_per_sample, len(trainer.data.train_y))
    return sum(lr_at(cfg, prune_frac * i / steps) for i in range(steps))


def check_prunable_seed(seed: str) -> None:
    """Raise :class:`ConfigError` for a seed whose family has no channel groups (timm references)."""
    from search_spaces import get_genotype

    genotype = get_genotype(seed)
    try:
        family_of(genotype).graph(genotype)
    except FamilyError:
        raise ConfigError(f"pruning baselines need a seed whose family has channel groups, got {seed!r} "
                          f"({genotype.family})") from None


def eval_every_dividing(prune_frac: float, every: float) -> float:
    """The largest evaluation interval <= ``every`` that divides ``prune_frac`` (so one evaluation
    falls on the prune point)."""
    return prune_frac / math.ceil(prune_frac / every - 1e-9)


def pruning_config(base: TrainConfig, options: MethodOptions, *, seed: str, optimizer: str, prune_frac: float,
                   min_pretrain_epochs: float = MIN_PRETRAIN_EPOCHS, **changes: Any) -> tuple[TrainConfig, PruneStart]:
    """``base`` for a prune-once method, and its start (:func:`choose_start`; the training-set size
    from ``options.extra["train_size"]``, else ``base.subset``): warm-up, constant lr until
    ``prune_frac``, cosine decay to 0 over the fine-tuning; an evaluation exactly at ``prune_frac``."""
    from search_spaces import get_genotype

    if not 0 < prune_frac < 1:
        raise ConfigError(f"prune_frac must be in (0, 1), got {prune_frac}")
    if not min_pretrain_epochs >= 0:
        raise ConfigError(f"min_pretrain_epochs must be >= 0, got {min_pretrain_epochs}")
    check_prunable_seed(seed)
    shape = tuple(options.extra.get("input_shape", (3, 32, 32)))
    genotype = get_genotype(seed, num_classes=options.extra.get("num_classes", 10), in_chans=shape[0])
    start = choose_start(seed, genotype, (shape[0], shape[1], shape[2]), budget_flops=base.budget_flops,
                         prune_frac=prune_frac, target_macs=options.target_macs,
                         train_size=options.extra.get("train_size", base.subset),
                         min_pretrain_epochs=min_pretrain_epochs)
    config = dataclasses.replace(
        base, seed=seed, genotype=None if start.multiplier == 1.0 else genotype_to_dict(start.genotype),
        optimizer=optimizer, schedule="cosine", decay_start_frac=prune_frac,
        eval_every_frac=eval_every_dividing(prune_frac, base.eval_every_frac), **changes)
    return config, start


def method_options(extra: Mapping[str, Any], method: str, known: tuple[str, ...]) -> dict[str, Any]:
    """``extra[method]``: a method's own settings; unknown keys are an error, not silently ignored."""
    opts = dict(extra.get(method, {}))
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise ConfigError(f"unknown {method} option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return opts


#: The settings every pruning method takes in ``options.extra[<method>]``.
SCHEDULE_OPTIONS = ("prune_frac", "min_pretrain_epochs")


def schedule_options(opts: Mapping[str, Any]) -> tuple[float, float]:
    """``prune_frac`` and ``min_pretrain_epochs`` from a method's settings, with the defaults."""
    return float(opts.get("prune_frac", PRUNE_FRAC)), float(opts.get("min_pretrain_epochs", MIN_PRETRAIN_EPOCHS))


# -- the prune-once controller ------------------------------------------------------------------------


class PruneOnceController(Controller):
    """Train, prune once at the first evaluation with ``prune_frac`` of the budget spent, fine-tune.

    Subclasses implement :meth:`prune` (edit ``trainer.model`` through the operators, passing
    ``trainer.optimizer``; return extra fields for the event, :meth:`PrunePlan.detail` among them
    when there is a target) and may keep state through :meth:`extra_state` / :meth:`load_extra_state`.
    ``phase`` is ``"train"`` then ``"finetune"``. ``default_target_ratio``: when no MACs target is
    given, the target is this share of the start's MACs (fixed when training starts); ``None``: the
    method needs no target. ``start``: the :meth:`PruneStart.summary` of the run's start (recorded in
    the checkpoint, so a resumed run reports the start it trained).
    """

    method = "prune"

    def __init__(self, prune_frac: float = PRUNE_FRAC, target_macs: float | None = None,
                 default_target_ratio: float | None = None, start: dict[str, Any] | None = None) -> None:
        self.prune_frac = prune_frac
        self.target_macs = target_macs
        self.default_target_ratio = default_target_ratio
        self.start = start or {}
        self.phase = "train"
        self.event: dict[str, Any] | None = None
        self.full_macs: int | None = None

    # -- to implement ---------------------------------------------------------------------------------

    def prune(self, trainer: Trainer) -> dict[str, Any]:
        """Prune ``trainer.model`` (through the operators, with ``trainer.optimizer``); the event's extra fields."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """A subclass's own checkpointed state."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned (``state`` holds the base class's keys too)."""

    # -- checkpointed state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "prune_frac": self.prune_frac, "target_macs": self.target_macs,
                "full_macs": self.full_macs, "event": self.event, "start": self.start, **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase, self.prune_frac = state["phase"], state["prune_frac"]
        self.target_macs, self.full_macs, self.event = state["target_macs"], state["full_macs"], state["event"]
        self.start = state.get("start") or self.start
        self.load_extra_state(state)

    # -- hooks ----------------------------------------------------------------------------------------

    def attach(self, trainer: Trainer) -> None:
        """Fix the MACs target before the first step (a resumed run has it already)."""
        if self.phase == "train" and self.full_macs is None:
            self.full_macs = trainer.cost.macs
        if self.target_macs is None and self.default_target_ratio is not None and self.full_macs:
            self.target_macs = self.default_target_ratio * self.full_macs

    def on_eval(self, trainer: Trainer, val_acc: float) -> None:
        if self.phase != "train" or trainer.ledger.fraction_spent < self.prune_frac - 1e-9:
            return
        model = trainer.model
        probe = trainer.probe_batch()
        logits_before = trainer.eval_logits(probe)
        old_widths, before = genotype_of(model).compact(), trainer.cost
        detail = self.prune(trainer)
        self.phase = "finetune"
        after = trainer.cost
        # Relative change of the network function on validation images (0: pruning was exact).
        change = trainer.output_change(probe, logits_before)
        val_after = trainer.accuracy(trainer.data.val_x, trainer.data.val_y)
        self.event = trainer.log_event(
            "prune", method=self.method, old_widths=old_widths, new_widths=genotype_of(trainer.model).compact(),
            old_macs=before.macs, macs=after.macs, old_params=before.params, params=after.params,
            target_macs=self.target_macs, val_acc_before=val_acc, val_acc_after=val_after,
            output_change=change, **detail)

    def summary(self) -> dict[str, Any]:
        event = self.event or {}
        return {"method": self.method, "prune_frac": self.prune_frac, "target_macs": self.target_macs,
                **self.start, "min_width_frac": MIN_WIDTH_FRAC,
                "target_met": event.get("target_met"), "target_note": event.get("target_note"),
                "macs_to_target": event.get("macs_to_target"),
                "pruned_at_step": event.get("step"), "pruned_at_fraction": event.get("fraction"),
                "macs_before_prune": event.get("old_macs"),
                "val_acc_after_prune": event.get("val_acc_after")}
