"""The growth controller: how much and when from the plan, where from Γ.

**How much and when** (growth.plan, fixed before the first step). The final size, ``target_macs``, is
the best fixed width's MACs at this budget where that was measured (a fit on CIFAR-10 at 3e12–3e13),
joined above that range to a published compute point (``--target-macs`` overrides). If the target is
not at least ``min_growth`` times the seed's MACs, the run does not grow at all: it is DessiLBI on the
seed. Growth is front-loaded in a few events, geometric in MACs, inside one global learning-rate
schedule (the fixed-width runs': warm-up, then cosine to 0 at the budget), as the growth methods that
come closest to fixed widths do. Event k comes after the network has trained ``check_epochs`` epochs
since the last one, or ``grow_until_frac / K`` of the budget, whichever is less: 10/20/30/40% at the
budgets where growth was measured, a few epochs of the seed at 2e17. A check is an evaluation; the
controller asks the trainer for one at each planned event (``next_eval_frac``). A check that comes more
than half an interval late (a budget of a few steps) does not grow: nothing grown then would be trained.

**Where.** DessiLBI runs with one λ per conv layer, calibrated so that a filter keeping its layer's
median initial norm enters supp Γ after one check interval (growth.calibration: no fan-in bias).
At a check, a channel group's *score* is its Γ occupancy over the last window: the share of the window
its (producer conv, filter) pairs spent in supp Γ, averaged (a filter outside supp now counts 0). Every
group is scored over the same window, so scores re-arm: new filters start outside supp and pull a
widened group's score down until they earn their place; a group whose filters Γ leaves out scores low.
The groups scoring at least ``select_frac`` of the best score are *chosen*, and the step's MACs go to
them in whole channels by value per MAC (growth.allocation): a unit's value is its group's score times
the gain in ``Σ log(harmonic width)`` over the layers it widens, its price the MACs it adds. With equal
scores that rule alone turns a flat seed into one whose width doubles as the resolution halves; Γ's
scores move it towards the groups whose filters Γ uses. The other groups get channels only once every
chosen group is at its per-step cap (``max_step_factor``, or what the per-step MACs need at budgets
that ask for a much larger network). What the chosen groups cannot spend stays unspent and the next
check, with a fresh reading of Γ, catches it up (goals are absolute). No group scoring above 0 means
Γ has not moved and nothing grows at this check. The controls, at the same moments and sizes:
``allocation="price"`` gives every group the same score (the rule without Γ: what Γ adds is grow −
grow-price); ``allocation="uniform"`` widens every group alike (uniform scaling);
``allocation="none"`` never grows (DessiLBI on the seed).

**New units.** A widening is function-preserving (growth.operators: new filters' outgoing weights
are 0). Their incoming weights are rescaled to the median norm of the layer's existing filters, so
that under BatchNorm's scale invariance they learn at the layer's effective rate and can enter
supp Γ on the same time scale. BatchNorm and biases are not decayed (growth.optim.make_optimizer).

**Safety.** A check refuses to grow when any weight or DessiLBI state is not finite.

Every check and every event goes to ``growth.jsonl``.

Example:
    >>> select_groups({"stage1": 0.2, "stage2": 1.0, "stage3": 0.95}, select_frac=0.9)
    ['stage2', 'stage3']
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal, Union

import torch

from search_spaces import family_of, genotype_of

from . import distributed
from .allocation import allocate, widened_alike
from .calibration import calibrate_lam, penalised_convs, split_lam_groups
from .compute import measure_cost
from .config import GrowConfig
from .dessilbi import as_dessilbi
from .graph import ChannelGroup, channel_groups, groups_of_genotype
from .operators import deepen, deepened_genotype, stage_depth, widen
from .plan import GrowthPlan, describe_plan, plan_growth
from .run import Run
from .runstore import RunError
from .trainer import Controller, Display, Trainer

#: One action of a growth check: append a block to a stage, or widen a group by ``n`` channels.
Action = Union[tuple[Literal["deepen"], int, None], tuple[Literal["widen"], str, int]]


#: A final size short of the target by more than this share is reported in the summary and on screen.
SHORTFALL_NOTED = 0.10


def occupancy(supports: list[torch.Tensor], entry_steps: list[torch.Tensor], since_step: int, now_step: int) -> float:
    """Mean share of the window ``(since_step, now_step]`` that a group's filters spent in supp Γ: a filter
    in supp now counts from its entry (or the window's start, if earlier); one outside now counts 0.

    >>> occupancy([torch.tensor([True, True, False])], [torch.tensor([5, 15, -1])], since_step=10, now_step=20)
    0.5
    """
    inside = torch.cat([s.flatten() for s in supports])
    entered = torch.cat([e.flatten() for e in entry_steps]).clamp_min(since_step)
    span = max(now_step - since_step, 1)
    steps_inside = int(((now_step - entered).clamp_min(0) * inside).sum())  # one sync, at a check
    return steps_inside / (span * max(inside.numel(), 1))


def select_groups(scores: dict[str, float], select_frac: float) -> list[str]:
    """The groups to widen: score > 0 and at least ``select_frac`` of the best score.

    >>> select_groups({"a": 0.9, "b": 0.5, "c": 0.85}, 0.9)
    ['a', 'c']
    >>> select_groups({"a": 0.0, "b": 0.0}, 0.9)
    []
    """
    best = max(scores.values(), default=0.0)
    return [name for name, s in scores.items() if s > 0 and s >= select_frac * best]


def width_multiple(config: GrowConfig, device_type: str, amp: bool) -> int:
    """The allocation's unit from 16 channels on (growth.allocation): ``config.width_multiple``, or by
    default 8 where the step runs in bf16 on a GPU (tensor cores work on tiles of 8 channels), else 1."""
    if config.width_multiple is not None:
        return config.width_multiple
    return 8 if device_type == "cuda" and amp else 1


class GrowthController(Controller):
    """Plugs into :class:`Trainer` (``attach`` before the first step, ``on_eval`` at every check)."""

    def __init__(self, config: GrowConfig) -> None:
        super().__init__()
        self.config = config
        self.lam: dict[str, float] | None = None     # conv name -> λ, fixed before the first step
        self.seed_macs = 0.0
        self.target = 0.0
        self.window_start = 0                       # step of the last check: scores count entries since
        self.steps_done = 0
        self.events = 0
        self.refused = 0
        self.reached_macs: float | None = None      # MACs after the last growth check (the seed's at first)
        self.stopped_late = False                   # a check came too late: no growth from there on
        self.plan: GrowthPlan | None = None         # fixed at attach from the seed's MACs (growth.plan)
        self.multiple = 1                           # grown widths' rounding (width_multiple), set at attach
        self._rows: list[dict[str, Any]] = []

    # -- checkpointed state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "seed_macs": self.seed_macs, "target": self.target,
                "window_start": self.window_start, "steps_done": self.steps_done, "events": self.events,
                "refused": self.refused, "reached_macs": self.reached_macs, "stopped_late": self.stopped_late,
                "multiple": self.multiple}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "window_start" not in state:
            raise RunError("the checkpoint was written by an older growth rule (scores since a group last grew, "
                           "not over the last check interval): finish it with that version, or start the run again")
        self.lam, self.seed_macs, self.target = state["lam"], state["seed_macs"], state["target"]
        self.window_start = int(state["window_start"])
        self.steps_done, self.events, self.refused = state["steps_done"], state["events"], state["refused"]
        # Absent from checkpoints written before they existed: attach reads the MACs and the unit again.
        self.reached_macs = state.get("reached_macs")
        self.stopped_late = bool(state.get("stopped_late", False))
        self.multiple = int(state.get("multiple", 0))

    # -- set-up ---------------------------------------------------------------------------------------

    def attach(self, trainer: Trainer) -> None:
        """Before the first step: the size target and λ per layer (a resumed run has both)."""
        if self.lam is not None:  # resumed: the plan follows from the seed's MACs, as it did at the start
            self.plan = plan_growth(self.config, self.seed_macs, len(trainer.data.train_y))
            if self.reached_macs is None:
                self.reached_macs = float(trainer.cost.macs)
            # the unit fixed at the start (a resume may change the precision, not the unit of a growing run)
            self.multiple = self.multiple or width_multiple(self.config, trainer.device.type, trainer.amp)
            return
        self.multiple = width_multiple(self.config, trainer.device.type, trainer.amp)
        cfg = self.config
        self.seed_macs = self.reached_macs = float(trainer.cost.macs)
        self.plan = plan = plan_growth(cfg, self.seed_macs, len(trainer.data.train_y))
        convs = penalised_convs(trainer)
        if cfg.lam == "auto":  # calibrated to the first check interval (the whole budget's 10% without growth)
            self.lam = calibrate_lam(trainer, plan.events[0].at_fraction if plan.events else cfg.check_every_frac)
        else:
            self.lam = {name: float(cfg.lam) for name in convs}
        split_lam_groups(trainer.optimizer, convs, self.lam)
        self.target = plan.target_macs if plan.grows else self.seed_macs
        if plan.events:
            trainer.state.next_eval_frac = min(trainer.state.next_eval_frac, plan.events[0].at_fraction)
        # Only a run that died before its first checkpoint after this point left lines here.
        trainer.store.rewind_jsonl("growth.jsonl", lambda record: False)
        trainer.log_event(
            "plan", seed_macs=self.seed_macs, rule_macs=plan.target_macs, target_macs=self.target, grows=plan.grows,
            size_rule=plan.size_rule, step_macs=[e.goal_macs for e in plan.events],
            step_fractions=[round(e.at_fraction, 6) for e in plan.events],
            seed_epochs=round(plan.seed_epochs, 3), final_epochs=round(plan.final_epochs, 3))
        note = describe_plan(plan)
        if plan.grows:  # a target that widening cannot reach on these images is said before training starts
            alike = measure_cost(widened_alike(genotype_of(trainer.model), plan.target_macs, trainer.input_shape),
                                 trainer.input_shape).macs
            if alike < (1 - SHORTFALL_NOTED) * plan.target_macs:
                note += (f"; OUT OF REACH: widening reaches only {alike / 1e6:.3g}M MACs on "
                         f"{trainer.input_shape[1]}x{trainer.input_shape[2]} images")
        trainer.note(note)

    def next_eval_frac(self, trainer: Trainer, scheduled: float) -> float:
        """The regular evaluation, or the next planned growth check if it comes first."""
        if self.plan is not None and self.steps_done < len(self.plan.events):
            return min(scheduled, self.plan.events[self.steps_done].at_fraction)
        return scheduled

    # -- the rule -------------------------------------------------------------------------------------

    def scores(self, trainer: Trainer, groups: list[ChannelGroup]) -> dict[str, float]:
        """Γ occupancy per group over the window since the last check (see the module docstring)."""
        modules = dict(trainer.model.named_modules())
        opt = as_dessilbi(trainer.optimizer)
        weights = {g.name: [_weight(modules[p]) for p in g.producers] for g in groups}
        return {name: occupancy([opt.support(w) for w in ws], [opt.entry_steps(w) for w in ws],
                                self.window_start, trainer.state.step) for name, ws in weights.items()}

    def display_rows(self) -> list[dict[str, Any]]:
        return self._rows

    def on_eval(self, trainer: Trainer, val_acc: float) -> None:
        cfg = self.config
        groups = channel_groups(trainer.model)
        scores = self.scores(trainer, groups)
        self._rows = [{"group": g.name, "kind": g.kind, "width": g.width, "ratio": scores[g.name]}
                      for g in groups]
        self.window_start = trainer.state.step  # the next check's scores count entries from here
        events = self.plan.events if self.plan is not None else ()
        if self.steps_done >= len(events) or self.target <= self.seed_macs or self.stopped_late:
            return
        event, spent = events[self.steps_done], trainer.ledger.fraction_spent
        if spent < event.at_fraction - 1e-12:
            return  # a regular evaluation before the check
        share = event.at_fraction - (events[self.steps_done - 1].at_fraction if self.steps_done else 0.0)
        if spent > event.at_fraction + share / 2:
            # A budget of a few steps reaches its checks late: a network grown now would not be trained.
            self.stopped_late = True
            trainer.log_event("too_late", reason=f"check planned at {event.at_fraction:.1%} of the budget came at "
                              f"{spent:.1%}: no growth from here on")
            return
        self.steps_done += 1
        goal = event.goal_macs
        record = {"growth_step": self.steps_done, "goal_macs": goal, "macs": trainer.cost.macs,
                  "val_acc": val_acc, "scores": {k: round(v, 4) for k, v in scores.items()}}
        finite = _finite(trainer)
        chosen: list[str] = []
        plan: list[Action] = []
        if finite:
            if cfg.allocation in ("uniform", "price"):  # every group, equal scores: Γ decides nothing
                chosen, ranked = [g.name for g in groups], {g.name: 1.0 for g in groups}
            else:
                chosen = select_groups(scores, cfg.select_frac)
                ranked = {name: scores[name] for name in chosen}
            # Γ has not moved anywhere (no score above 0): nothing grows now; later steps catch up.
            plan = self._plan(trainer, ranked, goal) if chosen else []
        if distributed.active():  # under torchrun every rank applies rank 0's decision; the log says whether
            decisions = distributed.gather((finite, chosen, plan, scores))  # all ranks had the same Γ and plan
            finite, chosen, plan, _ = decisions[0]
            record["ranks_agree"] = all(d == decisions[0] for d in decisions)
        if not finite:
            self.refused += 1
            trainer.log_event("refused", **record, reason="non-finite weights or DessiLBI state")
            return
        trainer.log_event("check", **record, selected=chosen)
        if plan:
            self._apply(trainer, plan, scores, val_acc)
        self.reached_macs = float(trainer.cost.macs)
        self._rows = [{"group": g.name, "kind": g.kind, "width": g.width, "ratio": scores.get(g.name, 0.0)}
                      for g in channel_groups(trainer.model)]

    def _plan(self, trainer: Trainer, scores: dict[str, float], goal: float) -> list[Action]:
        """Blocks for chosen stages (``deepen``), then whole channels to the chosen groups (``scores``: the
        chosen groups' scores), and to the others only when every chosen group is capped (growth.allocation)."""
        cfg = self.config
        genotype = genotype_of(trainer.model)
        plan: list[Action] = []
        if cfg.deepen:
            family = family_of(genotype)
            for group in (g for g in groups_of_genotype(genotype) if g.name in scores):
                stage = family.deepens(group.key)
                if stage is None or stage_depth(genotype, stage) >= cfg.max_blocks:
                    continue
                candidate = deepened_genotype(genotype, stage)
                if measure_cost(candidate, trainer.input_shape).macs <= goal:
                    plan.append(("deepen", stage, None))
                    genotype = candidate
        others = [g.name for g in groups_of_genotype(genotype) if g.name not in scores]
        rule: Literal["value", "alike"] = "alike" if cfg.allocation == "uniform" else "value"
        added = allocate(genotype, scores, others, goal, self.step_factor_cap(), trainer.input_shape, self.multiple,
                         rule)
        return plan + [("widen", name, n) for name, n in added.items()]

    def step_factor_cap(self) -> float:
        """Width factor allowed per step: ``max_step_factor``, or more where the MACs the plan asks for
        per step need it (MACs grow about as width squared)."""
        steps = len(self.plan.events) if self.plan is not None and self.plan.events else self.config.growth_steps
        per_step = (self.target / self.seed_macs) ** (1 / steps) if self.seed_macs else 1.0
        return max(self.config.max_step_factor, 1.1 * math.sqrt(per_step))

    def _apply(self, trainer: Trainer, plan: list[Action], scores: dict[str, float], val_acc: float) -> None:
        model, opt = trainer.model, trainer.optimizer
        probe = trainer.probe_batch()
        for step in plan:
            before = trainer.eval_logits(probe)
            detail: dict[str, Any]
            if step[0] == "widen":
                _, target, n = step
                old = next(g.width for g in channel_groups(model) if g.name == target)
                widen(model, target, n, opt)
                _match_new_filter_scale(model, target, old)
                detail = {"group": target, "score": round(scores[target], 4), "old_width": old,
                          "new_width": old + n}
            else:
                stage = step[1]
                self._deepen(trainer, stage)
                detail = {"stage": stage + 1, "new_block": stage_depth(genotype_of(model), stage)}
            self.events += 1
            cost = trainer.cost
            trainer.log_event(step[0], **detail, output_change=trainer.output_change(probe, before),
                              params=cost.params, macs=cost.macs, widths=genotype_of(model).compact())
        val_after = trainer.accuracy(trainer.data.val_x, trainer.data.val_y)
        trainer.log_event("check_done", val_acc_before=val_acc, val_acc_after=val_after,
                          macs=trainer.cost.macs, widths=genotype_of(model).compact())

    def _deepen(self, trainer: Trainer, stage: int) -> None:
        """Append a block; its convs get their own param groups with the λ of the block before."""
        model, opt = trainer.model, trainer.optimizer
        deepen(model, stage, opt)
        family = family_of(model)
        index = stage_depth(genotype_of(model), stage) - 1
        block, before = family.block_name(stage, index) + ".", family.block_name(stage, index - 1) + "."
        convs = penalised_convs(trainer)
        assert self.lam is not None
        for name in convs:
            if name not in self.lam:  # the new block's convs inherit the λ of the block before's
                self.lam[name] = self.lam[before + name[len(block):]]
        new = {name: p for name, p in convs.items() if name.startswith(block)}
        shared = next(g for g in opt.param_groups if any(p is q for q in g["params"] for p in new.values()))
        shared["params"] = [q for q in shared["params"] if all(q is not p for p in new.values())]
        for name, p in new.items():
            opt.add_param_group({**{k: v for k, v in shared.items() if k != "params"},
                                 "params": [p], "lam": self.lam[name]})

    def shortfall(self) -> float:
        """How far short of its target growth ended, as a share of the target (0 when reached or not growing)."""
        if self.target <= self.seed_macs or self.reached_macs is None:
            return 0.0
        return max(0.0, 1 - self.reached_macs / self.target)

    def summary(self) -> dict[str, Any]:
        cfg = self.config
        notes = []
        if self.shortfall() > SHORTFALL_NOTED:
            reached = (self.reached_macs or 0.0) / 1e6
            notes.append(f"growth ended at {reached:.3g}M MACs, {self.shortfall():.0%} short of its "
                         f"{self.target / 1e6:.3g}M target (Γ chose groups the steps could not afford, or the "
                         "budget reached its checks too late)")
        return {"growth_events": self.events, "growth_steps_done": self.steps_done, "notes": notes,
                "target_shortfall": round(self.shortfall(), 4), "seed_macs": self.seed_macs,
                "target_macs": self.target, "allocation": cfg.allocation,
                "refused_checks": self.refused, "stopped_late": self.stopped_late, "nu": cfg.nu,
                "width_multiple": self.multiple,
                "lam": None if self.lam is None else {k: round(v, 6) for k, v in self.lam.items()}}


@torch.no_grad()
def _match_new_filter_scale(model: torch.nn.Module, group_name: str, old_width: int) -> None:
    """New filters' incoming weights rescaled to the median norm of the layer's existing filters."""
    group = next(g for g in channel_groups(model) if g.name == group_name)
    for name in group.producers:
        w = _weight(model.get_submodule(name))
        norms = w.flatten(1).norm(dim=1)
        scale = norms[:old_width].median() / norms[old_width:].clamp_min(1e-12)
        w[old_width:].mul_(scale.view(-1, *([1] * (w.dim() - 1))))


@torch.no_grad()
def _finite(trainer: Trainer) -> bool:
    """All weights and DessiLBI V/Γ finite (one device sync, at a check only)."""
    tensors = list(trainer.model.parameters())
    opt = as_dessilbi(trainer.optimizer)
    for p in opt.penalised_params():
        state = opt.state.get(p, {})
        tensors += [state[k] for k in ("V", "gamma") if k in state]
    return bool(torch.stack([t.isfinite().all() for t in tensors]).all())


def grow(config: GrowConfig, out: str | os.PathLike[str] | None = None, resume: str | os.PathLike[str] | None = None,
         display: Display | None = None) -> dict[str, Any]:
    """Run growth to the budget in a new run directory ``out`` (or continue ``resume``); the summary."""
    run = Run.open(config, out, resume, kind="grow")
    grow_config = run.config
    assert isinstance(grow_config, GrowConfig)  # Run.open keeps the config's class (also on resume)
    return run.fit(GrowthController(grow_config), display)


def _weight(module: torch.nn.Module) -> torch.Tensor:
    """The ``weight`` of a conv (or any layer that has one)."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor), f"{type(module).__name__} has no weight tensor"
    return weight
