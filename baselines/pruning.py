"""Shared machinery of the pruning baselines: channel scores per coupled group, global pruning to a
MACs target, and a controller that prunes once at a share of the budget and then fine-tunes.

Pruning always goes through :func:`growth.operators.prune`, one coupled channel group at a time, so a
ResNet stage (stem or downsampling shortcut, every block's last conv, the residual additions) loses
the same channels everywhere and the zero-padding shortcut's routing stays exact; the optimizer's
per-parameter state is cut alongside.

**Scores.** Methods score each *producer* conv's filters (e.g. ``|γ|`` of the BatchNorm after it);
:func:`group_scores` turns them into one score per channel of each group (a stage group has one
producer per block plus the stem or shortcut) by a mean, sum or max over the group's producers.

**Global rule** (:func:`plan_prune_to_macs`). Every channel of every group is ranked by its score
(scores must be comparable across groups; ties go in network order, then channel index) and the
``k`` lowest are removed, ``k`` being the smallest count whose architecture has MACs <= target. MACs
fall strictly with ``k`` (each removal shrinks some conv), so ``k`` is found by binary search; this is
one global threshold (the ``k``-th lowest score) with ties broken deterministically, and the result
is within one channel of the target. Each group's highest-scored channel is never a candidate, so
every group keeps at least one channel.

**Schedule** (:class:`PruneOnceController`). Train the full network; at the first evaluation with
``ledger.fraction_spent >= prune_frac`` call the method's ``prune``, log one ``"prune"`` event to
``growth.jsonl`` (as a growth run logs its events), and fine-tune for the rest of the budget.

Example:
    >>> import search_spaces, torch
    >>> model = search_spaces.create_model("resnet20-thin")
    >>> scores = group_scores(model, bn_scale_scores(model))
    >>> full = measure_cost(model, (3, 32, 32)).macs
    >>> plan = prune_to_macs(model, scores, full / 2, (3, 32, 32))
    >>> plan.macs <= full / 2, model.genotype.compact() == search_spaces.extract_genotype(model).compact()
    (True, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from growth.compute import measure_cost
from growth.config import ConfigError, TrainConfig
from growth.graph import channel_groups, find_group, groups_of_genotype
from growth.operators import prune, resized_genotype
from growth.trainer import Controller
from search_spaces import genotype_of

if TYPE_CHECKING:
    from growth.trainer import Trainer
    from search_spaces import Genotype

# -- scores -------------------------------------------------------------------------------------------


def bn_scale_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """``|γ|`` of the BatchNorm after each producer conv, keyed by the conv's module name."""
    modules = dict(model.named_modules())
    return {conv: modules[norm].weight.detach().abs().float().cpu()
            for group in channel_groups(model) for conv, norm in zip(group.producers, group.norms)}


def group_scores(model: nn.Module, producer_scores: Mapping[str, torch.Tensor],
                 reduce: str = "mean") -> dict[str, torch.Tensor]:
    """One score per channel of every coupled group, from per-producer filter scores.

    ``reduce``: ``"mean"`` (keeps a many-producer stage group on the scale of a one-producer group,
    so one global threshold treats both alike), ``"sum"`` or ``"max"`` (a channel is as important as
    its most important producer filter).
    """
    ops: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "mean": lambda s: s.mean(0), "sum": lambda s: s.sum(0), "max": lambda s: s.amax(0)}
    if reduce not in ops:
        raise ValueError(f"reduce must be mean, sum or max, got {reduce!r}")
    out = {}
    for group in channel_groups(model):
        stacked = torch.stack([producer_scores[p].detach().float().cpu() for p in group.producers])
        out[group.name] = ops[reduce](stacked)
    return out


# -- pruning ------------------------------------------------------------------------------------------


@dataclass
class PrunePlan:
    """What :func:`plan_prune_to_macs` decided."""

    keep: dict[str, torch.Tensor]   # group name -> kept channel indices (ascending); shrinking groups only
    macs: int                       # MACs of the pruned architecture
    pruned: int                     # channels removed, over all groups
    threshold: float | None         # score of the last channel removed (None: nothing removed)
    reached: bool                   # macs <= target (False: even one channel per group is too big)


def plan_prune_to_macs(genotype: Genotype, scores: Mapping[str, torch.Tensor], target_macs: float,
                       input_shape: tuple[int, int, int]) -> PrunePlan:
    """The global pruning (see the module docstring) of ``genotype`` to ``target_macs``; edits nothing."""
    groups = groups_of_genotype(genotype)
    candidates: list[tuple[float, int, int]] = []  # (score, group index, channel), in removal order
    for gi, group in enumerate(groups):
        s = scores[group.name].detach().float().cpu()
        if s.shape != (group.width,):
            raise ValueError(f"{group.name}: {tuple(s.shape)} scores for {group.width} channels")
        ranked = sorted(range(group.width), key=lambda c: (float(s[c]), c))
        candidates += [(float(s[c]), gi, c) for c in ranked[:-1]]  # the best channel always stays
    candidates.sort()

    def after(k: int) -> tuple[Genotype, dict[str, torch.Tensor]]:
        gone: dict[int, set[int]] = {}
        for _, gi, c in candidates[:k]:
            gone.setdefault(gi, set()).add(c)
        g, keep = genotype, {}
        for gi, channels in sorted(gone.items()):
            group = groups[gi]
            kept = torch.tensor([c for c in range(group.width) if c not in channels], dtype=torch.long)
            keep[group.name] = kept
            g = resized_genotype(g, group, kept, 0)  # each group once, by its original indices
        return g, keep

    def macs(k: int) -> int:
        return measure_cost(after(k)[0], input_shape).macs

    full = macs(0)
    if full <= target_macs:
        return PrunePlan({}, full, 0, None, True)
    lo, hi = 0, len(candidates)  # invariant: macs(lo) > target; macs(hi) <= target unless hi is the end
    smallest = macs(hi)
    if smallest > target_macs:
        return PrunePlan(after(hi)[1], smallest, hi, candidates[hi - 1][0] if hi else None, False)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if macs(mid) <= target_macs:
            hi = mid
        else:
            lo = mid
    return PrunePlan(after(hi)[1], macs(hi), hi, candidates[hi - 1][0], True)


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
                  input_shape: tuple[int, int, int],
                  optimizer: torch.optim.Optimizer | None = None) -> PrunePlan:
    """Prune ``model`` in place by :func:`plan_prune_to_macs`; returns the plan."""
    plan = plan_prune_to_macs(genotype_of(model), scores, target_macs, input_shape)
    prune_to_keep(model, plan.keep, optimizer)
    return plan


# -- configuration ------------------------------------------------------------------------------------


def check_prunable_seed(seed: str) -> None:
    """Raise :class:`ConfigError` for a seed whose family has no channel groups (timm references)."""
    from search_spaces import FamilyError, family_of, get_genotype

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


def pruning_config(base: TrainConfig, *, seed: str, optimizer: str, prune_frac: float,
                   **changes: Any) -> TrainConfig:
    """``base`` for a prune-once method: warm-up, constant lr until ``prune_frac``, cosine decay to 0
    over the fine-tuning; an evaluation exactly at ``prune_frac``."""
    if not 0 < prune_frac < 1:
        raise ConfigError(f"prune_frac must be in (0, 1), got {prune_frac}")
    check_prunable_seed(seed)
    return dataclasses.replace(
        base, seed=seed, genotype=None, optimizer=optimizer, schedule="cosine",
        decay_start_frac=prune_frac, eval_every_frac=eval_every_dividing(prune_frac, base.eval_every_frac),
        **changes)


def method_options(extra: Mapping[str, Any], method: str, known: tuple[str, ...]) -> dict[str, Any]:
    """``extra[method]``: a method's own settings; unknown keys are an error, not silently ignored."""
    opts = dict(extra.get(method, {}))
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise ConfigError(f"unknown {method} option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return opts


# -- the prune-once controller ------------------------------------------------------------------------


class PruneOnceController(Controller):
    """Train, prune once at the first evaluation with ``prune_frac`` of the budget spent, fine-tune.

    Subclasses implement :meth:`prune` (edit ``trainer.model`` through the operators, passing
    ``trainer.optimizer``; return extra fields for the event) and may keep state through
    :meth:`extra_state` / :meth:`load_extra_state`. ``phase`` is ``"train"`` then ``"finetune"``.
    ``default_target_ratio``: when no MACs target is given, the target is this share of the full
    network's MACs (fixed when training starts); ``None``: the method needs no target.
    """

    method = "prune"

    def __init__(self, prune_frac: float = 0.5, target_macs: float | None = None,
                 default_target_ratio: float | None = None) -> None:
        self.prune_frac = prune_frac
        self.target_macs = target_macs
        self.default_target_ratio = default_target_ratio
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
                "full_macs": self.full_macs, "event": self.event, **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase, self.prune_frac = state["phase"], state["prune_frac"]
        self.target_macs, self.full_macs, self.event = state["target_macs"], state["full_macs"], state["event"]
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
                "pruned_at_step": event.get("step"), "pruned_at_fraction": event.get("fraction"),
                "macs_before_prune": event.get("old_macs"),
                "val_acc_after_prune": event.get("val_acc_after")}
