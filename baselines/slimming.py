"""``slimming[:<seed>]``: Network Slimming (Liu et al., ICCV 2017) under the training-FLOP budget.

1. Train the full network (default seed ``resnet20``) with SGD plus an L1 penalty ``l1·Σ|γ|`` on every
   BatchNorm scale, applied as the subgradient ``l1·sign(γ)`` added to γ's gradient after each
   backward pass. ``l1`` = 1e-4 for VGG, 1e-5 for ResNets (the paper's values).
2. At the first evaluation with ``prune_frac`` (default 0.5) of the budget spent, prune channels
   globally by ``|γ|`` down to the MACs target (``options.target_macs``; default half the full
   network's MACs): a coupled group's channel score is the mean of ``|γ|`` over the group's norms
   (for VGG exactly the paper's per-channel ``|γ|``), one threshold over all groups, each group keeps
   at least one channel (see :mod:`baselines.pruning`).
3. Fine-tune the pruned network (no penalty) for the rest of the budget.

Learning rate: the config's warm-up, then constant until the prune point, then cosine decay to 0 over
the fine-tuning. Settings in ``options.extra["slimming"]``: ``prune_frac``, ``l1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from growth.config import TrainConfig
from search_spaces import genotype_of

from .pruning import PruneOnceController, bn_scale_scores, group_scores, method_options, prune_to_macs, pruning_config
from .registry import MethodOptions, register_method

if TYPE_CHECKING:
    from growth.trainer import Trainer

DEFAULT_SEED = "resnet20"
# The paper's L1 strengths: 1e-4 by default (VGG), 1e-5 for ResNets; a new family gets the default.
L1 = {"resnet": 1e-5}
L1_DEFAULT = 1e-4


class SlimmingController(PruneOnceController):
    """L1 on BatchNorm scales until the prune point, then a global ``|γ|`` prune to the MACs target."""

    method = "slimming"

    def __init__(self, prune_frac: float = 0.5, target_macs: float | None = None,
                 l1: float | None = None) -> None:
        super().__init__(prune_frac, target_macs, default_target_ratio=0.5)
        self.l1 = l1
        self._scales: list[torch.Tensor] = []

    def extra_state(self) -> dict[str, Any]:
        return {"l1": self.l1}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.l1 = state["l1"]

    def attach(self, trainer: Trainer) -> None:
        super().attach(trainer)
        if self.l1 is None:
            self.l1 = L1.get(genotype_of(trainer.model).family, L1_DEFAULT)
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
        scores = group_scores(trainer.model, bn_scale_scores(trainer.model), reduce="mean")
        plan = prune_to_macs(trainer.model, scores, self.target_macs, trainer.input_shape, trainer.optimizer)
        self._scales = []
        return {"l1": self.l1, "threshold": plan.threshold, "channels_pruned": plan.pruned,
                "target_reached": plan.reached}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "l1": self.l1}


@register_method("slimming")
def slimming(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[TrainConfig, SlimmingController]:
    opts = method_options(options.extra, "slimming", ("prune_frac", "l1"))
    prune_frac = float(opts.get("prune_frac", 0.5))
    config = pruning_config(base, seed=seed or DEFAULT_SEED, optimizer="sgd", prune_frac=prune_frac)
    return config, SlimmingController(prune_frac, options.target_macs, opts.get("l1"))
