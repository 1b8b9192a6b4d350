"""``slimming[:<seed>]``: Network Slimming (Liu et al., ICCV 2017) under the training-FLOP budget.

1. Train the start (the seed, default ``resnet20``, or a uniformly scaled copy when the budget cannot
   pre-train the seed: :func:`baselines.pruning.choose_start`) with SGD plus an L1 penalty ``l1·Σ|γ|``
   on every BatchNorm scale, applied as the subgradient ``l1·sign(γ)`` added to γ's gradient after each
   backward pass.
2. At the first evaluation with ``prune_frac`` (default 0.5, the paper's equal split of sparsity
   training and fine-tuning) of the budget spent, prune channels by ``|γ|`` to the MACs target
   (``options.target_macs``; default half the start's MACs): a coupled group's channel score is the
   mean of ``|γ|`` over the group's BatchNorms (for VGG exactly the paper's per-channel ``|γ|``), the
   paper's one global threshold within each group kind (scores normalised per kind: a ResNet's residual
   stream, which the paper never prunes, against itself), every group kept at its minimum width, the
   result within 2% of the target (see :mod:`baselines.pruning`).
3. Fine-tune the pruned network (no penalty) for the rest of the budget.

**Penalty strength** (``l1``, unless given): the paper's ``l1`` (1e-4 VGG, 1e-5 ResNet) was applied
over 160 CIFAR epochs of batch 64 with lr 0.1, /10 at 50% and 75%: ``Σ_t η_t`` = 782 · (80·0.1 +
40·0.01 + 40·0.001) ≈ 6600. The rule keeps the paper's integrated L1 pull ``l1 · Σ_t η_t`` (how far the
penalty alone moves a γ: 0.066 for a ResNet) over this run's pre-training::

    l1 = l1_paper · 6600 / Σ_{t < prune point} η_t

so a short run shrinks the scales the loss does not defend as far as the paper's did, instead of not at
all (1e-5 over 49 steps moved γ by 5e-5). The value is in the controller's state and in summary.json.

Learning rate: the config's warm-up, then constant until the prune point, then cosine decay to 0 over
the fine-tuning. Settings in ``options.extra["slimming"]``: ``prune_frac``, ``min_pretrain_epochs``,
``l1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from growth.config import ConfigError, TrainConfig
from search_spaces import genotype_of

from .pruning import (
    SCHEDULE_OPTIONS,
    PruneOnceController,
    bn_scale_scores,
    group_scores,
    method_options,
    pretrain_lr_sum,
    prune_to_macs,
    pruning_config,
    schedule_options,
)
from .registry import MethodOptions, register_method

if TYPE_CHECKING:
    from growth.trainer import Trainer

DEFAULT_SEED = "resnet20"
# The paper's L1 strengths: 1e-4 by default (VGG), 1e-5 for ResNets; a new family gets the default.
L1 = {"resnet": 1e-5}
L1_DEFAULT = 1e-4
# Σ_t η_t of the paper's CIFAR training: 160 epochs of 782 batches, lr 0.1, 0.01 from 50%, 0.001 from 75%.
PAPER_LR_SUM = 782 * (80 * 0.1 + 40 * 0.01 + 40 * 0.001)


def l1_rule(family: str, lr_sum: float) -> float:
    """The paper's L1 strength for ``family``, scaled to keep its integrated pull over ``lr_sum``."""
    return L1.get(family, L1_DEFAULT) * PAPER_LR_SUM / lr_sum


class SlimmingController(PruneOnceController):
    """L1 on BatchNorm scales until the prune point, then a global ``|γ|`` prune to the MACs target."""

    method = "slimming"

    def __init__(self, prune_frac: float = 0.5, target_macs: float | None = None,
                 l1: float | None = None, start: dict[str, Any] | None = None) -> None:
        super().__init__(prune_frac, target_macs, default_target_ratio=0.5, start=start)
        self.l1 = l1
        self._scales: list[torch.Tensor] = []

    def extra_state(self) -> dict[str, Any]:
        return {"l1": self.l1}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.l1 = state["l1"]

    def attach(self, trainer: Trainer) -> None:
        super().attach(trainer)
        if self.l1 is None:
            self.l1 = l1_rule(genotype_of(trainer.model).family, pretrain_lr_sum(trainer, self.prune_frac))
        # Structure is fixed until the prune point, and the penalty stops there.
        self._scales = [m.weight for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d)]

    @torch.no_grad()
    def after_backward(self, trainer: Trainer) -> None:
        if self.phase != "train":
            return
        for scale in self._scales:
            if scale.grad is not None:
                scale.grad.add_(scale.detach().sign(), alpha=self.l1)  # d/dγ of l1·|γ| (0 at γ = 0)

    def prune(self, trainer: Trainer) -> dict[str, Any]:
        assert self.target_macs is not None  # attach() set it (default_target_ratio)
        scores = group_scores(trainer.model, bn_scale_scores(trainer.model))
        plan = prune_to_macs(trainer.model, scores, self.target_macs, trainer.input_shape, trainer.optimizer)
        self._scales = []
        return {"l1": self.l1, **plan.detail()}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "l1": self.l1}


@register_method("slimming")
def slimming(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[TrainConfig, SlimmingController]:
    opts = method_options(options.extra, "slimming", (*SCHEDULE_OPTIONS, "l1"))
    prune_frac, min_epochs = schedule_options(opts)
    l1 = opts.get("l1")
    if l1 is not None and not float(l1) >= 0:
        raise ConfigError(f"slimming l1 must be >= 0, got {l1}")
    config, start = pruning_config(base, options, seed=seed or DEFAULT_SEED, optimizer="sgd", prune_frac=prune_frac,
                                   min_pretrain_epochs=min_epochs)
    return config, SlimmingController(prune_frac, options.target_macs, None if l1 is None else float(l1),
                                      start.summary())
