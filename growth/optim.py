"""The run's optimizer, built from its config (the trainer builds it at the start and again on resume)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import TrainConfig


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The run's optimizer: DessiLBI (``config.optimizer == "dessilbi"``) or SGD, no weight decay on
    BatchNorm and biases."""
    if config.optimizer == "dessilbi":
        from .dessilbi import DessiLBI, dessilbi_param_groups

        # lam="auto" (growth runs): a placeholder until the controller calibrates it before step 1.
        lam = 1.0 if config.lam == "auto" else float(config.lam)
        groups: list[dict[str, Any]] = []
        for group in dessilbi_param_groups(model):
            if group["penalty"] is not None:
                groups.append(group)
                continue
            # As for SGD below: no weight decay on BatchNorm and biases.
            decay = [p for p in group["params"] if p.dim() > 1]
            no_decay = [p for p in group["params"] if p.dim() <= 1]
            groups += [g for g in ({"params": decay, "penalty": None},
                                   {"params": no_decay, "penalty": None, "weight_decay": 0.0}) if g["params"]]
        return DessiLBI(groups, lr=config.lr, kappa=config.kappa, nu=config.nu, lam=lam,
                        momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.nesterov)
    # No weight decay on BatchNorm and biases, as usual for CIFAR ResNets.
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    sgd_groups: list[dict[str, Any]] = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(sgd_groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                           weight_decay=config.weight_decay)
