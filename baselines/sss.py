"""``sss[:<seed>]``: Sparse Structure Selection (Huang & Wang, ECCV 2018) under the training-FLOP budget.

**Factors.** A scaling factor λ ≥ 0, initialised to 1, on every channel of every coupled channel group
and on every removable residual block (``r_{i+1} = r_i + λ_i F_i(r_i)``; the downsampling first block
of stages 2+ is not removable). They are applied by forward hooks: a group's channel factors multiply
the outputs of the group's BatchNorms (for a ResNet stage: the stem's or downsampling shortcut's BN
and every block's last BN, so the whole residual stream of the stage is scaled), a block's factor
multiplies its last BN's output (the residual branch). The factors live in this controller (and its
state_dict), not in the trainer's optimizer, and get no weight decay.

**Update** (accelerated proximal gradient, ``docs/algorithms.md`` §3), after every optimizer step,
with η the current learning rate, γ the sparsity weight (default 0.01), μ = 0.9::

    z = λ' − η ∇G(λ')
    s = S_{ηγ}(z) clamped ≥ 0           (= max(z − ηγ, 0): the prox of γ‖λ‖₁ on λ ≥ 0)
    v ← s − λ' + μ v
    λ' ← max(s + μ v, 0)

``∇G`` is the gradient of the training loss with respect to the factors (the loss has no penalty;
the L1 term acts only through the soft threshold), ``v`` starts at 0.

**Prune** at the first evaluation with ``prune_frac`` (default 0.5) of the budget spent:

1. fold every factor into the BatchNorm it scales (γ ← λγ, β ← λβ; exact in train and eval mode) and
   remove the hooks, so the network computes the same function without them;
2. remove every channel whose factor is 0 and that is dead: for a stage of a ResNet with a
   parameter-free (zero-padding) downsampling shortcut, a channel the shortcut fills with a live
   channel of the previous stage still carries that channel, so it is removed only when its source
   was removed too (the shortcut itself has no parameters to fold a factor into, so it is not scaled).
   Each group keeps at least one channel;
3. remove every block whose factor is 0 (exactly the identity: its input is post-ReLU), keeping at
   least one block per stage. Steps 2 and 3 leave the function unchanged (``output_change`` ≈ 0 in
   the event);
4. only with ``options.target_macs``, and only if the network is still above it: prune the channels
   with the smallest factors globally down to the target (see :mod:`baselines.pruning`; factors are
   comparable across groups: all start at 1 under the same penalty). This step changes the function.

Then fine-tune for the rest of the budget. Learning rate: warm-up, constant until the prune point
(the APG step size is the lr), cosine decay to 0 over the fine-tuning. Settings in
``options.extra["sss"]``: ``prune_frac``, ``gamma``, ``momentum``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from growth.config import ConfigError, TrainConfig
from growth.graph import channel_groups, groups_of_genotype
from growth.operators import remove_block
from search_spaces import Genotype, family_of, genotype_of

from .pruning import PruneOnceController, method_options, prune_to_keep, prune_to_macs, pruning_config
from .registry import MethodOptions, register_method

if TYPE_CHECKING:
    from growth.trainer import Trainer

DEFAULT_SEED = "resnet20"


def _block_key(stage: int, block: int) -> str:
    return f"stage{stage + 1}.block{block + 1}"


class SSSController(PruneOnceController):
    """Channel and block scaling factors trained by APG with a soft threshold; zeros are removed."""

    method = "sss"

    def __init__(self, prune_frac: float = 0.5, target_macs: float | None = None, gamma: float = 0.01,
                 momentum: float = 0.9):
        super().__init__(prune_frac, target_macs)
        self.gamma, self.momentum = gamma, momentum
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
        mu = self.momentum
        for key, f in self.factors().items():
            if f.grad is None:
                continue
            v = self.velocity[key]
            z = f - eta * f.grad
            s = (z - eta * self.gamma).clamp_min_(0)   # soft threshold, projected on λ >= 0
            v.mul_(mu).add_(s).sub_(f)
            f.copy_((s + mu * v).clamp_min_(0))
            f.grad = None  # the factors are not in the trainer's optimizer: nobody else zeroes them

    # -- the prune ------------------------------------------------------------------------------------

    def prune(self, trainer: Trainer) -> dict:
        model, opt = trainer.model, trainer.optimizer
        modules = dict(model.named_modules())
        genotype = genotype_of(model)
        family = family_of(genotype)
        groups = channel_groups(model)
        factors = {k: f.detach().cpu().clone() for k, f in self.channel_factors.items()}
        blocks = {k: float(f.detach()) for k, f in self.block_factors.items()}
        with torch.no_grad():  # 1. fold: λ·BN(x) = (λγ)·x̂ + λβ
            for group in groups:
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

        # 3 (decided first). Blocks to remove: zero factor, at least one block left per stage.
        zero_by_stage: dict[int, list[int]] = {}
        for s, b in family.removable_blocks(genotype):
            if blocks.get(_block_key(s, b), 1.0) == 0.0:
                zero_by_stage.setdefault(s, []).append(b)
        remove: list[tuple[int, int]] = []
        for s, zero in zero_by_stage.items():
            if len(zero) == family.stage_depth(genotype, s):
                zero = zero[1:]
            remove += [(s, b) for b in zero]
        gone_inner = {f"{_block_key(s, b)}.inner" for s, b in remove}

        # 2. Dead channels (zero factor, and nothing live routed in by a zero-padding shortcut).
        dead: dict[str, torch.Tensor] = {}
        for group in groups:
            d = factors[group.name] == 0
            for source, k, j in family.routes_into(genotype, group.key):
                if not dead[family.group_name(source)][k]:
                    d[j] = False
            dead[group.name] = d
        keep = {}
        for group in groups:
            if group.name in gone_inner:
                continue
            kept = (~dead[group.name]).nonzero().flatten()
            keep[group.name] = kept if kept.numel() else factors[group.name].argmax().view(1)
        prune_to_keep(model, keep, opt)
        for s, b in sorted(remove, reverse=True):  # from the back, so earlier indices stay valid
            remove_block(model, s, b, opt)
        detail = {"gamma": self.gamma,
                  "zero_channels": {name: int((f == 0).sum()) for name, f in factors.items()},
                  "channels_removed": sum(g.width - keep[g.name].numel() for g in groups if g.name in keep),
                  "blocks_removed": [_block_key(s, b) for s, b in remove],
                  "zero_blocks": [k for k, f in blocks.items() if f == 0.0]}

        # 4. A MACs target still above: the smallest remaining factors go, globally.
        if self.target_macs is not None and trainer.cost.macs > self.target_macs:
            scores = _remaining_scores(genotype, genotype_of(model), factors, keep, remove)
            plan = prune_to_macs(model, scores, self.target_macs, trainer.input_shape, opt)
            detail.update(threshold=plan.threshold, channels_pruned_to_target=plan.pruned,
                          target_reached=plan.reached)
        return detail

    def summary(self) -> dict:
        return {**super().summary(), "gamma": self.gamma, "momentum": self.momentum}


def _scale_hook(factor: torch.Tensor, channels: bool) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]:
    shape = (1, -1, 1, 1) if channels else (1, 1, 1, 1)

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * factor.to(output.dtype).view(shape)

    return hook


def _remaining_scores(old_genotype: Genotype, new_genotype: Genotype, factors: dict[str, torch.Tensor],
                      keep: dict[str, torch.Tensor], removed: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """The factors of the surviving channels, keyed by the pruned model's group names (block
    removal renumbers the inner groups of later blocks)."""
    by_key = {}
    for group in groups_of_genotype(old_genotype):
        if group.name not in keep:
            continue  # a removed block's inner group
        key = group.key
        if key[0] == "inner":
            s, b = key[1], key[2]
            key = ("inner", s, b - sum(1 for rs, rb in removed if rs == s and rb < b))
        by_key[key] = factors[group.name][keep[group.name].cpu()]
    return {group.name: by_key[group.key] for group in groups_of_genotype(new_genotype)}


@register_method("sss")
def sss(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[TrainConfig, SSSController]:
    opts = method_options(options.extra, "sss", ("prune_frac", "gamma", "momentum"))
    prune_frac = float(opts.get("prune_frac", 0.5))
    gamma, momentum = float(opts.get("gamma", 0.01)), float(opts.get("momentum", 0.9))
    if not gamma >= 0 or not 0 <= momentum < 1:
        raise ConfigError(f"sss needs gamma >= 0 and momentum in [0, 1), got {gamma}, {momentum}")
    config = pruning_config(base, seed=seed or DEFAULT_SEED, optimizer="sgd", prune_frac=prune_frac)
    return config, SSSController(prune_frac, options.target_macs, gamma, momentum)
