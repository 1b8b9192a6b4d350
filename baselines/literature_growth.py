"""Two growth methods from the literature, run on the same engine as ``grow`` (data, trainer, ledger,
run store, growth operators), so that a bench compares growth recipes under one training-FLOP budget.

    vt[:<seed>]        Variance Transfer (Yuan, Savarese & Maire, NeurIPS 2023, arXiv 2306.12700)
    net2net[:<seed>]   Net2Net widening (Chen, Goodfellow & Shlens, ICLR 2016, arXiv 1511.05641)

Both train with SGD under the trainer's one global learning-rate schedule (warm-up, then cosine to 0
at the budget; never restarted at a growth step), widen every channel group of the network
uniformly, keep the optimizer state of existing weights (new entries start at 0), and log to
``growth.jsonl``: ``plan`` before the first step, then per growth step ``check``, one ``widen`` per
group (with the measured ``output_change``: the relative change of the eval-mode logits on a probe
batch, 0 for an exact function-preserving edit) and ``check_done``. The final size is the bench's
``--target-macs`` when it passes one, else the engine's size rule for the budget
(:func:`growth.plan.target_macs`), as for ``grow``. Settings: ``options.extra["vt"]`` and
``options.extra["net2net"]`` (see :class:`VTSettings`, :class:`Net2NetSettings`).

**vt** follows the paper's recipe (ALGORITHMS.md §7): start at 1/4 of the final width, grow every
group in 8 steps (width geometric: x 4^(1/8) per step), evenly spaced up to half the budget, to the
seed scaled uniformly to the target (to within one channel per group, :func:`fill_to_macs`). At each
widening of a group from C_t to C_{t+1} channels:

* *paired new units* ((V, V) / (Z, -Z)): new channels come in pairs with identical incoming weights
  V and opposite outgoing weights Z and -Z, so that their contributions cancel and the function is
  preserved (an odd channel out gets zero outgoing weights);
* *variance transfer*: every layer that reads the group has its existing weights multiplied by
  c = C_t / C_{t+1} (the paper's W_{t+1} = W_t · C_t / C_{t+1}), and the BatchNorm after it its
  running mean by c and running variance by c², which keeps the layer's normalised output (and so
  the function) unchanged in both modes, up to BatchNorm's ε. V and Z are drawn with the variance
  the layer's weights have after the transfer (the paper draws them at its 1/C_{t+1}² init scale,
  which the transferred old weights also have there), so old and new entries start on one scale;
* *learning-rate adaptation*: the entries added at growth step t (a sub-network W_Δt) learn at
  η_t = η · ‖W_Δt‖_F / ‖W_0‖_F, W_0 being the start network's entries, η the global schedule's rate.

**net2net** follows Net2WiderNet on the same schedule as ``grow`` (``growth_steps`` widenings evenly
spaced up to ``grow_until_frac`` of the budget, geometric in MACs from the seed to the target), every
group widened alike (after step k the seed scaled uniformly to step k's MACs, to within one channel
per group; a common factor on the current widths, as grow-uniform applies it, would leave a 4-channel
group at 4 through rounding at every small step). Each new channel copies a channel of its group
drawn uniformly at random (its incoming weights, BatchNorm parameters and statistics, zero-padding
routing and optimizer state: growth.operators.replicate), and every layer reading the group divides
the column of each copied channel among its copies (Net2Net's 1/|copies|), so the function is
exactly preserved. To break the copies' symmetry the split carries
noise that sums to zero over a channel's copies (each share × (1 + ε), ε ~ N(0, ``noise``²) minus
its mean over the copies): the copies get different gradients from the first step, yet the function
stays exact. Where the target is not at least ``min_growth`` times the seed's MACs, it does not grow
(SGD on the seed), as ``grow``.

Approximations, said plainly:

* vt's per-sub-network learning rate is applied as a per-entry gradient scale (in
  ``after_backward``: grad ← r·(grad + wd·w) − wd·w, so that SGD's step on those entries is exactly
  r times the global one, weight decay included), because the trainer sets one rate on every param
  group each step. With momentum this equals a per-entry rate while r is constant; r_t is
  recomputed from the current norms at every evaluation (and after every growth step), held in
  between. The norms count conv and linear weights only; the rate applies to every entry (BatchNorm
  parameters too) added at step t.
* vt leaves the classifier's existing weights unscaled (no BatchNorm follows it that could absorb
  the factor c, and the paper claims a function-preserving growth); the stem, whose input is the
  image, never widens its input.
* The paper's networks are in its own 1/C parameterisation from the start; here the start network
  has the engine's He initialisation, and the paper's scaling applies from the first growth step.
* net2net's symmetry-breaking noise is on the split outgoing weights and sums to zero over the
  copies (the paper adds noise that perturbs the function slightly).

Example:
    >>> split_pairs(5)
    (2, 1)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from growth.compute import measure_cost
from growth.config import ConfigError, GrowConfig, TrainConfig
from growth.graph import channel_groups, find_group, groups_of_genotype
from growth.operators import replicate, resized_genotype, widen
from growth.trainer import Controller
from search_spaces import Genotype, genotype_from_dict, genotype_of, genotype_to_dict, get_genotype

from .fixed import match_macs, uniform_genotype
from .grow_method import DEFAULT_SEED
from .pruning import method_options
from .registry import MethodOptions, register_method

if TYPE_CHECKING:
    from growth.trainer import Trainer

_GENERATOR_OFFSET = 7919  # the growth draws' random stream: seed_value + this (the trainer uses +0, +1)


# -- settings ---------------------------------------------------------------------------------------


def _check_schedule(method: str, steps: int, grow_until_frac: float) -> None:
    """The growth schedule every literature method shares: at least one step, done inside the budget."""
    if steps < 1:
        raise ConfigError(f"{method} steps must be at least 1, got {steps}")
    if not 0 < grow_until_frac < 1:
        raise ConfigError(f"{method} grow_until_frac must be in (0, 1), got {grow_until_frac}")


@dataclass(frozen=True)
class VTSettings:
    """Variance Transfer's schedule: ``steps`` widenings evenly spaced up to ``grow_until_frac`` of the
    budget, from ``start_width_frac`` of the final width (the paper: 1/4 width, ~8 steps, grown by
    epoch 64 of 100; ALGORITHMS.md §7 and issue 9 ask to finish by about half the budget)."""

    steps: int = 8
    grow_until_frac: float = 0.5
    start_width_frac: float = 0.25

    def validate(self) -> None:
        _check_schedule("vt", self.steps, self.grow_until_frac)
        if not 0 < self.start_width_frac < 1:
            raise ConfigError(f"vt start_width_frac must be in (0, 1), got {self.start_width_frac}")


@dataclass(frozen=True)
class Net2NetSettings:
    """Net2Net on grow's schedule (defaults: growth.config.GrowConfig's) plus the split's noise scale."""

    steps: int
    grow_until_frac: float
    min_growth: float
    noise: float = 0.1

    def validate(self) -> None:
        _check_schedule("net2net", self.steps, self.grow_until_frac)
        if not 0 <= self.noise < 1:
            raise ConfigError(f"net2net noise must be in [0, 1), got {self.noise}")


def split_pairs(n: int) -> tuple[int, int]:
    """New channels as (V, V)/(Z, -Z) pairs: (pairs, channels left over, which get zero outgoing weights)."""
    return n // 2, n % 2


# -- the shared controller --------------------------------------------------------------------------


class UniformGrowthController(Controller):
    """Widens every channel group at ``steps`` evaluations evenly spaced up to ``grow_until_frac`` of
    the budget; subclasses say by how much (:meth:`step_plan`) and how new channels start
    (:meth:`widen_group`). Checkpointed: the plan, the width history and the growth's random stream."""

    method: ClassVar[str] = ""

    def __init__(self, target_macs: float, steps: int, grow_until_frac: float) -> None:
        super().__init__()
        self.target = float(target_macs)
        self.steps, self.grow_until_frac = steps, grow_until_frac
        self.planned = False
        self.grows = True
        self.start_macs = 0.0
        self.start_widths: list[Any] = []
        self.start_genotype: dict[str, Any] = {}
        self.steps_done = 0
        self.events = 0
        self.history: list[dict[str, int]] = []   # every group's width at the start and after each step
        self.generator = torch.Generator()

    @property
    def check_every_frac(self) -> float:
        return self.grow_until_frac / self.steps

    def step_fractions(self) -> list[float]:
        return [round((k + 1) * self.check_every_frac, 6) for k in range(self.steps)]

    # -- checkpointed state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"planned": self.planned, "grows": self.grows, "target": self.target,
                "start_macs": self.start_macs, "start_widths": self.start_widths,
                "start_genotype": self.start_genotype, "steps_done": self.steps_done,
                "events": self.events, "history": self.history, "generator": self.generator.get_state(),
                **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.planned, self.grows, self.target = state["planned"], state["grows"], state["target"]
        self.start_macs, self.start_widths = state["start_macs"], state["start_widths"]
        self.start_genotype = state["start_genotype"]
        self.steps_done, self.events = state["steps_done"], state["events"]
        self.history = [dict(h) for h in state["history"]]
        self.generator.set_state(state["generator"])
        self.load_extra_state(state)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # -- the loop's hooks -----------------------------------------------------------------------------

    def attach(self, trainer: Trainer) -> None:
        """Before the first step: the plan (a resumed run has it, and its history)."""
        if not self.planned:
            assert trainer.config.seed_value is not None  # the trainer refuses a config without one
            self.generator.manual_seed(trainer.config.seed_value + _GENERATOR_OFFSET)
            self.start_macs = float(trainer.cost.macs)
            self.start_widths = genotype_of(trainer.model).compact()
            self.start_genotype = genotype_to_dict(genotype_of(trainer.model))
            self.history = [group_widths(genotype_of(trainer.model))]
            self.grows = self.plans_growth()
            # Only a run that died before its first checkpoint after this point left lines here.
            trainer.store.rewind_jsonl("growth.jsonl", lambda record: False)
            trainer.log_event("plan", method=self.method, start_macs=self.start_macs, start_widths=self.start_widths,
                              target_macs=self.target, grows=self.grows,
                              step_fractions=self.step_fractions() if self.grows else [], **self.plan_fields(trainer))
            self.planned = True
        self.restore(trainer)

    def on_eval(self, trainer: Trainer, val_acc: float) -> None:
        """One growth step at each due evaluation (``check_every_frac`` of the budget apart)."""
        if not self.grows or self.steps_done >= self.steps:
            return
        if trainer.ledger.fraction_spent < (self.steps_done + 1) * self.check_every_frac - 1e-9:
            return
        self.steps_done += 1
        added = self.step_plan(trainer, self.steps_done)
        trainer.log_event("check", growth_step=self.steps_done, macs=trainer.cost.macs, val_acc=val_acc,
                          added=added, **self.check_fields(trainer, self.steps_done))
        if added:
            self._apply(trainer, added, val_acc)
        self.history.append(group_widths(genotype_of(trainer.model)))

    def _apply(self, trainer: Trainer, added: dict[str, int], val_acc: float) -> None:
        probe = trainer.probe_batch()
        for name, n in added.items():
            before = trainer.eval_logits(probe)
            old = find_group(trainer.model, name).width
            detail = self.widen_group(trainer, name, n)
            self.events += 1
            cost = trainer.cost
            trainer.log_event("widen", group=name, old_width=old, new_width=old + n,
                              output_change=trainer.output_change(probe, before), params=cost.params,
                              macs=cost.macs, widths=genotype_of(trainer.model).compact(), **detail)
        val_after = trainer.accuracy(trainer.data.val_x, trainer.data.val_y)
        trainer.log_event("check_done", val_acc_before=val_acc, val_acc_after=val_after, macs=trainer.cost.macs,
                          widths=genotype_of(trainer.model).compact())

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "start_widths": self.start_widths, "start_macs": self.start_macs,
                "target_macs": self.target, "grows": self.grows, "growth_steps": self.steps,
                "growth_steps_done": self.steps_done, "growth_events": self.events,
                "step_fractions": self.step_fractions() if self.grows else [], **self.summary_fields()}

    # -- what a method defines ------------------------------------------------------------------------

    def plans_growth(self) -> bool:
        return True

    def plan_fields(self, trainer: Trainer) -> dict[str, Any]:
        return {}

    def check_fields(self, trainer: Trainer, step: int) -> dict[str, Any]:
        return {}

    def restore(self, trainer: Trainer) -> None:
        """Rebuild what is derived from the checkpointed state (at every attach)."""

    def step_plan(self, trainer: Trainer, step: int) -> dict[str, int]:
        """Channels to add per group at growth step ``step`` (1-based)."""
        raise NotImplementedError

    def widen_group(self, trainer: Trainer, name: str, n: int) -> dict[str, Any]:
        """Add ``n`` channels to group ``name`` (through trainer.optimizer); extra fields for the event."""
        raise NotImplementedError

    def summary_fields(self) -> dict[str, Any]:
        return {}


# -- Variance Transfer ------------------------------------------------------------------------------


class VarianceTransferController(UniformGrowthController):
    """Variance Transfer (see the module docstring): paired new units, transferred weight and BatchNorm
    scale, a learning rate per sub-network."""

    method = "vt"

    def __init__(self, target_macs: float, final_genotype: Genotype, settings: VTSettings) -> None:
        super().__init__(target_macs, settings.steps, settings.grow_until_frac)
        self.final = final_genotype
        self.start_width_frac = settings.start_width_frac
        self.rates: list[float] = [1.0]     # learning-rate multiple of the entries added at step t (t = 0: start)
        self._scales: list[tuple[nn.Parameter, torch.Tensor, float]] = []  # (param, per-entry multiple, decay)

    def extra_state(self) -> dict[str, Any]:
        return {"rates": self.rates, "final": genotype_to_dict(self.final)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        # The run's own final network, even if the size rule has changed since it started.
        self.rates, self.final = list(state["rates"]), genotype_from_dict(state["final"])

    def width_frac(self, step: int) -> float:
        """Share of the final width after growth step ``step``: geometric from the start share to 1."""
        return float(self.start_width_frac ** (1 - step / self.steps))

    def plan_fields(self, trainer: Trainer) -> dict[str, Any]:
        steps = range(1, self.steps + 1)
        return {"final_widths": self.final.compact(),
                "step_width_fracs": [round(self.width_frac(k), 6) for k in steps],
                "step_macs": [measure_cost(uniform_genotype(self.final, self.width_frac(k)),
                                           trainer.input_shape).macs for k in steps]}

    def step_plan(self, trainer: Trainer, step: int) -> dict[str, int]:
        goal = group_widths(uniform_genotype(self.final, self.width_frac(step)))
        current = group_widths(genotype_of(trainer.model))
        return {name: goal[name] - width for name, width in current.items() if goal[name] > width}

    def check_fields(self, trainer: Trainer, step: int) -> dict[str, Any]:
        return {"width_frac": round(self.width_frac(step), 6)}

    @torch.no_grad()
    def widen_group(self, trainer: Trainer, name: str, n: int) -> dict[str, Any]:
        model, opt = trainer.model, trainer.optimizer
        group = find_group(model, name)
        old = group.width
        modules = dict(model.named_modules())
        readers = [q for q in group.consumers if isinstance(modules[q], (nn.Conv2d, nn.Linear))]
        producer_rms = {p: _rms(_weight(modules[p])) for p in group.producers}
        reader_rms = {q: _rms(_weight(modules[q])) for q in readers}
        norm_of = norms_after(model)
        widen(model, group, n, opt)
        pairs, _ = split_pairs(n)
        transfer = old / (old + n)
        for p in group.producers:  # incoming V: drawn at the layer's scale; the pair's second unit copies it
            w = _weight(modules[p])
            w[old:] = self._normal(w[old:].shape, producer_rms[p]).to(w)
            w[old + 1:old + 2 * pairs:2] = w[old:old + 2 * pairs:2]
        for q in readers:
            w = _weight(modules[q])
            norm = norm_of.get(q)
            if norm is not None:  # the transfer W_{t+1} = W_t · C_t/C_{t+1}, absorbed by the BatchNorm after it
                w.mul_(transfer)
                _scale_running_stats(modules[norm], transfer)
            z = self._normal((w.shape[0], pairs, *w.shape[2:]), transfer * reader_rms[q]).to(w)
            w[:, old:old + 2 * pairs:2] = z
            w[:, old + 1:old + 2 * pairs:2] = -z
        return {"pairs": pairs, "transfer": round(transfer, 6)}

    def _normal(self, shape: tuple[int, ...] | torch.Size, std: float) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self.generator) * std

    # -- the learning-rate rule -----------------------------------------------------------------------

    def on_eval(self, trainer: Trainer, val_acc: float) -> None:
        steps_before = self.steps_done
        super().on_eval(trainer, val_acc)
        if len(self.history) > 1:
            self.rates = subnetwork_rates(trainer.model, self.history)
            self.restore(trainer)
            if self.steps_done > steps_before:
                trainer.log_event("lr_rates", rates=[round(r, 6) for r in self.rates])

    def restore(self, trainer: Trainer) -> None:
        """Per-entry multiples of the learning rate from the stored rates and the width history."""
        self._scales = []
        if len(self.history) <= 1:
            return
        decay = {p: float(g.get("weight_decay", 0.0)) for g in trainer.optimizer.param_groups for p in g["params"]}
        rates = torch.tensor(self.rates, dtype=torch.float32)
        for name, births in entry_births(trainer.model, self.history).items():
            if int(births.max()) == 0:
                continue
            param = trainer.model.get_parameter(name)
            assert isinstance(param, nn.Parameter)
            self._scales.append((param, rates[births].to(param.device, param.dtype), decay.get(param, 0.0)))

    @torch.no_grad()
    def after_backward(self, trainer: Trainer) -> None:
        """grad ← r·(grad + wd·w) − wd·w: SGD then steps each entry by r times the global rate."""
        for param, scale, decay in self._scales:
            grad = param.grad
            if grad is None:
                continue
            if decay:
                grad.add_(param, alpha=decay).mul_(scale).sub_(param, alpha=decay)
            else:
                grad.mul_(scale)

    def summary_fields(self) -> dict[str, Any]:
        return {"final_widths": self.final.compact(), "start_width_frac": self.start_width_frac,
                "lr_rates": [round(r, 6) for r in self.rates]}


def entry_births(model: nn.Module, history: list[dict[str, int]]) -> dict[str, torch.Tensor]:
    """The growth step at which each parameter entry appeared (0: the start network), per parameter name.

    Channels are appended, so channel j of a group was born at the first step whose width exceeds j;
    an entry of a weight is as young as the younger of its output and input channel.
    """
    groups = channel_groups(model)
    born = {g.name: _channel_births(g.name, g.width, history) for g in groups}
    out_group = {layer: g.name for g in groups for layer in (*g.producers, *g.norms)}
    in_group = {layer: g.name for g in groups for layer in g.consumers}
    births: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        for attr, param in module.named_parameters(recurse=False):
            rows = born[out_group[module_name]] if module_name in out_group else torch.zeros(param.shape[0],
                                                                                              dtype=torch.long)
            if param.dim() >= 2:
                cols = born[in_group[module_name]] if module_name in in_group else torch.zeros(param.shape[1],
                                                                                                dtype=torch.long)
                entry = torch.maximum(rows.view(-1, 1), cols.view(1, -1))
                entry = entry.view(*entry.shape, *([1] * (param.dim() - 2))).expand(param.shape)
            else:
                entry = rows
            births[f"{module_name}.{attr}" if module_name else attr] = entry
    return births


def _channel_births(name: str, width: int, history: list[dict[str, int]]) -> torch.Tensor:
    births = torch.zeros(width, dtype=torch.long)
    for step in range(1, len(history)):
        births[history[step - 1][name]:] = step
    return births


def subnetwork_rates(model: nn.Module, history: list[dict[str, int]]) -> list[float]:
    """η_t / η = ‖W_Δt‖_F / ‖W_0‖_F over conv and linear weights, for t = 0 .. growth steps so far."""
    steps = len(history)
    squares = torch.zeros(steps, dtype=torch.float64)
    params = dict(model.named_parameters())
    for name, births in entry_births(model, history).items():
        weight = params[name]
        if weight.dim() < 2:
            continue
        squares += torch.bincount(births.flatten(), weights=weight.detach().double().cpu().flatten() ** 2,
                                  minlength=steps)
    base = math.sqrt(float(squares[0])) or 1.0
    return [math.sqrt(float(s)) / base for s in squares]


# -- Net2Net ----------------------------------------------------------------------------------------


class Net2NetController(UniformGrowthController):
    """Net2WiderNet (see the module docstring): random copies, outgoing weights split among the copies."""

    method = "net2net"

    def __init__(self, target_macs: float, settings: Net2NetSettings) -> None:
        super().__init__(target_macs, settings.steps, settings.grow_until_frac)
        self.settings = settings

    def plans_growth(self) -> bool:
        return self.target >= self.settings.min_growth * self.start_macs

    def step_macs(self) -> list[float]:
        from growth.plan import step_targets

        return step_targets(self.start_macs, self.target, self.steps)

    def plan_fields(self, trainer: Trainer) -> dict[str, Any]:
        return {"step_macs": self.step_macs() if self.grows else [], "noise": self.settings.noise}

    def check_fields(self, trainer: Trainer, step: int) -> dict[str, Any]:
        return {"goal_macs": self.step_macs()[step - 1]}

    def step_plan(self, trainer: Trainer, step: int) -> dict[str, int]:
        """Every group widened alike: after step k the network is the start network scaled uniformly to
        step k's MACs goal (to within one channel per group, :func:`fill_to_macs`), never narrower than
        now. (A common factor on the current, rounded widths would round a 4-channel group back to 4
        at every small step and leave it at the seed's width.)"""
        goal = self.step_macs()[step - 1]
        current = genotype_of(trainer.model)
        scaled = group_widths(match_macs(genotype_from_dict(self.start_genotype), goal, trainer.input_shape))
        grown = current
        for group in groups_of_genotype(current):
            if scaled[group.name] > group.width:
                grown = resized_genotype(grown, group, torch.arange(group.width), scaled[group.name] - group.width)
        grown = top_up(grown, self.history[0], goal, trainer.input_shape)
        before, after = group_widths(current), group_widths(grown)
        return {name: after[name] - before[name] for name in before if after[name] > before[name]}

    @torch.no_grad()
    def widen_group(self, trainer: Trainer, name: str, n: int) -> dict[str, Any]:
        model, opt = trainer.model, trainer.optimizer
        group = find_group(model, name)
        old = group.width
        sources = torch.randint(old, (n,), generator=self.generator)
        replicate(model, group, sources, opt)
        copy_of = torch.cat([torch.arange(old), sources])      # channel j is a copy of channel copy_of[j]
        copies = torch.bincount(copy_of, minlength=old)         # copies of each source, itself included
        modules = dict(model.named_modules())
        for reader in group.consumers:
            module = modules[reader]
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self._split_columns(_weight(module), copy_of, copies, opt)
        return {"sources": int(torch.unique(sources).numel()), "max_copies": int(copies.max())}

    def _split_columns(self, weight: torch.Tensor, copy_of: torch.Tensor, copies: torch.Tensor,
                       opt: torch.optim.Optimizer) -> None:
        """Each copy's column gets 1/|copies| of its source's, times (1 + ε) with ε summing to 0 over the
        copies; the momentum of the columns is split alike, so the copies move the function as one."""
        view = (1, -1, *([1] * (weight.dim() - 2)))
        share = copies[copy_of].to(torch.float32).view(view)
        noise = torch.randn(tuple(weight.shape), generator=self.generator) * self.settings.noise
        per_source = torch.zeros(weight.shape[0], len(copies), *weight.shape[2:]).index_add_(1, copy_of, noise)
        noise -= (per_source / copies.to(torch.float32).view(view)).index_select(1, copy_of)
        weight.mul_(((1 + noise) / share).to(weight))
        state = opt.state.get(weight, {})
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == weight.shape:
                state[key] = value / share.to(value)

    def summary_fields(self) -> dict[str, Any]:
        return {"noise": self.settings.noise}


# -- helpers ----------------------------------------------------------------------------------------


def group_widths(genotype: Genotype) -> dict[str, int]:
    return {g.name: g.width for g in groups_of_genotype(genotype)}


def norms_after(model: nn.Module) -> dict[str, str]:
    """Conv name -> the BatchNorm that normalises its output."""
    return {conv: norm for g in channel_groups(model) for conv, norm in zip(g.producers, g.norms)}


@torch.no_grad()
def _scale_running_stats(norm: nn.Module, factor: float) -> None:
    """Running mean × c, running variance × c²: the statistics of inputs that were scaled by c."""
    mean, var = getattr(norm, "running_mean", None), getattr(norm, "running_var", None)
    if isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor):
        mean.mul_(factor)
        var.mul_(factor * factor)


def _rms(weight: torch.Tensor) -> float:
    return float(weight.detach().float().pow(2).mean().sqrt())


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor), f"{type(module).__name__} has no weight tensor"
    return weight


def fill_to_macs(genotype: Genotype, target_macs: float, input_shape: tuple[int, int, int]) -> Genotype:
    """The seed scaled uniformly to the most MACs not above the target (``uniform:<seed>``'s network),
    then topped up channel by channel (:func:`top_up`): whole channels of a thin seed would otherwise
    leave up to ~15% of the target unused."""
    return top_up(match_macs(genotype, target_macs, input_shape), group_widths(genotype), target_macs, input_shape)


def top_up(genotype: Genotype, reference: dict[str, int], target_macs: float,
           input_shape: tuple[int, int, int]) -> Genotype:
    """``genotype`` with one channel at a time added to the group narrowest relative to ``reference``
    (the seed's widths), while the MACs stay within ``target_macs``: a uniform widening to within
    one channel per group."""
    while True:
        groups = sorted(groups_of_genotype(genotype), key=lambda g: (g.width / reference[g.name], g.width))
        for group in groups:
            candidate = resized_genotype(genotype, group, torch.arange(group.width), 1)
            if measure_cost(candidate, input_shape).macs <= target_macs:
                genotype = candidate
                break
        else:
            return genotype


def rule_target_macs(budget_flops: float) -> float:
    """The engine's size rule for this budget (what ``grow`` grows to)."""
    from growth.plan import target_macs

    return target_macs(GrowConfig(budget_flops=budget_flops))


# -- the methods ------------------------------------------------------------------------------------


@register_method("vt")
def vt(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[TrainConfig, VarianceTransferController]:
    opts = method_options(options.extra, "vt", tuple(f.name for f in dataclasses.fields(VTSettings)))
    settings = VTSettings(**opts)
    settings.validate()
    seed = seed or DEFAULT_SEED
    shape = options.extra.get("input_shape")
    if shape is None:
        raise ConfigError("vt sizes its start and final networks for the data's input shape: run it in grow bench")
    genotype = get_genotype(seed, num_classes=options.extra.get("num_classes", 10), in_chans=shape[0])
    target = options.target_macs or rule_target_macs(base.budget_flops)
    final = fill_to_macs(genotype, target, shape)
    start = uniform_genotype(final, settings.start_width_frac)
    config = dataclasses.replace(base, seed=seed, optimizer="sgd", genotype=genotype_to_dict(start),
                                 eval_every_frac=settings.grow_until_frac / settings.steps)
    return config, VarianceTransferController(target, final, settings)


@register_method("net2net")
def net2net(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[TrainConfig, Net2NetController]:
    opts = method_options(options.extra, "net2net", tuple(f.name for f in dataclasses.fields(Net2NetSettings)))
    grow_defaults = GrowConfig(budget_flops=base.budget_flops)
    settings = Net2NetSettings(**{"steps": grow_defaults.growth_steps, "grow_until_frac": grow_defaults.grow_until_frac,
                                  "min_growth": grow_defaults.min_growth, **opts})
    settings.validate()
    target = options.target_macs or rule_target_macs(base.budget_flops)
    config = dataclasses.replace(base, seed=seed or DEFAULT_SEED, optimizer="sgd", genotype=None,
                                 eval_every_frac=settings.grow_until_frac / settings.steps)
    return config, Net2NetController(target, settings)


__all__ = ["Net2NetController", "Net2NetSettings", "UniformGrowthController", "VTSettings",
           "VarianceTransferController", "entry_births", "subnetwork_rates"]
