"""``scs``: Structured Continuous Sparsification growth (Yuan, Savarese & Maire, ICLR 2021).

The run trains a ResNet *supernet* in which every channel of every coupled channel group and every
removable residual block has a mask score ``s``; each step trains a sub-network sampled from the
scores, and at the end of the search the components with ``s > 0`` are cut out physically and
fine-tuned. Everything is charged to the one training-FLOP budget; each step is charged for the
sampled sub-network only.

**Search space** (``scs`` or ``scs:<seed>``). The supernet is a registered ResNet seed, default
``resnet32`` (widths 16/32/64, 5 blocks per stage); ``options.extra["scs"]["space"]`` may give a
genotype dict instead. It is trained through ``config.genotype``.

**Sparse seed.** In each coupled channel group (``growth.graph``: a stage's stem/shortcut + every
block's last conv is one group, each block's inner conv another) the first
``round(seed_width_frac * width)`` channels (default 1/4: 4/8/16 of 16/32/64, likewise the inner
widths) and the first ``seed_blocks`` (3) blocks of each stage are on, i.e. resnet20-thin. On
components start at ``s = +s0``, off ones at ``s = -s0``, ``s0 = 2``: at β = 1 an off component is
sampled 12% of the time (``σ(-2)``), so the supernet is explored from the first step while the
sampled network stays close to the seed. One score per channel of a group, shared by all its
producers (a stage's channels are one unit); one per residual block, except the downsampling first
block of stages 2+, which is always on.

**Gates.** Every training forward draws ``q ~ Bernoulli(σ(βs))`` (one draw per step, from the
controller's own checkpointed ``torch.Generator`` on the training device). Forward hooks multiply
the output of each BatchNorm of a group by the group's channel gates (and the parameter-free
zero-padding shortcut of a stage by the stage's gates, so a channel that is off is exactly zero and
cutting it out later changes nothing); a block's residual branch is multiplied by its block gate at
its last BatchNorm, so an off block is the identity. Gradient to ``s``: **straight-through** — the
forward uses the binary ``q`` (so what is charged is exactly what ran), the backward uses
``dσ(βs)/ds``. In eval mode the gates are the deterministic architecture that would be extracted
now (``s > 0``), so validation accuracy during the search is that of the current architecture.

**Temperature.** ``β = final_beta ** (spent / (search_frac * budget))``: 1 at the start, 200 at the
end of the search, rising geometrically with the budget spent (continuous sparsification's
``β ×= 200^(1/(epochs-1))`` per epoch, here per budget fraction); updated in ``after_step``.

**Loss and budget.** ``task + λ₁ c Σσ(βs_channels) + λ₂ c Σσ(βs_blocks)`` with the budget factor
``c = clip(E[MACs] / target - 1, -1, 1)``, ``E[MACs]`` the expected MACs of the sampled network under
``σ(βs)`` (exact: gates are independent, so every conv's expected cost is the product of its groups'
expected widths and its block's probability). Under the target ``c < 0`` and the penalty favours
growth; over it, it prunes; ``|c|`` shrinks as the expected size approaches the target (the paper's
budget-aware λ ∝ Δ(size)). ``target`` is ``options.target_macs`` (a benchmark passes the grown
network's), else the space's widths at the seed's depth (``resnet20`` for the default space).
λ₁ = λ₂ = ``"auto"``: calibrated at the start so that, at full budget pressure (``|c| = 1``) and
β = 1, the penalty alone moves an off score from ``-s0`` to 0 within ``W`` steps, ``W`` the larger of
``grow_window`` (10%) of the search's estimated steps (priced at the target's cost) — after that the
temperature has begun to freeze the scores — and 5 momentum time constants ``5 / (1 - μ)`` (a
shorter window makes the momentum-lagged budget loop overshoot, on a short run to the whole
supernet): ``λ = (2 s0 + 2 sinh s0)(1 - μ) / (lr_s · W)``. This ties the pressure to the run's
length, so the budget acts on a 1-minute CPU run and on a long GPU run alike; the task gradient
(straight-through, per step) decides *which* components win. Mask scores have their own SGD, as
in continuous sparsification's code: lr ``mask_lr`` (default the weights' peak lr, held constant,
no warm-up), momentum 0.9, no Nesterov, no weight decay.

**Extraction.** At the evaluation at ``search_frac`` (default 0.5) of the budget
(``eval_every_frac`` is adjusted to divide it): hooks are removed, each group keeps its channels with
``s > 0`` (the highest-scoring one if none) via ``growth.operators.prune``, and blocks with ``s <= 0``
are removed with ``remove_block`` (stage 1 keeps its best block if none is on). The network is then
exactly the eval-mode gated supernet. It is fine-tuned for the rest of the budget: the lr stays at
its peak through the search, then decays by cosine (``decay_start_frac = search_frac``). From then on
each step is charged the model's normal cost. An ``scs_extract`` line goes to ``growth.jsonl``
(``scs_search`` lines at the evaluations before it).

Example:
    >>> from growth.config import TrainConfig
    >>> from baselines import MethodOptions
    >>> cfg, ctl = scs(TrainConfig(), None, MethodOptions(extra={"input_shape": (3, 32, 32),
    ...                                                        "num_classes": 10}))
    >>> cfg.seed, cfg.decay_start_frac, round(ctl.target_macs / 1e6, 1)
    ('resnet32', 0.5, 40.6)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import nn

from growth.compute import measure_cost
from growth.config import ConfigError, TrainConfig
from growth.graph import groups_of_genotype
from growth.trainer import Controller
from search_spaces import (
    FamilyError,
    Genotype,
    family_of,
    genotype_from_dict,
    genotype_of,
    genotype_to_dict,
    get_genotype,
)

from .pruning import eval_every_dividing
from .registry import MethodOptions, register_method

if TYPE_CHECKING:
    from growth.trainer import Trainer


# ----------------------------------------------------------------------------------------- settings


@dataclass
class SCSSettings:
    """The method's knobs (``options.extra["scs"]``); see the module docstring for their roles."""

    search_frac: float = 0.5          # share of the budget spent searching; the rest fine-tunes
    s0: float = 2.0                   # initial |score|: +s0 on (seed), -s0 off
    final_beta: float = 200.0         # temperature at the end of the search (from 1)
    lam: float | str = "auto"         # λ₁ (channel scores): a number or "auto"
    lam_blocks: float | str = "auto"  # λ₂ (block scores): a number or "auto"
    grow_window: float = 0.1          # "auto" λ: share of the search for an off score to reach 0
    mask_lr: float | None = None      # mask-score SGD lr; None: the weights' peak lr
    mask_momentum: float = 0.9
    seed_width_frac: float = 0.25     # seed width of each group, as a share of its width in the space
    seed_blocks: int = 3              # blocks on per stage in the seed
    space: dict | None = None         # explicit supernet genotype (overrides the seed name)

    def validate(self) -> None:
        if not 0 < self.search_frac <= 1:
            raise ConfigError(f"scs search_frac must be in (0, 1], got {self.search_frac}")
        if not self.s0 > 0 or not self.final_beta >= 1:
            raise ConfigError("scs needs s0 > 0 and final_beta >= 1")
        for name in ("lam", "lam_blocks"):
            value = getattr(self, name)
            if value != "auto" and not float(value) >= 0:
                raise ConfigError(f"scs {name} must be 'auto' or >= 0, got {value!r}")
        if not 0 <= self.mask_momentum < 1:
            raise ConfigError(f"scs mask_momentum must be in [0, 1), got {self.mask_momentum}")
        if not 0 < self.grow_window <= 1 or not 0 < self.seed_width_frac <= 1 or self.seed_blocks < 1:
            raise ConfigError("scs needs grow_window, seed_width_frac in (0, 1] and seed_blocks >= 1")


def _seed_depth_genotype(space: Genotype, seed_blocks: int) -> Genotype:
    """The space's widths at the seed's depth (resnet20 for the resnet32 space): the default target."""
    family, g = family_of(space), space
    for s, b in reversed(family.removable_blocks(space)):
        if b >= seed_blocks:
            g = family.without_block(g, s, b)
    return g


@register_method("scs")
def scs(base: TrainConfig, arg: str | None, options: MethodOptions) -> tuple[TrainConfig, SCSController]:
    settings = SCSSettings(**options.extra.get("scs", {}))
    settings.validate()
    try:
        shape = tuple(options.extra["input_shape"])
        num_classes = int(options.extra["num_classes"])
    except KeyError:
        raise ConfigError("scs needs options.extra input_shape and num_classes "
                          "(grow bench sets them)") from None
    name = arg or "resnet32"
    if settings.space is not None:
        space = genotype_from_dict(settings.space)
    else:
        space = get_genotype(name, num_classes=num_classes, in_chans=shape[0])
    try:  # every step prices its sampled sub-network: the family must count FLOPs analytically
        family_of(space).forward_flops(space, shape)
    except FamilyError as err:
        raise ConfigError(f"scs cannot search {name!r}: {err}") from None
    if space.in_chans != shape[0] or space.num_classes != num_classes:
        raise ConfigError("the scs space does not match the data's channels / classes")
    target = options.target_macs
    if target is None:
        target = measure_cost(_seed_depth_genotype(space, settings.seed_blocks), shape).macs
    # The extraction happens at an evaluation: make the evaluations fall on the end of the search.
    config = dataclasses.replace(
        base, seed=name if settings.space is None else base.seed, genotype=genotype_to_dict(space),
        optimizer="sgd", decay_start_frac=settings.search_frac,
        eval_every_frac=eval_every_dividing(settings.search_frac, base.eval_every_frac))
    return config, SCSController(space, settings, float(target))


# --------------------------------------------------------------------------------------- controller


class SCSController(Controller):
    """Mask scores, sampled gates, temperature, budget-aware penalty, then extraction (see module doc)."""

    def __init__(self, space: Genotype, settings: SCSSettings, target_macs: float):
        self.space, self.settings = space, settings
        self.target_macs = target_macs
        self.phase = "init"                   # "init" -> "search" -> "finetune"
        self.beta = 1.0
        # β on the device, for the gates: torch.compile guards a Python float's value (a recompile
        # every step as β rises); a tensor updated in place is an input of the compiled graph.
        self.beta_on_device = torch.tensor(1.0)
        self.lam_ch: float | None = None
        self.lam_blk: float | None = None
        self.extraction: dict | None = None   # the scs_extract event, once extracted
        self.last_factor = 0.0                # budget factor c of the latest step
        self.last_expected_macs = 0.0
        self._pending: dict | None = None     # a loaded state, applied at attach
        self._handles: list = []
        self.mask_opt: torch.optim.SGD | None = None  # the scores' optimizer, during the search only
        self._layout()

    # -- score layout --------------------------------------------------------------------------------

    def _layout(self) -> None:
        """One score per channel of each coupled group (concatenated) and per removable block."""
        self.family = family_of(self.space)
        self.groups = groups_of_genotype(self.space)
        self.offsets, offset = [], 0
        for group in self.groups:
            self.offsets.append(offset)
            offset += group.width
        self.n_channels = offset
        self.group_index = {g.name: i for i, g in enumerate(self.groups)}
        # Removable blocks (ResNet: all of stage 1's; of later stages all but the downsampling first block).
        self.blocks = self.family.removable_blocks(self.space)
        self.block_index = {sb: i for i, sb in enumerate(self.blocks)}
        by_stage: dict[int, list[int]] = {}
        for i, (s, _) in enumerate(self.blocks):
            by_stage.setdefault(s, []).append(i)
        # Stages whose blocks are all removable (ResNet: stage 1): extraction keeps one of them.
        self.free_stages = [idx for s, idx in by_stage.items()
                            if len(idx) == self.family.stage_depth(self.space, s)]

    def _initial_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        st = self.settings
        ch = torch.full((self.n_channels,), -st.s0)
        for group, offset in zip(self.groups, self.offsets):
            on = max(1, round(st.seed_width_frac * group.width))
            ch[offset:offset + on] = st.s0  # the first seed-width channels
        blk = torch.tensor([st.s0 if b < st.seed_blocks else -st.s0 for _, b in self.blocks])
        return ch, blk

    # -- checkpointed state --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        if self.phase == "init":
            return self._pending or {"phase": "init"}
        state = {"phase": self.phase, "settings": asdict(self.settings), "target_macs": self.target_macs,
                 "space": genotype_to_dict(self.space), "beta": self.beta, "lam_ch": self.lam_ch,
                 "lam_blk": self.lam_blk, "extraction": self.extraction,
                 "scores_ch": self.scores_ch.detach().cpu().clone(),
                 "scores_blk": self.scores_blk.detach().cpu().clone()}
        if self.phase == "search":
            assert self.mask_opt is not None, "the search phase has its optimizer from attach on"
            state["mask_opt"] = self.mask_opt.state_dict()
            state["gen"] = self.gen.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint's state; tensors go to the device at :meth:`attach`."""
        if state.get("phase", "init") == "init":
            return
        # A resumed run carries on with the settings it started with, whatever built this controller.
        self.settings = SCSSettings(**state["settings"])
        self.space = genotype_from_dict(state["space"])
        self.target_macs = state["target_macs"]
        self._layout()
        self._pending = state

    # -- set-up --------------------------------------------------------------------------------------

    def attach(self, trainer: Trainer) -> None:
        """Before the first step (and after a resume): scores on the device, gate hooks on the model."""
        device = trainer.device
        state, self._pending = self._pending, None
        if state is None:
            ch, blk = self._initial_scores()
            self.phase = "search"
        else:
            ch, blk = state["scores_ch"], state["scores_blk"]
            self.phase, self.beta = state["phase"], state["beta"]
            self.lam_ch, self.lam_blk, self.extraction = state["lam_ch"], state["lam_blk"], state["extraction"]
        self.beta_on_device = torch.tensor(self.beta, device=device)
        self.scores_ch = nn.Parameter(ch.to(device, torch.float32))
        self.scores_blk = nn.Parameter(blk.to(device, torch.float32))
        if self.phase != "search":
            return  # already extracted: the model is the plain fine-tuned network, no hooks
        st, cfg = self.settings, trainer.config  # the run's own config (a resumed run's saved one)
        self.mask_opt = torch.optim.SGD([self.scores_ch, self.scores_blk],
                                        lr=st.mask_lr if st.mask_lr is not None else cfg.lr,
                                        momentum=st.mask_momentum, nesterov=False, weight_decay=0.0)
        # Its own stream, separate from init/data/augmentation, so sampling never shifts the others.
        assert cfg.seed_value is not None, "Run.open draws the seed value"
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed_value + 2)
        self.group_id = torch.repeat_interleave(
            torch.arange(len(self.groups)), torch.tensor([g.width for g in self.groups])).to(device)
        if state is None:
            self._calibrate(trainer)
        else:
            self.mask_opt.load_state_dict(state["mask_opt"])  # lr and momentum included
            self.gen.set_state(state["gen"])
        self._register_hooks(trainer.model)

    def _calibrate(self, trainer: Trainer) -> None:
        """λ₁, λ₂: given, or "auto" (see the module docstring for the rule)."""
        st, cfg = self.settings, trainer.config
        lr = st.mask_lr if st.mask_lr is not None else cfg.lr
        steps = st.search_frac * cfg.budget_flops / (cfg.batch_size * 3 * 2 * self.target_macs)
        # Momentum answers a change of pressure after ~1/(1-μ) steps; a window shorter than a few of
        # those makes the budget loop overshoot (on short runs, to the whole supernet), so ≥ 5 of them.
        window = max(st.grow_window * steps, 5 / (1 - st.mask_momentum))
        travel = 2 * st.s0 + 2 * math.sinh(st.s0)  # ∫ ds / σ'(s) from -s0 to 0, at β = 1
        auto = travel * (1 - st.mask_momentum) / (lr * window)
        self.lam_ch = auto if st.lam == "auto" else float(st.lam)
        self.lam_blk = auto if st.lam_blocks == "auto" else float(st.lam_blocks)

    def _register_hooks(self, model: nn.Module) -> None:
        # a removable block's last BN ends its residual branch: it also carries the block's gate
        branch_of = {self.family.branch_norm(s, b): i for i, (s, b) in enumerate(self.blocks)}
        self._handles = [model.register_forward_pre_hook(self._draw_gates)]
        for gi, group in enumerate(self.groups):
            for name in group.norms:
                hook = self._gate_hook(gi, branch_of.get(name))
                self._handles.append(model.get_submodule(name).register_forward_hook(hook))
            for name in group.routes:  # a zero-padding shortcut writing the group's channels
                self._handles.append(model.get_submodule(name).register_forward_hook(self._gate_hook(gi, None)))

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- gates ---------------------------------------------------------------------------------------

    def _draw_gates(self, model: nn.Module, args: Any) -> None:
        """Model forward pre-hook: the gates of this forward (sampled in training, hard in eval)."""
        if model.training:
            m_ch = torch.sigmoid(self.beta_on_device * self.scores_ch)
            m_blk = torch.sigmoid(self.beta_on_device * self.scores_blk)
            probs = torch.cat([m_ch, m_blk]).detach()
            q = torch.bernoulli(probs, generator=self.gen)
            self.q_ch, self.q_blk = q[:self.n_channels], q[self.n_channels:]
            # Straight-through: the value is the binary sample, the gradient that of σ(βs).
            g_ch = self.q_ch + (m_ch - m_ch.detach())
            g_blk = self.q_blk + (m_blk - m_blk.detach())
        else:
            keep_ch, keep_blk = self._hard_masks()
            g_ch, g_blk = keep_ch.float(), keep_blk.float()
        self._gates = (torch.split(g_ch, [g.width for g in self.groups]), g_blk)

    def _gate_hook(self, group: int, block: int | None) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
            gates, blocks = self._gates
            gate = gates[group] if block is None else gates[group] * blocks[block]
            return out * gate.to(out.dtype).view(1, -1, 1, 1)
        return hook

    def _hard_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What extraction keeps: channels and blocks with s > 0; at least one channel per group,
        and a stage whose blocks are all removable (ResNet: stage 1) at least one block — the
        best-scoring one."""
        keep_ch = self.scores_ch.detach() > 0
        counts = torch.zeros(len(self.groups), device=keep_ch.device).index_add_(
            0, self.group_id, keep_ch.float())
        best = torch.stack([chunk.argmax() for chunk in torch.split(
            self.scores_ch.detach(), [g.width for g in self.groups])]) + torch.tensor(
            self.offsets, device=keep_ch.device)
        keep_ch[best[counts == 0]] = True
        keep_blk = self.scores_blk.detach() > 0
        for idx in self.free_stages:
            if not bool(keep_blk[idx].any()):
                keep_blk[idx[int(self.scores_blk.detach()[idx].argmax())]] = True
        return keep_ch, keep_blk

    # -- architectures of gate vectors ---------------------------------------------------------------

    def _group_sums(self, values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(self.groups), device=values.device, dtype=values.dtype).index_add_(
            0, self.group_id, values)

    def _flops_of(self, ch: torch.Tensor, blk: torch.Tensor, input_shape: Sequence[int]) -> float:
        """Forward FLOPs of gate vectors (0/1: exact, as ints; probabilities: the expectation)."""
        both = torch.cat([self._group_sums(ch.detach().float()), blk.detach().float()]).tolist()  # one sync
        binary = all(float(v).is_integer() for v in both)
        if binary:
            both = [int(v) for v in both]
        n = len(self.groups)
        return self.family.forward_flops(self.space, input_shape,
                                         widths={g.key: w for g, w in zip(self.groups, both[:n])},
                                         blocks_on=dict(zip(self.blocks, both[n:])))

    def architecture(self, keep_ch: torch.Tensor, keep_blk: torch.Tensor) -> Genotype:
        """The genotype of the sub-network with these channels and blocks on, as pruning makes it
        (the zero-padding shortcut's routing follows the kept channels; a sampled sub-network may
        leave a stage without blocks)."""
        keep_ch, keep_blk = keep_ch.detach().bool().cpu(), keep_blk.detach().bool().cpu()
        g = self.space
        for group, offset in zip(self.groups, self.offsets):  # each group by its original indices
            kept = torch.nonzero(keep_ch[offset:offset + group.width]).flatten().tolist()
            g = self.family.resized(g, group.key, kept, 0)
        for (s, b), on in reversed(list(zip(self.blocks, keep_blk.tolist()))):
            if not on:
                g = self.family.without_block(g, s, b)
        return g

    def sampled_genotype(self) -> Genotype:
        """The architecture of the latest training step's sampled sub-network."""
        return self.architecture(self.q_ch, self.q_blk)

    def hard_genotype(self) -> Genotype:
        """The architecture extraction would make now."""
        return self.architecture(*self._hard_masks())

    # -- the loop's hooks ----------------------------------------------------------------------------

    def extra_loss(self, trainer: Trainer) -> torch.Tensor | None:
        if self.phase != "search":
            return None
        m_ch = torch.sigmoid(self.beta_on_device * self.scores_ch)
        m_blk = torch.sigmoid(self.beta_on_device * self.scores_blk)
        expected = self._flops_of(m_ch, m_blk, trainer.input_shape) / 2
        self.last_expected_macs = expected
        self.last_factor = max(-1.0, min(1.0, expected / self.target_macs - 1.0))
        assert self.lam_ch is not None and self.lam_blk is not None, "λ is set at attach"
        return self.last_factor * (self.lam_ch * m_ch.sum() + self.lam_blk * m_blk.sum())

    def after_step(self, trainer: Trainer) -> None:
        if self.phase != "search":
            return
        assert self.mask_opt is not None, "the search phase has its optimizer from attach on"
        self.mask_opt.step()
        self.mask_opt.zero_grad(set_to_none=True)
        progress = min(1.0, trainer.ledger.fraction_spent / self.settings.search_frac)
        self.beta = self.settings.final_beta ** progress
        self.beta_on_device.fill_(self.beta)

    def step_train_flops_per_sample(self, trainer: Trainer) -> int | None:
        """3 x forward FLOPs of the sub-network this step sampled; None (the model's cost) after it."""
        if self.phase != "search":
            return None
        from growth.compute import TRAIN_FLOPS_PER_FORWARD_FLOP

        return TRAIN_FLOPS_PER_FORWARD_FLOP * int(self._flops_of(self.q_ch, self.q_blk, trainer.input_shape))

    def on_eval(self, trainer: Trainer, val_acc: float) -> None:
        if self.phase != "search":
            return
        ledger = trainer.ledger
        ending = ledger.affordable_samples(trainer.cost.train_flops_per_sample) < 2  # the loop's last eval
        if ledger.fraction_spent >= self.settings.search_frac - 1e-9 or ending:
            self._extract(trainer, val_acc)
            return
        keep_ch, keep_blk = self._hard_masks()
        trainer.log_event(
            "scs_search", beta=round(self.beta, 4), expected_macs=round(self.last_expected_macs),
            budget_factor=round(self.last_factor, 4),
            macs=int(self._flops_of(keep_ch, keep_blk, trainer.input_shape)) // 2,
            widths=self.hard_genotype().compact(), val_acc=val_acc)

    def _extract(self, trainer: Trainer, val_acc: float) -> None:
        """Cut the s > 0 sub-network out of the supernet; fine-tuning follows."""
        from growth.operators import prune, remove_block

        model, opt = trainer.model, trainer.optimizer
        keep_ch, keep_blk = self._hard_masks()
        expected = self.architecture(keep_ch, keep_blk)
        self._remove_hooks()
        keep_ch, keep_blk = keep_ch.cpu(), keep_blk.cpu()
        # Channels first (group names stay valid), then blocks from the back of each stage (indices too).
        for group, offset in zip(self.groups, self.offsets):
            keep = torch.nonzero(keep_ch[offset:offset + group.width]).flatten()
            if keep.numel() < group.width:
                prune(model, group.name, keep, opt)
        for s, b in reversed(self.blocks):
            if not bool(keep_blk[self.block_index[(s, b)]]):
                remove_block(model, s, b, opt)
        if genotype_of(model) != expected:  # pragma: no cover - a bug in the bookkeeping above
            raise RuntimeError(f"extraction made {genotype_of(model).compact()}, expected {expected.compact()}")
        if trainer.channels_last:
            # The layout a resumed run rebuilds the model in: pruning cannot tell the layout of a
            # 1-channel-input model and leaves some weights in the default one, which changes float
            # rounding; the Parameter objects (and so the optimizer's references) are kept.
            model.to(memory_format=torch.channels_last)
        self.phase = "finetune"
        self.mask_opt = None
        cost = trainer.cost
        self.extraction = trainer.log_event(
            "scs_extract", beta=round(self.beta, 4), widths=genotype_of(model).compact(), macs=cost.macs,
            params=cost.params, target_macs=self.target_macs, val_acc_before=val_acc)

    def summary(self) -> dict:
        return {"method": "scs", "scs_space": self.space.compact(), "scs_target_macs": self.target_macs,
                "scs_lambda": [self.lam_ch, self.lam_blk], "scs_search_frac": self.settings.search_frac,
                "scs_s0": self.settings.s0, "scs_final_beta": self.settings.final_beta,
                "scs_extraction": self.extraction}
