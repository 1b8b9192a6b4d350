"""``sss[:<seed>]``: Sparse Structure Selection (Huang & Wang, ECCV 2018) under the training-FLOP budget.

**Factors.** A scaling factor λ ≥ 0, initialised to 1, on every channel of every coupled channel group
and on every removable residual block (``r_{i+1} = r_i + λ_i F_i(r_i)``; the downsampling first block
of stages 2+ is not removable). They are applied by forward hooks: a group's channel factors multiply
the outputs of the group's BatchNorms (for a ResNet stage: the stem's or downsampling shortcut's BN
and every block's last BN, so the whole residual stream of the stage is scaled), a block's factor
multiplies its last BN's output (the residual branch). The factors live in this controller (and its
state_dict), not in the trainer's optimizer, and get no weight decay.

**Update** (accelerated proximal gradient, ``docs/algorithms.md`` §3), after every optimizer step,
with η the current learning rate, γ the sparsity weight (below), μ = 0.9::

    z = λ' − η ∇G(λ')
    s = S_{ηγ}(z) clamped ≥ 0           (= max(z − ηγ, 0): the prox of γ‖λ‖₁ on λ ≥ 0)
    v ← s − λ' + μ v
    λ' ← max(s + μ v, 0)

``∇G`` is the gradient of the training loss with respect to the factors (the loss has no penalty;
the L1 term acts only through the soft threshold), ``v`` starts at 0.

**Penalty strength** (``gamma="auto"``, the default): the paper's γ = 0.01, raised where the run is too
short for it to act. With zero loss gradient APG's velocity settles at ``−ηγ/(1 − μ)``, so a factor the
loss does not defend falls from 1 to 0 after ``Σ_t η_t ≈ (1 − μ)/γ``; the rule::

    γ = max(0.01, (1 − μ) / Σ_{t < prune point} η_t)

keeps the paper's strength whenever the pre-training is long enough for its undefended factors to
reach 0 (``Σ_t η_t >= 10``: 100 steps at lr 0.1), and otherwise the weakest γ that gets them there by
the prune point (at 0.14 epoch of pre-training no factor had reached 0). The value is in the
controller's state and in summary.json; a number is used as is.

**Prune** at the first evaluation with ``prune_frac`` (default 0.5) of the budget spent:

1. fold every factor into the BatchNorm it scales (γ ← λγ, β ← λβ; exact in train and eval mode) and
   remove the hooks, so the network computes the same function without them;
2. remove every block whose factor is 0 (exactly the identity: its input is post-ReLU), keeping at
   least one block per stage: the paper's structure selection on residual networks;
3. channels. A channel is *dead* when its factor is 0 and nothing live reaches it: for a stage of a
   ResNet with a parameter-free (zero-padding) downsampling shortcut, a channel the shortcut fills with
   a live channel of the previous stage still carries that channel (the shortcut has no parameters to
   fold a factor into, so it is not scaled). Without ``options.target_macs`` every dead channel goes,
   each group keeping at least its minimum width (topped up with its best factors). With a target the
   channels are pruned to it (see :mod:`baselines.pruning`: scores normalised per group kind, minimum
   widths, within 2%), dead channels first (their removal is exact), then the smallest factors: all
   factors start at 1 under one penalty, so within a kind they are the paper's comparable scores.
   Minimum widths are those of the network that was trained (before step 2).

Steps 1 and 2 and the removal of dead channels leave the function unchanged (``output_change`` ≈ 0 in
the event when nothing else goes). Then fine-tune for the rest of the budget. The run starts from the
seed (default ``resnet20``) or a scaled copy (:func:`baselines.pruning.choose_start`). Learning rate:
warm-up, constant until the prune point (the APG step size is the lr), cosine decay to 0 over the
fine-tuning. Settings in ``options.extra["sss"]``: ``prune_frac``, ``min_pretrain_epochs``, ``gamma``
(a number, or ``"auto"``), ``momentum``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from growth.config import ConfigError, TrainConfig
from growth.graph import channel_groups, groups_of_genotype
from growth.operators import remove_block
from search_spaces import Genotype, family_of, genotype_of

from .pruning import (
    SCHEDULE_OPTIONS,
    PruneOnceController,
    keep_at_least,
    method_options,
    min_width,
    pretrain_lr_sum,
    prune_to_keep,
    prune_to_macs,
    pruning_config,
    schedule_options,
)
from .registry import MethodOptions, register_method

if TYPE_CHECKING:
    from growth.trainer import Trainer

DEFAULT_SEED = "resnet20"
PAPER_GAMMA = 0.01   # Huang & Wang's sparsity weight


def _block_key(stage: int, block: int) -> str:
    return f"stage{stage + 1}.block{block + 1}"


class SSSController(PruneOnceController):
    """Channel and block scaling factors trained by APG with a soft threshold; zeros are removed."""

    method = "sss"

    def __init__(self, prune_frac: float = 0.5, target_macs: float | None = None, gamma: float | str = "auto",
                 momentum: float = 0.9, start: dict[str, Any] | None = None):
        super().__init__(prune_frac, target_macs, start=start)
        # γ: a number, or None until attach() applies the rule (``gamma="auto"``)
        self.gamma: float | None = None if gamma == "auto" else float(gamma)
        self.momentum = momentum
        # group name -> per-channel factors; "stageS.blockB" -> one-element block factor
        self.channel_factors: dict[str, torch.Tensor] = {}
        self.block_factors: dict[str, torch.Tensor] = {}
        self.velocity: dict[str, torch.Tensor] = {}   # APG's v, keyed like both of the above
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    # -- checkpointed state ---------------------------------------------------------------------------

    def extra_state(self) -> dict:
        def cpu(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().clone() for k, v in d.items()}

        return {"gamma": self.gamma, "momentum": self.momentum, "channel_factors": cpu(self.channel_factors),
                "block_factors": cpu(self.block_factors), "velocity": cpu(self.velocity)}

    def load_extra_state(self, state: dict) -> None:
        self.gamma, self.momentum = state["gamma"], state["momentum"]
        self.channel_factors = dict(state["channel_factors"])
        self.block_factors = dict(state["block_factors"])
        self.velocity = dict(state["velocity"])

    # -- hooks onto the model -------------------------------------------------------------------------

    def attach(self, trainer: Trainer) -> None:
        """Create (or take the checkpointed) factors and hook them in; after the prune, nothing."""
        super().attach(trainer)
        self._remove_hooks()
        if self.phase != "train":
            return
        if self.gamma is None:
            self.gamma = gamma_rule(self.momentum, pretrain_lr_sum(trainer, self.prune_frac))
        model, device = trainer.model, trainer.device
        family = family_of(model.genotype)
        if not self.channel_factors:
            self.channel_factors = {g.name: torch.ones(g.width) for g in channel_groups(model)}
            self.block_factors = {_block_key(s, b): torch.ones(1)
                                  for s, b in family.removable_blocks(model.genotype)}
            self.velocity = {k: torch.zeros_like(f) for k, f in self.factors().items()}
        for d in (self.channel_factors, self.block_factors, self.velocity):
            for k in d:
                d[k] = d[k].to(device=device, dtype=torch.float32)
        for f in self.factors().values():
            f.requires_grad_(True)
        modules = dict(model.named_modules())
        for group in channel_groups(model):
            for norm in group.norms:
                self._handles.append(modules[norm].register_forward_hook(
                    _scale_hook(self.channel_factors[group.name], channels=True)))
        for s, b in family.removable_blocks(model.genotype):
            self._handles.append(modules[family.branch_norm(s, b)].register_forward_hook(
                _scale_hook(self.block_factors[_block_key(s, b)], channels=False)))

    def factors(self) -> dict[str, torch.Tensor]:
        return {**self.channel_factors, **self.block_factors}

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- the APG step ---------------------------------------------------------------------------------

    @torch.no_grad()
    def after_step(self, trainer: Trainer) -> None:
        if self.phase != "train":
            return
        eta = trainer.optimizer.param_groups[0]["lr"]
        mu, gamma = self.momentum, self.gamma
        assert gamma is not None  # attach() applied the rule
        # All factors at once: foreach ops, a few kernels instead of six per factor tensor; per
        # tensor the same arithmetic, op for op (bit-identical), as the formulas in the module doc.
        factors = self.factors()
        keys = [k for k, f in factors.items() if f.grad is not None]
        if not keys:
            return
        fs = [factors[k] for k in keys]
        vs = [self.velocity[k] for k in keys]
        grads = [f.grad for f in fs if f.grad is not None]
        s = torch._foreach_sub(fs, list(torch._foreach_mul(grads, eta)))  # z = λ' − η∇G
        torch._foreach_sub_(s, eta * gamma)
        torch._foreach_clamp_min_(s, 0)        # soft threshold, projected on λ >= 0
        torch._foreach_mul_(vs, mu)
        torch._foreach_add_(vs, s)
        torch._foreach_sub_(vs, fs)            # v ← s − λ' + μv
        torch._foreach_add_(s, torch._foreach_mul(vs, mu))
        torch._foreach_clamp_min_(s, 0)
        torch._foreach_copy_(fs, s)            # λ' ← max(s + μv, 0)
        for f in fs:
            f.grad = None  # the factors are not in the trainer's optimizer: nobody else zeroes them

    # -- the prune ------------------------------------------------------------------------------------

    def prune(self, trainer: Trainer) -> dict:
        model, opt = trainer.model, trainer.optimizer
        genotype = genotype_of(model)
        groups = channel_groups(model)
        factors = {k: f.detach().cpu().clone() for k, f in self.channel_factors.items()}
        blocks = {k: float(f.detach()) for k, f in self.block_factors.items()}
        self._fold(model, genotype)  # 1.
        remove = _zero_blocks(genotype, blocks)
        for s, b in sorted(remove, reverse=True):  # 2., from the back, so earlier indices stay valid
            remove_block(model, s, b, opt)
        # 3. Everything per group, renamed to the pruned model's groups (block removal renumbers).
        rename = _renamed_groups(genotype, genotype_of(model), remove)
        dead = _dead_channels(genotype, factors)
        scores = {rename[k]: v for k, v in factors.items() if k in rename}
        first = {rename[k]: v for k, v in dead.items() if k in rename}
        minimum = {rename[g.name]: min_width(g.width) for g in groups if g.name in rename}
        detail: dict = {"gamma": self.gamma,
                        "zero_channels": {name: int((f == 0).sum()) for name, f in factors.items()},
                        "dead_channels": {name: int(d.sum()) for name, d in dead.items()},
                        "blocks_removed": [_block_key(s, b) for s, b in remove],
                        "zero_blocks": [k for k, f in blocks.items() if f == 0.0]}
        if self.target_macs is None:
            keep = {name: keep_at_least(~first[name], scores[name], minimum[name]) for name in scores}
            prune_to_keep(model, keep, opt)
        else:
            plan = prune_to_macs(model, scores, self.target_macs, trainer.input_shape, opt, min_widths=minimum,
                                 first=first)
            detail.update(plan.detail())
        detail["channels_removed"] = sum(g.width for g in groups if g.name in rename) - sum(
            g.width for g in channel_groups(model))
        return detail

    def _fold(self, model: nn.Module, genotype: Genotype) -> None:
        """Fold every factor into the BatchNorm it scales (λ·BN(x) = (λγ)·x̂ + λβ), remove the hooks and
        drop the factors: the network computes the same function without them."""
        modules = dict(model.named_modules())
        family = family_of(genotype)
        with torch.no_grad():
            for group in channel_groups(model):
                f = self.channel_factors[group.name].detach()
                for norm in group.norms:
                    modules[norm].weight.mul_(f.to(modules[norm].weight))
                    modules[norm].bias.mul_(f.to(modules[norm].bias))
            for s, b in family.removable_blocks(genotype):
                f = self.block_factors[_block_key(s, b)].detach()
                bn = modules[family.branch_norm(s, b)]
                bn.weight.mul_(f.to(bn.weight))
                bn.bias.mul_(f.to(bn.bias))
        self._remove_hooks()
        self.channel_factors, self.block_factors, self.velocity = {}, {}, {}

    def summary(self) -> dict:
        return {**super().summary(), "gamma": self.gamma, "momentum": self.momentum}


def gamma_rule(momentum: float, lr_sum: float) -> float:
    """The paper's γ, or the weakest that zeroes an undefended factor by the prune point (module docstring)."""
    return max(PAPER_GAMMA, (1 - momentum) / lr_sum)


def _zero_blocks(genotype: Genotype, blocks: dict[str, float]) -> list[tuple[int, int]]:
    """``(stage, block)`` of every removable block whose factor is 0, keeping at least one block per stage."""
    family = family_of(genotype)
    zero_by_stage: dict[int, list[int]] = {}
    for s, b in family.removable_blocks(genotype):
        if blocks.get(_block_key(s, b), 1.0) == 0.0:
            zero_by_stage.setdefault(s, []).append(b)
    remove: list[tuple[int, int]] = []
    for s, zero in zero_by_stage.items():
        if len(zero) == family.stage_depth(genotype, s):
            zero = zero[1:]
        remove += [(s, b) for b in zero]
    return remove


def _dead_channels(genotype: Genotype, factors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per group, the channels with a zero factor into which no zero-padding shortcut routes a live channel."""
    family = family_of(genotype)
    dead: dict[str, torch.Tensor] = {}
    for group in groups_of_genotype(genotype):  # network order: a route's source group comes first
        d = factors[group.name] == 0
        for source, k, j in family.routes_into(genotype, group.key):
            if not dead[family.group_name(source)][k]:
                d[j] = False
        dead[group.name] = d
    return dead


def _scale_hook(factor: torch.Tensor, channels: bool) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]:
    shape = (1, -1, 1, 1) if channels else (1, 1, 1, 1)

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * factor.to(output.dtype).view(shape)

    return hook


def _renamed_groups(old_genotype: Genotype, new_genotype: Genotype,
                    removed: list[tuple[int, int]]) -> dict[str, str]:
    """Old group name -> its name after the blocks ``removed`` are gone (removing a block renumbers the
    inner groups of the later blocks of its stage; a removed block's inner group has no entry)."""
    family = family_of(new_genotype)
    renamed = {}
    for group in groups_of_genotype(old_genotype):
        key = group.key
        if key[0] == "inner":
            s, b = key[1], key[2]
            if (s, b) in removed:
                continue
            key = ("inner", s, b - sum(1 for rs, rb in removed if rs == s and rb < b))
        renamed[group.name] = family.group_name(key)
    new_names = {g.name for g in groups_of_genotype(new_genotype)}
    assert set(renamed.values()) == new_names, (sorted(renamed.values()), sorted(new_names))
    return renamed


@register_method("sss")
def sss(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[TrainConfig, SSSController]:
    opts = method_options(options.extra, "sss", (*SCHEDULE_OPTIONS, "gamma", "momentum"))
    prune_frac, min_epochs = schedule_options(opts)
    gamma, momentum = opts.get("gamma", "auto"), float(opts.get("momentum", 0.9))
    if not (gamma == "auto" or float(gamma) >= 0) or not 0 <= momentum < 1:
        raise ConfigError(f"sss needs gamma >= 0 (or auto) and momentum in [0, 1), got {gamma}, {momentum}")
    config, start = pruning_config(base, options, seed=seed or DEFAULT_SEED, optimizer="sgd", prune_frac=prune_frac,
                                   min_pretrain_epochs=min_epochs)
    return config, SSSController(prune_frac, options.target_macs, gamma if gamma == "auto" else float(gamma),
                                 momentum, start.summary())
