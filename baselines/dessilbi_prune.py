"""``dessilbi-prune[:<seed>]``: train a dense network with DessiLBI, keep supp(Γ), fine-tune.

1. Train the start (the seed, default ``resnet20``, or a uniformly scaled copy when the budget cannot
   pre-train the seed: :func:`baselines.pruning.choose_start`) with DessiLBI (group penalty on every
   conv's filters; see :mod:`growth.dessilbi`). ν and κ come from the base config (reference ν = 100,
   κ = 1).
2. At the first evaluation with ``prune_frac`` (default 0.5) of the budget spent:

   * no MACs target (default): keep exactly the filters in supp(Γ); a channel of a coupled group is
     kept when any of the group's producer filters is in the support. A group whose support is
     narrower than its minimum width (:func:`baselines.pruning.min_width`) is topped up with its
     best-ranked other channels (ranking below) and listed in the event's ``topped_up_groups``.
   * with ``options.target_macs``: rank channels by when they entered supp(Γ), earlier = more
     important, and prune to the target (see :mod:`baselines.pruning`: scores normalised per group
     kind, minimum widths, within 2%). A producer filter's score is ``1 + (t − entry)/t`` at step ``t``
     if it ever entered, else ``min(‖V_g‖/λ, 1)`` (never entered: last, closest to entering first); a
     channel of a coupled group takes the mean of its producers' scores (a residual-stream channel is
     as established as it is across the stream; a max over its producers would rank the stream above
     every inner conv).

3. Fine-tune with the penalties switched off: every param group's ``penalty`` is set to ``None``, so
   DessiLBI is plain momentum SGD (W ← W − ακ·m); V, Γ and entry steps are dropped. This lives in the
   optimizer's param groups, hence in its state_dict and in every later checkpoint.

**λ calibration** (``lam="auto"``, the default), once before the first step, one λ per conv layer
(each conv gets its own DessiLBI param group). A filter enters supp(Γ) when ‖V_g‖ exceeds λ, where
``V_g = Σ_t α_t (W_g,t − Γ_g,t)/ν``. Before entry Γ_g = 0 and the coupling shrinks W_g like a weight
decay 1/ν, so a filter that the loss neither grows nor shrinks has, at the prune point (step T),

    ‖V_g‖ = ‖W_g,0‖ · D / ν,   D = Σ_{t<T} α_t Π_{s<t} (1 − α_s κ/ν)

(α_t: the schedule's learning rates, warm-up included). The rule is

    λ_layer = lam_scale · median_{g in layer} ‖W_g,0‖ · D / ν        (lam_scale = 1 by default)

so in every layer the filters that end up with a larger ‖Σ_t α_t W_g,t‖ than a median filter left
to the coupling alone are in supp(Γ) by the prune point and the others are not: a strict, non-empty
subset of each layer (on short sample-data runs about half of every ResNet-20 conv; more in VGG's
first layers). Per layer rather than one global median because initial filter norms differ by layer
(Kaiming init: ‖W_g‖ ≈ √(2·c_in/c_out)) and, with BatchNorm after every conv, a filter's scale is not
comparable across layers: in the same runs, a global λ left the downsampling convs with an empty
support while whole other layers were full, whatever its value. ν and κ come from the config; a
numeric ``lam`` is used for every layer as is. The λ values are in the controller's state and in summary.json.

The penalty strength is this calibration: λ follows from the prune point, so no knob is left but
``lam_scale``. Learning rate: warm-up, constant until the prune point, cosine decay to 0 over the
fine-tuning. Settings in ``options.extra["dessilbi-prune"]``: ``prune_frac``, ``min_pretrain_epochs``,
``lam`` (a number, or ``"auto"``), ``lam_scale``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from growth.calibration import calibrate_lam, penalised_convs, split_lam_groups
from growth.config import ConfigError, TrainConfig
from growth.dessilbi import as_dessilbi
from growth.graph import channel_groups

from .pruning import (
    SCHEDULE_OPTIONS,
    PruneOnceController,
    group_scores,
    keep_at_least,
    method_options,
    min_width,
    prune_to_keep,
    prune_to_macs,
    pruning_config,
    schedule_options,
)
from .registry import MethodOptions, register_method

if TYPE_CHECKING:
    from growth.trainer import Trainer

DEFAULT_SEED = "resnet20"


class DessiLBIPruneController(PruneOnceController):
    """Reads DessiLBI's Γ at the prune point; afterwards DessiLBI runs with the penalties off."""

    method = "dessilbi-prune"

    def __init__(self, prune_frac: float = 0.5, target_macs: float | None = None,
                 lam: float | str = "auto", lam_scale: float = 1.0, start: dict[str, Any] | None = None) -> None:
        super().__init__(prune_frac, target_macs, start=start)
        self.lam_setting, self.lam_scale = lam, lam_scale
        self.lam: dict[str, float] | None = None   # conv name -> λ, fixed before the first step

    def extra_state(self) -> dict[str, Any]:
        return {"lam": self.lam, "lam_setting": self.lam_setting, "lam_scale": self.lam_scale}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.lam, self.lam_setting, self.lam_scale = state["lam"], state["lam_setting"], state["lam_scale"]

    # -- set-up ---------------------------------------------------------------------------------------

    def attach(self, trainer: Trainer) -> None:
        super().attach(trainer)
        if self.lam is not None:
            return  # resumed: the optimizer's param groups (restored from the checkpoint) carry λ
        convs = penalised_convs(trainer)
        if self.lam_setting == "auto":
            self.lam = calibrate_lam(trainer, self.prune_frac, self.lam_scale)
        else:
            self.lam = {name: float(self.lam_setting) for name in convs}
        split_lam_groups(trainer.optimizer, convs, self.lam)

    # -- the prune ------------------------------------------------------------------------------------

    def prune(self, trainer: Trainer) -> dict[str, Any]:
        model, opt = trainer.model, as_dessilbi(trainer.optimizer)
        assert self.lam is not None  # attach() calibrated it (a resumed run has it)
        modules = dict(model.named_modules())
        groups = channel_groups(model)
        t = max(1, opt.step_count)
        support: dict[str, torch.Tensor] = {}
        filter_scores: dict[str, torch.Tensor] = {}
        for g in groups:
            for conv in g.producers:
                w = modules[conv].weight
                assert isinstance(w, torch.Tensor)
                support[conv] = opt.support(w).cpu()
                entry = opt.entry_steps(w).cpu()
                v = opt.state.get(w, {}).get("V", torch.zeros_like(w))
                closeness = (v.flatten(1).norm(dim=1).cpu() / self.lam[conv]).clamp(max=1.0)
                filter_scores[conv] = torch.where(entry >= 0, 1 + (t - entry).float() / t, closeness)
        scores = group_scores(model, filter_scores)
        supported = {g.name: torch.stack([support[p] for p in g.producers]).any(0) for g in groups}
        detail: dict[str, Any] = {"support": {name: int(s.sum()) for name, s in supported.items()}}
        if self.target_macs is None:
            keep = {g.name: keep_at_least(supported[g.name], scores[g.name], min_width(g.width)) for g in groups}
            detail["topped_up_groups"] = [g.name for g in groups if int(supported[g.name].sum()) < min_width(g.width)]
            prune_to_keep(model, keep, opt)
        else:
            plan = prune_to_macs(model, scores, self.target_macs, trainer.input_shape, opt)
            detail.update(plan.detail())
        switch_penalties_off(opt)
        return detail

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "lam": self.lam, "lam_scale": self.lam_scale}


def switch_penalties_off(opt: torch.optim.Optimizer) -> None:
    """DessiLBI without penalties: momentum SGD. Drops V, Γ and entry steps (meaningless from now on)."""
    for group in opt.param_groups:
        group["penalty"] = None
    for state in opt.state.values():
        for key in ("V", "gamma", "entry_step"):
            state.pop(key, None)


@register_method("dessilbi-prune")
def dessilbi_prune(base: TrainConfig, seed: str | None,
                   options: MethodOptions) -> tuple[TrainConfig, DessiLBIPruneController]:
    opts = method_options(options.extra, "dessilbi-prune", (*SCHEDULE_OPTIONS, "lam", "lam_scale"))
    prune_frac, min_epochs = schedule_options(opts)
    lam = opts.get("lam", "auto")
    if lam != "auto" and not float(lam) > 0:
        raise ConfigError(f"dessilbi-prune lam must be positive or auto, got {lam}")
    lam_scale = float(opts.get("lam_scale", 1.0))
    if not lam_scale > 0:
        raise ConfigError(f"dessilbi-prune lam_scale must be positive, got {lam_scale}")
    config, start = pruning_config(base, options, seed=seed or DEFAULT_SEED, optimizer="dessilbi",
                                   prune_frac=prune_frac, min_pretrain_epochs=min_epochs, lam=lam)
    return config, DessiLBIPruneController(prune_frac, options.target_macs, lam, lam_scale, start.summary())
