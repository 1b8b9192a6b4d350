"""The growth controller: train with DessiLBI, read Γ saturation, widen and deepen within the budget.

At every check (each ``check_every_frac`` of the budget, during the first ``1 - final_frac`` of it):

1. **Saturation.** For each coupled channel group, ``r = |supp Γ| / width``, counted over all the
   group's producer convs (a stage group: the stem or downsampling shortcut and every block's last
   conv), i.e. the share of the group's (producer, filter) pairs whose Γ is non-zero.
2. **Width.** A group with ``r >= tau`` grows by ``max(k, ceil(g * width))`` channels, rounded up to
   a multiple of 4 once the width is 16 or more, and never past ``max_width_mult x`` its seed width.
3. **Depth.** A stage gets a new (identity) block when its stage group is saturated at two checks in
   a row with a widening in between, or is saturated at its width cap. A stage stops deepening for
   good when, at the check after a block was added, none of that block's filters is in supp Γ, or
   when it has ``max_blocks`` blocks.
4. **Budget.** A candidate change is accepted only if the final phase (``final_frac`` of the budget,
   no growth, learning rate decaying to 0) still buys ``min_final_epochs`` epochs of the grown
   network. Changes are tried from the most saturated group down. The ledger ends the run at the
   budget whatever the architecture costs.

**Time scale.** A filter enters supp Γ after about ``λν / (α ‖W_g‖)`` steps. With ``lam="auto"``
(the default) λ is calibrated once, at the start, so that a filter of median initial norm enters
after one check interval: ``λ = α · median‖W_g‖ · steps_per_check / ν``. Larger, steadier filters
enter sooner; filters the loss does not need shrink (the coupling acts as weight decay 1/ν on them)
and enter later or never. The rule ties the path to the schedule, so growth happens on a 5-minute
CPU run and on a 2e17-FLOP GPU run alike. λ is calibrated rather than ν because ν also sets the
strength of the W-Γ coupling: a ν small enough for a short run pulls every unselected filter
towards 0 by ακ/ν per step, which made short runs unstable (validation accuracy at chance between
checks); ν stays at the reference value 100.

Every event goes to ``growth.jsonl``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .compute import measure_cost
from .graph import ChannelGroup, channel_groups
from .operators import deepen, deepened_genotype, resized_genotype, stage_depth, widen
from .runstore import RunStore
from .config import GrowConfig
from .trainer import Trainer, build_trainer


def grow_amount(width: int, k: int, g: float) -> int:
    """Channels to add to a saturated group of ``width``: ``max(k, ceil(g*width))``, x4 from 16 on."""
    n = max(k, math.ceil(g * width))
    if width + n >= 16:
        n += -(width + n) % 4
    return n


class GrowthController:
    """Plugs into :class:`Trainer`: acts at every evaluation until the final phase."""

    def __init__(self, config: GrowConfig):
        self.config = config
        self.seed_widths: dict[str, int] = {}
        self.widened_last: list[str] = []       # groups widened at the previous check
        self.newest_block: dict[int, int] = {}  # stage -> index of a block added at the previous check
        self.closed_stages: list[int] = []      # stages that stopped deepening
        self.events = 0
        self.lam: float | None = None

    # -- checkpointed state ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"seed_widths": self.seed_widths, "widened_last": self.widened_last,
                "newest_block": {str(k): v for k, v in self.newest_block.items()},
                "closed_stages": self.closed_stages, "events": self.events, "lam": self.lam}

    def load_state_dict(self, state: dict) -> None:
        self.seed_widths = dict(state["seed_widths"])
        self.widened_last = list(state["widened_last"])
        self.newest_block = {int(k): v for k, v in state["newest_block"].items()}
        self.closed_stages = list(state["closed_stages"])
        self.events, self.lam = state["events"], state["lam"]

    # -- set-up ---------------------------------------------------------------------------------------

    def attach(self, trainer: Trainer) -> None:
        """Before the first step: record seed widths and calibrate λ (a resumed run has both)."""
        if self.lam is not None:
            return
        self.seed_widths = {g.name: g.width for g in channel_groups(trainer.model)}
        cfg = self.config
        if cfg.lam == "auto":
            steps_per_check = cfg.check_every_frac * cfg.budget_flops / (
                trainer.cost.train_flops_per_sample * cfg.batch_size)
            norms = torch.cat([p.detach().flatten(1).norm(dim=1) for p in _penalised(trainer)])
            self.lam = cfg.lr * float(norms.median()) * steps_per_check / cfg.nu
        else:
            self.lam = float(cfg.lam)
        for group in trainer.optimizer.param_groups:
            group["lam"] = self.lam

    # -- the rule -------------------------------------------------------------------------------------

    def saturation(self, trainer: Trainer, group: ChannelGroup) -> float:
        opt, modules = trainer.optimizer, dict(trainer.model.named_modules())
        supports = [opt.support(modules[name].weight) for name in group.producers]
        return float(torch.cat(supports).float().mean())

    def display_rows(self) -> list[dict]:
        return getattr(self, "_rows", [])

    def on_eval(self, trainer: Trainer, val_acc: float) -> None:
        cfg = self.config
        groups = channel_groups(trainer.model)
        ratios = {g.name: self.saturation(trainer, g) for g in groups}
        self._rows = [{"group": g.name, "kind": g.kind, "width": g.width, "ratio": ratios[g.name]}
                      for g in groups]
        fraction = trainer.ledger.fraction_spent
        if fraction >= 1.0 - cfg.final_frac - 1e-9:
            return
        self._close_idle_stages(trainer)
        plan = self._plan(trainer, groups, ratios)
        self.widened_last = [target for action, target, _ in plan if action == "widen"]
        if plan:
            self._apply(trainer, plan, ratios, val_acc)
        self._rows = [{"group": g.name, "kind": g.kind, "width": g.width,
                       "ratio": self.saturation(trainer, g)} for g in channel_groups(trainer.model)]

    def _close_idle_stages(self, trainer: Trainer) -> None:
        modules = dict(trainer.model.named_modules())
        for stage, block in list(self.newest_block.items()):
            prefix = f"stages.{stage}.{block}."
            entered = any(bool(trainer.optimizer.support(m.weight).any()) for name, m in modules.items()
                          if name.startswith(prefix) and isinstance(m, torch.nn.Conv2d))
            if not entered and stage not in self.closed_stages:
                self.closed_stages.append(stage)
        self.newest_block = {}

    def _plan(self, trainer: Trainer, groups: list[ChannelGroup], ratios: dict[str, float]) -> list[tuple]:
        """Changes to make at this check, most saturated first, each kept only if affordable."""
        cfg = self.config
        genotype = trainer.model.genotype
        plan = []
        for group in sorted(groups, key=lambda g: -ratios[g.name]):
            if ratios[group.name] < cfg.tau:
                break
            cap = int(cfg.max_width_mult * self.seed_widths.get(group.name, group.width))
            at_cap = group.width >= cap
            if not at_cap:
                n = min(grow_amount(group.width, cfg.grow_min, cfg.grow_frac), cap - group.width)
                # Earlier entries of the plan touched other groups only, so group.width is current.
                candidate = resized_genotype(genotype, group, torch.arange(group.width), n)
                if self._affordable(trainer, candidate):
                    plan.append(("widen", group.name, n))
                    genotype = candidate
            stage = group.key[1]
            wants_depth = group.kind == "stage" and (group.name in self.widened_last or at_cap)
            if (cfg.deepen and wants_depth and stage not in self.closed_stages
                    and stage_depth(genotype, stage) < cfg.max_blocks):
                candidate = deepened_genotype(genotype, stage)
                if self._affordable(trainer, candidate):
                    plan.append(("deepen", stage, None))
                    genotype = candidate
        return plan

    def _affordable(self, trainer: Trainer, genotype) -> bool:
        cfg = self.config
        cost = measure_cost(genotype, trainer.input_shape)
        final_samples = cfg.final_frac * cfg.budget_flops / cost.train_flops_per_sample
        return final_samples >= cfg.min_final_epochs * len(trainer.data.train_y)

    def _apply(self, trainer: Trainer, plan: list[tuple], ratios: dict[str, float], val_acc: float) -> None:
        model, opt = trainer.model, trainer.optimizer
        probe = trainer.probe_batch()
        for action, target, n in plan:
            before = trainer.eval_logits(probe)
            old = {g.name: g.width for g in channel_groups(model)}
            if action == "widen":
                widen(model, target, n, opt)
                detail = {"group": target, "ratio": round(ratios[target], 4),
                          "old_width": old[target], "new_width": old[target] + n}
            else:
                deepen(model, target, opt)
                block = len(model.stages[target]) - 1
                self.newest_block[target] = block
                detail = {"stage": target + 1, "new_block": block + 1,
                          "ratio": round(ratios[f"stage{target + 1}"], 4)}
            change = trainer.output_change(probe, before)
            self.events += 1
            cost = trainer.cost
            trainer.store.append_jsonl("growth.jsonl", {
                "event": action, "step": trainer.state.step, "train_flops": trainer.ledger.spent_flops,
                "fraction": round(trainer.ledger.fraction_spent, 5), **detail,
                "val_acc_before": val_acc, "output_change": change,
                "params": cost.params, "macs": cost.macs, "widths": model.genotype.compact()})
        val_after = trainer.accuracy(trainer.data.val_x, trainer.data.val_y)
        trainer.store.append_jsonl("growth.jsonl", {
            "event": "check_done", "step": trainer.state.step, "val_acc_before": val_acc,
            "val_acc_after": val_after, "widths": model.genotype.compact()})

    def summary(self) -> dict:
        return {"growth_events": self.events, "lam": self.lam, "nu": self.config.nu,
                "closed_stages": self.closed_stages}


def _penalised(trainer: Trainer):
    return [p for g in trainer.optimizer.param_groups if g.get("penalty") == "group" for p in g["params"]]


def grow(config: GrowConfig, store: RunStore, resuming: bool, display: Any = None) -> dict:
    """Run growth to the budget; returns the summary (also written to summary.json)."""
    controller = GrowthController(config)
    return build_trainer(config, store, resuming, controller=controller, display=display).fit()
