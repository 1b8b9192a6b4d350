"""Run configuration: every setting of a training or growth run, in one dataclass each.

Kept free of torch so that the CLI can read defaults without importing it.

Example:
    >>> GrowConfig(budget_flops=2e13).check_every_frac
    0.1
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from search_spaces.errors import GrowthError


class ConfigError(GrowthError, ValueError):
    """Settings that cannot work; the message is one line."""


@dataclass(frozen=True)
class Bounds:
    """The numbers a setting may take, ``low``/``high`` None for no bound: checked when the option is
    parsed (growth.cli) and by the config's ``validate()`` (settings from config.json or an override).

    >>> 0.5 in Bounds(0, 1, high_closed=False), 1 in Bounds(0, 1, high_closed=False)
    (True, False)
    >>> str(Bounds(0, 1, high_closed=False)), str(Bounds(0, low_closed=False))
    ('in [0, 1)', '> 0')
    """

    low: float | None = None
    high: float | None = None
    low_closed: bool = True
    high_closed: bool = True

    def __contains__(self, value: float) -> bool:
        below = self.low is not None and (value < self.low or (value == self.low and not self.low_closed))
        above = self.high is not None and (value > self.high or (value == self.high and not self.high_closed))
        return not (below or above)

    def __str__(self) -> str:
        low, high = (f"{v:g}" if isinstance(v, float) else str(v) for v in (self.low, self.high))
        if self.high is None:
            return f"{'>=' if self.low_closed else '>'} {low}"
        return f"in {'[' if self.low_closed else '('}{low}, {high}{']' if self.high_closed else ')'}"


# Bounds used by several settings: a share of the budget, a positive number, a count of at least one.
_SHARE = Bounds(0, 1, high_closed=False)
_POSITIVE = Bounds(0, low_closed=False)
_AT_LEAST_ONE = Bounds(1)


def option(default: Any, help: str, *, flag: str | None = None, parse: str | None = None,
           choices: tuple[str, ...] | None = None, bounds: Bounds | None = None, group: str | None = None,
           cli: bool = True) -> Any:
    """A config field that carries its command-line option: ``help``, the flag (default
    ``--field-name``), how to parse it (``"budget"`` for FLOPs, ``"macs"``, ``"count"``, ``"lam"``; else from
    the field's type), its choices or numeric bounds and its help group. ``cli=False`` keeps a field off the command
    line. The ``grow`` parser is generated from these (growth.cli), and ``validate()`` checks choices and
    bounds from them, so a setting and its range are declared once.
    """
    return field(default=default, metadata={"help": help, "flag": flag, "parse": parse, "choices": choices,
                                            "bounds": bounds, "group": group, "cli": cli})


def option_metadata(cls: type) -> dict[str, dict[str, Any]]:
    """The option metadata of every field of config class ``cls`` (:func:`option`); a subclass that
    overrides a field's default without metadata keeps the parent's."""
    found = {}
    for f in fields(cls):
        inherited = (getattr(base, "__dataclass_fields__")[f.name].metadata for base in cls.__mro__[1:]
                     if f.name in getattr(base, "__dataclass_fields__", {}))
        found[f.name] = dict(f.metadata) or next((dict(m) for m in inherited), {})
    return found


def flag_of(name: str, meta: dict[str, Any]) -> str:
    """The command-line flag of setting ``name``."""
    return meta.get("flag") or "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """Everything that defines a run. Saved to ``config.json`` and reloaded by ``--resume``."""

    seed: str = option("resnet20-thin", "seed architecture (see `grow seeds`)")
    genotype: dict | None = option(None, "an explicit architecture (overrides the seed's widths)", cli=False)
    data: str = option("sample", "sample (shipped, offline), cifar10, cifar100, fashion-mnist, or an "
                       "ImageFolder directory")
    budget_flops: float = option(2e13, "training FLOPs (3 x forward FLOPs x samples): 2e17, 500T, 1P; "
                                 "required unless --resume", flag="--budget", parse="budget", bounds=_POSITIVE)
    subset: int | None = option(None, "use only this many training images", parse="count",
                                bounds=_AT_LEAST_ONE)
    val_size: int | None = option(None, "validation images carved from train (default: 5,000 for "
                                  "CIFAR-sized train sets, else 10%%)", parse="count")
    batch_size: int = option(128, "images per step (BatchNorm needs 2)", parse="count", bounds=Bounds(2, 2**31 - 1))
    optimizer: str = option("sgd", "sgd or dessilbi", choices=("sgd", "dessilbi"), cli=False)
    # No network trains at lr > 1e6; an lr that merely diverges is stopped by the trainer.
    lr: float = option(0.1, "peak learning rate", bounds=Bounds(0, 1e6, low_closed=False))
    momentum: float = option(0.9, "SGD momentum", bounds=Bounds(0, 1, high_closed=False))
    nesterov: bool = option(True, "Nesterov momentum")
    weight_decay: float = option(5e-4, "L2 weight decay (not on BatchNorm and biases)",
                                 bounds=Bounds(0, 1))
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy", bounds=_SHARE)
    warmup_frac: float = option(0.05, "share of the budget spent warming up", flag="--warmup",
                               bounds=_SHARE)
    schedule: str = option("cosine", "learning-rate decay", choices=("cosine", "linear", "constant"))
    decay_start_frac: float = option(0.0, "the learning rate stays at its peak until this share, then decays "
                                     "to 0", flag="--decay-start", bounds=_SHARE)
    eval_every_frac: float = option(0.1, "evaluate on the validation split every this share of the budget",
                                    flag="--eval-every", bounds=Bounds(0, 1, low_closed=False))
    checkpoint_every_s: float = option(120.0, "also checkpoint at least this often (seconds of wall time)",
                                       flag="--checkpoint-every", bounds=Bounds(0))
    tensorboard: bool = option(True, "also write TensorBoard event files into the run directory (`tensorboard "
                               "--logdir runs`): loss, accuracy, lr, MACs, images/s, widths and Γ at each "
                               "evaluation and growth check, growth events as text")
    seed_value: int | None = option(None, "random seed (drawn and recorded if not given); makes a CPU run "
                                    "deterministic", bounds=Bounds(0, 2**63 - 2))
    device: str = option("auto", "auto, cpu, cuda, cuda:N, mps")
    precision: str = option("auto", "auto: bf16 autocast on a GPU that computes in bf16, fp32 elsewhere",
                            choices=("auto", "bf16", "fp32"))
    channels_last: bool = option(True, "channels-last memory format")
    compile: bool | None = option(None, "compile the training step with torch.compile (again after every growth "
                                  "event; the compile time is reported apart from the training time). Default: "
                                  "on a CPU with 2+ threads when the budget buys 4,000+ steps, where it was "
                                  "measured to pay; off elsewhere")
    # DessiLBI (optimizer="dessilbi"); see growth.dessilbi
    kappa: float = option(1.0, "DessiLBI κ", bounds=_POSITIVE, group="DessiLBI")
    nu: float = option(100.0, "DessiLBI ν (coupling of W and Γ)", bounds=_POSITIVE, group="DessiLBI")
    lam: float | str = option(1.0, "DessiLBI λ, or auto (one per layer, calibrated to the check interval)",
                              parse="lam", bounds=_POSITIVE, group="DessiLBI")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """The config saved by :meth:`to_dict`; unknown settings are refused, not dropped.

        >>> TrainConfig.from_dict({"lr": 0.05, "momentum": 0.8}).lr
        0.05
        >>> TrainConfig.from_dict({"lr": 0.05, "tau": 0.8})
        Traceback (most recent call last):
        growth.config.ConfigError: unknown setting tau for TrainConfig (written by another version?)
        """
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown setting{'s' * (len(unknown) > 1)} {', '.join(unknown)} for {cls.__name__} "
                              "(written by another version?)")
        return cls(**data)

    def validate(self) -> None:
        """Raise :class:`ConfigError` (one line) for settings that cannot work: every number finite and
        within its option's bounds, every choice known, and the combinations that cannot work.

        >>> TrainConfig(momentum=1.5).validate()
        Traceback (most recent call last):
        growth.config.ConfigError: --momentum must be a number in [0, 1), got 1.5
        """
        for name, meta in option_metadata(type(self)).items():
            value, flag = getattr(self, name), flag_of(name, meta)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{flag} must be a finite number, got {value}")
            if meta.get("choices") and value not in meta["choices"]:
                raise ConfigError(f"unknown {flag[2:]} {value!r} ({', '.join(meta['choices'])})")
            bounds = meta.get("bounds")
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if bounds is not None and is_number and value not in bounds:
                raise ConfigError(f"{flag} must be a number {bounds}, got {value}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("Nesterov momentum needs a momentum above 0: with --momentum 0 give --no-nesterov")


# The budget -> size rule (growth.plan.target_macs): the MACs of the best fixed width of the
# thin ResNet-20 family at a training budget, best_macs = SIZE_REF_MACS * (budget / SIZE_REF_BUDGET)
# ** SIZE_EXPONENT, as fitted by scripts/fit_size_rule.py to the fixed-width sweeps on CIFAR-10 at three
# budgets (runs/recorded/bench-cifar10jpeg-3e12-frontier, -1e13, -3e13; each optimum bracketed, the
# parabola vertex in log MACs): 1.35M MACs at 3e12 (x0.75 width 63.10% against the seed's 60.92%),
# 2.78M at 1e13 (the seed 72.97 ± 0.49%, x0.75 71.00%, x1.25 72.26%), 4.66M at 3e13 (x1.25 78.14%,
# x1.5 78.05%, x1 77.14%). The exponent (0.54) is close to the fast-training recipes' (about 0.6).
# Runs recorded before the third budget was measured used 2.62M and 0.47 (3e13 target 4.39M, now 4.80M).
SIZE_REF_BUDGET = 1e13
SIZE_REF_MACS = 2.65e6
SIZE_EXPONENT = 0.54
# The measured range of that fit; above its top the rule is joined to a published compute point (growth.plan):
# WRN-28-10, 5.2 GMACs trained 200 epochs on CIFAR-10 = 3.2e17 FLOPs (96.0%, ALGORITHMS.md §8).
SIZE_FIT_MIN_BUDGET = 3e12
SIZE_FIT_MAX_BUDGET = 3e13
SIZE_ANCHOR_BUDGET = 3.2e17
SIZE_ANCHOR_MACS = 5.2e9
_GROWTH = "growth rule (see growth/controller.py)"


@dataclass
class GrowConfig(TrainConfig):
    """:class:`TrainConfig` plus the growth rule (see growth.controller); DessiLBI, one cosine schedule."""

    seed: str = option("resnet20-thin", "seed architecture to grow (see `grow seeds`)")
    optimizer: str = option("dessilbi", "growth reads DessiLBI's Γ", cli=False)
    eval_every_frac: float = option(0.1, "set from the growth steps", cli=False)
    lam: float | str = option("auto", "DessiLBI λ, or auto (one per layer, calibrated to the check interval)",
                              parse="lam", bounds=_POSITIVE, group="DessiLBI")
    target_macs: float | None = option(None, "final inference MACs (default: the best fixed width's MACs at "
                                       "this budget, from the size rule below)", parse="macs", bounds=_POSITIVE,
                                       group=_GROWTH)
    size_ref_macs: float = option(SIZE_REF_MACS, "size rule: best fixed MACs at --size-ref-budget (measured on "
                                  "CIFAR-10)", bounds=_POSITIVE, group=_GROWTH)
    size_ref_budget: float = option(SIZE_REF_BUDGET, "size rule: the budget of --size-ref-macs", parse="budget",
                                    bounds=_POSITIVE, group=_GROWTH)
    size_exponent: float = option(SIZE_EXPONENT, "size rule: best MACs grow like budget**exponent",
                                   bounds=Bounds(0), group=_GROWTH)
    size_fit_max_budget: float = option(SIZE_FIT_MAX_BUDGET, "size rule: the fit holds up to this budget, "
                                        "the top of its measured range", parse="budget", bounds=_POSITIVE,
                                        group=_GROWTH)
    size_anchor_budget: float = option(SIZE_ANCHOR_BUDGET, "size rule: above the fit, a power law joined to it "
                                       "through a published point, this budget ...", parse="budget",
                                       bounds=_POSITIVE, group=_GROWTH)
    size_anchor_macs: float = option(SIZE_ANCHOR_MACS, "... and these MACs (WRN-28-10: 5.2G for 200 CIFAR-10 "
                                     "epochs)", parse="macs", bounds=_POSITIVE, group=_GROWTH)
    min_growth: float = option(1.25, "grow only to a target at least this multiple of the seed's MACs",
                               bounds=_POSITIVE, group=_GROWTH)
    growth_steps: int = option(4, "number of growth events (at least; more where the target needs them), "
                               "geometric in MACs", parse="count", bounds=_AT_LEAST_ONE, group=_GROWTH)
    max_event_growth: float = option(2.0, "no growth event multiplies the MACs by more than this (large "
                                     "targets get more events)", bounds=Bounds(1, low_closed=False), group=_GROWTH)
    check_epochs: float = option(5.0, "a growth event comes after the network has trained this many epochs "
                                 "since the last, or --grow-until / events of the budget, whichever is less",
                                 bounds=_POSITIVE, group=_GROWTH)
    grow_until_frac: float = option(0.4, "share of the budget by which growth is done", flag="--grow-until",
                                    bounds=Bounds(0, 1, low_closed=False, high_closed=False), group=_GROWTH)
    allocation: str = option("gamma", "where to widen: gamma (Γ's occupancy weighs each group's value per MAC), "
                             "price (the same rule, equal weights), uniform (every group alike), none (no growth)",
                             choices=("gamma", "price", "uniform", "none"), group=_GROWTH)
    select_frac: float = option(0.25, "choose the groups scoring at least this share of the best score: they take "
                                "the step's channels first",
                                bounds=Bounds(0, 1, low_closed=False), group=_GROWTH)
    max_step_factor: float = option(2.0, "a group's width grows at most this much per step",
                                     bounds=Bounds(1, low_closed=False), group=_GROWTH)
    width_multiple: int | None = option(None, "from 16 channels on, grow in units of this many "
                                        "channels (default: 8 where the step runs in bf16 on a GPU, for its "
                                        "tensor cores; else 1)", parse="count", bounds=_AT_LEAST_ONE, group=_GROWTH)
    deepen: bool = option(False, "also add blocks to selected stages", group=_GROWTH)
    max_blocks: int = option(9, "depth cap per stage", parse="count", bounds=_AT_LEAST_ONE,
                            group=_GROWTH)

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
        if self.size_anchor_budget <= self.size_fit_max_budget:
            raise ConfigError(f"--size-anchor-budget ({self.size_anchor_budget:g}) must be above "
                              f"--size-fit-max-budget ({self.size_fit_max_budget:g}): the anchor extends the fit")
        if self.seed.startswith("timm:"):
            raise ConfigError("timm backbones are fixed references: grow a registered seed (see `grow seeds`)")
