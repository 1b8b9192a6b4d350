"""Run configuration: every setting of a training or growth run, in one dataclass each.

Kept free of torch so that the CLI can read defaults without importing it.

Example:
    >>> GrowConfig(budget_flops=2e13).check_every_frac
    0.1
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from search_spaces.errors import GrowthError


class ConfigError(GrowthError, ValueError):
    """Settings that cannot work; the message is one line."""


@dataclass
class TrainConfig:
    """Everything that defines a run. Saved to ``config.json`` and reloaded by ``--resume``."""

    seed: str = "resnet20-thin"          # registered seed name or timm:<name>
    genotype: dict | None = None         # an explicit architecture (overrides seed's widths)
    data: str = "sample"
    budget_flops: float = 2e13           # training FLOPs (3 x forward FLOPs x samples)
    subset: int | None = None            # keep only this many training images
    val_size: int | None = None          # default: 5,000 for CIFAR-sized train sets, else 10%
    batch_size: int = 128
    optimizer: str = "sgd"               # "sgd" or "dessilbi"
    lr: float = 0.1                      # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_frac: float = 0.05            # share of the budget spent warming up
    schedule: str = "cosine"             # decay: "cosine", "linear" or "constant"
    decay_start_frac: float = 0.0        # lr stays at its peak until this share, then decays to 0
    eval_every_frac: float = 0.1         # evaluate on the validation split every this share
    checkpoint_every_s: float = 120.0    # also checkpoint at least this often (wall time)
    seed_value: int | None = None        # None: drawn at start and recorded
    device: str = "auto"                 # "auto", "cpu", "cuda", "cuda:1", "mps"
    precision: str = "auto"              # "auto" (bf16 autocast on CUDA, fp32 elsewhere), "bf16", "fp32"
    channels_last: bool = True
    # DessiLBI (optimizer="dessilbi"); see growth.dessilbi
    kappa: float = 1.0
    nu: float = 100.0
    lam: float | str = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        """Raise :class:`ConfigError` (one line) for settings that cannot work."""
        if not (self.budget_flops > 0 and math.isfinite(self.budget_flops)):
            raise ConfigError(f"budget must be a positive number of FLOPs, got {self.budget_flops}")
        if self.batch_size < 2:
            raise ConfigError("batch size must be at least 2 (BatchNorm needs two samples)")
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ConfigError(f"unknown schedule {self.schedule!r} (cosine, linear or constant)")
        if self.optimizer not in ("sgd", "dessilbi"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r} (sgd or dessilbi)")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"unknown precision {self.precision!r} (auto, bf16 or fp32)")
        if not 0 < self.eval_every_frac <= 1:
            raise ConfigError("--eval-every must be a share of the budget in (0, 1]")
        if not 0 <= self.warmup_frac < 1:
            raise ConfigError("--warmup must be a share of the budget in [0, 1)")


# The budget -> size rule (growth.controller.target_macs): the MACs of the best fixed width of the
# thin ResNet-20 family at a training budget, best_macs = SIZE_REF_MACS * (budget / SIZE_REF_BUDGET)
# ** SIZE_EXPONENT, as fitted by scripts/fit_size_rule.py to the fixed-width sweeps on CIFAR-10
# (runs/recorded/bench-cifar10jpeg-3e12-frontier and -1e13, seed 0): at 1e13 the best width is the
# seed's (2.62M MACs, 73.06%; x1.25 width 72.26%, x1.5 71.23%), at 3e12 it is x0.75 (1.49M,
# 63.10% against the seed's 60.92%). Both optima lie at the small end of their sweeps, so both
# sizes are upper bounds; the exponent (0.47) is close to the fast-training recipes' (about 0.6).
SIZE_REF_BUDGET = 1e13
SIZE_REF_MACS = 2.62e6
SIZE_EXPONENT = 0.47


@dataclass
class GrowConfig(TrainConfig):
    """:class:`TrainConfig` plus the growth rule (see growth.controller); DessiLBI, one cosine schedule."""

    seed: str = "resnet20-thin"
    optimizer: str = "dessilbi"
    weight_decay: float = 1e-4
    lam: float | str = "auto"             # DessiLBI λ; "auto": one per layer, calibrated to the check interval
    target_macs: float | None = None      # final size; None: from the budget (size_ref_macs, size_exponent)
    size_ref_macs: float = SIZE_REF_MACS  # best fixed MACs at size_ref_budget (measured on CIFAR-10)
    size_ref_budget: float = SIZE_REF_BUDGET
    size_exponent: float = SIZE_EXPONENT  # best MACs grow like budget ** size_exponent
    min_growth: float = 1.25              # grow only to a target at least this multiple of the seed's MACs
    growth_steps: int = 4                 # widenings, evenly spaced in the budget, geometric in MACs
    grow_until_frac: float = 0.4          # the last growth step happens at this share of the budget
    allocation: str = "gamma"             # where: "gamma" (Γ entry rate), "uniform" (every group), "none"
    select_frac: float = 0.9              # widen the groups whose score is >= this share of the best
    max_step_factor: float = 2.0          # a group's width grows at most this much per step
    deepen: bool = False                  # also add blocks to selected stages (widening alone by default)
    max_blocks: int = 9                   # depth cap per stage

    def __post_init__(self) -> None:
        # Every growth step is a check and an evaluation; evaluations go on at that cadence.
        self.eval_every_frac = self.check_every_frac

    @property
    def check_every_frac(self) -> float:
        return self.grow_until_frac / max(1, self.growth_steps)  # validate() rejects 0 steps

    def validate(self) -> None:
        super().validate()
        if self.optimizer != "dessilbi":
            raise ConfigError("growth reads DessiLBI's Γ: --optimizer must be dessilbi")
        if self.seed.startswith("timm:"):
            raise ConfigError("timm backbones are fixed references: grow a registered seed (see `grow seeds`)")
        if self.allocation not in ("gamma", "uniform", "none"):
            raise ConfigError(f"unknown allocation {self.allocation!r} (gamma, uniform or none)")
        if self.growth_steps < 1:
            raise ConfigError(f"--growth-steps must be at least 1, got {self.growth_steps}")
        if not 0 < self.grow_until_frac < 1:
            raise ConfigError(f"--grow-until must be in (0, 1), got {self.grow_until_frac}")
        if not 0 < self.select_frac <= 1:
            raise ConfigError(f"--select-frac must be in (0, 1], got {self.select_frac}")
        if not self.max_step_factor > 1:
            raise ConfigError(f"--max-step-factor must be above 1, got {self.max_step_factor}")
        if self.target_macs is not None and not (self.target_macs > 0 and math.isfinite(self.target_macs)):
            raise ConfigError(f"--target-macs must be a positive number, got {self.target_macs}")
        if not (self.size_ref_macs > 0 and self.size_ref_budget > 0 and self.size_exponent >= 0):
            raise ConfigError("the size rule needs positive --size-ref-macs/--size-ref-budget, --size-exponent >= 0")
        if self.lam != "auto" and not float(self.lam) > 0:
            raise ConfigError(f"--lam must be positive or auto, got {self.lam}")
