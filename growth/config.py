"""Run configuration: every setting of a training or growth run, in one dataclass each.

Kept free of torch so that the CLI can read defaults without importing it.

Example:
    >>> GrowConfig(budget_flops=2e13).decay_start_frac
    0.75
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields


class ConfigError(ValueError):
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


@dataclass
class GrowConfig(TrainConfig):
    """:class:`TrainConfig` plus the growth rule; DessiLBI, constant lr until the final phase."""

    seed: str = "resnet20-thin"
    optimizer: str = "dessilbi"
    weight_decay: float = 1e-4
    lam: float | str = "auto"             # DessiLBI λ; "auto": calibrated to the check interval
    tau: float = 0.8                      # saturation ratio that triggers growth
    grow_min: int = 4                     # k: at least this many new channels
    grow_frac: float = 0.25               # g: or this share of the width, whichever is larger
    check_every_frac: float = 0.05        # a check every this share of the budget
    final_frac: float = 0.25              # last share: no growth, lr decays to 0
    min_final_epochs: float = 2.0         # the final phase must buy this many epochs of the grown net
    max_width_mult: float = 8.0           # width cap per group, as a multiple of its seed width
    max_blocks: int = 9                   # depth cap per stage
    deepen: bool = True

    def __post_init__(self) -> None:
        self.eval_every_frac = self.check_every_frac   # every check is an evaluation
        self.decay_start_frac = 1.0 - self.final_frac

    def validate(self) -> None:
        super().validate()
        if self.optimizer != "dessilbi":
            raise ConfigError("growth reads DessiLBI's Γ: --optimizer must be dessilbi")
        if self.seed.startswith("timm:"):
            raise ConfigError("timm backbones are fixed references: grow a registered seed (see `grow seeds`)")
        if not 0 < self.tau <= 1:
            raise ConfigError(f"--tau must be in (0, 1], got {self.tau}")
        if not 0 <= self.final_frac < 1:
            raise ConfigError(f"--final-phase must be in [0, 1), got {self.final_frac}")
        if not 0 < self.check_every_frac < 1:
            raise ConfigError(f"--check-every must be in (0, 1), got {self.check_every_frac}")
        if self.grow_min < 1 or self.grow_frac < 0:
            raise ConfigError("--grow-min must be >= 1 and --grow-frac >= 0")
        if self.lam != "auto" and not float(self.lam) > 0:
            raise ConfigError(f"--lam must be positive or auto, got {self.lam}")
