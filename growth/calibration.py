"""Per-layer λ for DessiLBI: when a filter of typical size enters supp Γ, layer by layer.

A group (one output filter) enters supp Γ once ‖V_g‖ > λ, and while Γ_g = 0,
V_g = Σ_t (α_t/ν) W_g,t, discounted by the coupling's pull (1 − α_t κ/ν per step). A single global
λ therefore lets layers with large filters (large fan-in at the same init gain, or a different
init) enter first, whatever the data need. Calibrating one λ per conv layer from that layer's own
median initial filter norm removes this bias: a filter that keeps its layer's median initial norm
enters after exactly ``horizon`` of the budget, in every layer; filters the loss makes larger enter
sooner, filters it lets shrink enter later or never::

    λ_layer = lam_scale · median_g ‖W_g,0‖ · D / ν,   D = Σ_{t < horizon} α_t Π_{s<t} (1 − α_s κ/ν)

Used by the growth controller (horizon = one check interval) and by DessiLBI pruning (horizon = the
pruning point).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from growth.dessilbi import DessiLBI, dessilbi_param_groups
    >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    >>> opt = DessiLBI(dessilbi_param_groups(m), lr=0.1)
    >>> split_lam_groups(opt, {"0": m[0].weight, "1": m[1].weight}, {"0": 0.5, "1": 2.0})
    >>> [g["lam"] for g in opt.param_groups if g["penalty"] == "group"]
    [0.5, 2.0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .dessilbi import as_dessilbi

if TYPE_CHECKING:
    from .trainer import Trainer


def penalised_convs(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Conv name -> its weight, for every weight DessiLBI penalises (group penalty)."""
    weights = {id(p) for p in as_dessilbi(trainer.optimizer).penalised_params()}
    return {name: m.weight for name, m in trainer.model.named_modules()
            if isinstance(m, torch.nn.Conv2d) and id(m.weight) in weights}


def discounted_lr_sum(trainer: Trainer, horizon_frac: float) -> float:
    """D: the learning rates of the steps in the first ``horizon_frac`` of the budget, summed and
    discounted by the coupling's decay (at the seed's cost per step)."""
    from .schedule import lr_at, steps_in

    cfg = trainer.config
    steps = steps_in(cfg, horizon_frac, trainer.cost.train_flops_per_sample, len(trainer.data.train_y))
    discounted, decay = 0.0, 1.0
    for i in range(steps):
        alpha = lr_at(cfg, horizon_frac * i / steps)
        discounted += alpha * decay
        decay *= max(0.0, 1 - alpha * cfg.kappa / cfg.nu)
        if decay < 1e-16:  # what the remaining steps add is below float precision: a long horizon (2e17's
            break          # 10M steps) costs ~0.5M iterations, under a second
    return discounted


def calibrate_lam(trainer: Trainer, horizon_frac: float, lam_scale: float = 1.0) -> dict[str, float]:
    """λ per penalised conv layer: ``lam_scale · median‖W_g,0‖ · D / ν`` (see the module docstring)."""
    discounted = discounted_lr_sum(trainer, horizon_frac)
    return {name: lam_scale * float(w.detach().flatten(1).norm(dim=1).median()) * discounted / trainer.config.nu
            for name, w in penalised_convs(trainer).items()}


def split_lam_groups(opt: torch.optim.Optimizer, convs: dict[str, torch.Tensor],
                     lam: dict[str, float]) -> None:
    """One DessiLBI param group per penalised conv, carrying that layer's λ.

    Checkpoints keep the groups (``Trainer.save_checkpoint`` records each group's parameter names and
    the optimizer's state_dict their hyperparameters), so a resumed run has the same λ per layer.
    """
    name_of = {id(w): name for name, w in convs.items()}
    groups: list[dict[str, Any]] = []
    for group in opt.param_groups:
        if group["penalty"] is None:
            groups.append(group)
            continue
        for p in group["params"]:
            groups.append({**group, "params": [p], "lam": lam[name_of[id(p)]]})
    opt.param_groups[:] = groups
