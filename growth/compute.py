"""Compute accounting: FLOPs of an architecture, the training-FLOP budget and its ledger.

Units, always named: FLOPs count multiply and add separately (``FlopCounterMode``'s convention);
MACs = FLOPs / 2. Training one sample costs ``3 x forward FLOPs`` (forward + backward ≈ 3 forwards).

Example:
    >>> parse_budget("2.5e16"), parse_budget("500T")
    (2.5e+16, 500000000000000.0)
    >>> ledger = Ledger(budget_flops=1e9)
    >>> ledger.charge(4e8); ledger.fraction_spent
    0.4
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from search_spaces import Genotype

TRAIN_FLOPS_PER_FORWARD_FLOP = 3

# No exa suffix: "2e" would read as 2e18, a typo for an exponent turned into a huge budget.
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}


_EXAMPLES = {"FLOPs": "2e17, 2.5e16, 500T or 1P", "MACs": "4e6, 2.5M or 1G"}
_UNIT_WORDS = {"FLOPs": "FLOPs?|flops?", "MACs": "MACs?|macs?"}


def parse_amount(text: str | float, unit: str = "FLOPs", what: str = "") -> float:
    """Parse a positive number of ``unit`` (``FLOPs`` or ``MACs``): ``2e17``, ``2.5e16``, ``500T``, ``1P``,
    ``3G`` (SI suffixes, any case; the unit may follow: ``5TFLOPs``, ``4M MACs``).

    Raises ``ValueError`` (one line, starting with ``what`` if given) that says what is wrong: unreadable,
    not a number, infinite (also a number beyond the largest float, ``1e400``), negative or zero.

    >>> parse_amount("4M MACs", "MACs")
    4000000.0
    >>> parse_amount("-5", "MACs")
    Traceback (most recent call last):
    ValueError: '-5' is negative: expected a positive number of MACs
    """
    raw = str(text).strip()
    subject = f"{what} {raw!r}" if what else repr(raw)
    match = re.fullmatch(r"([+-]?)([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?|(?i:infinity|inf|nan))\s*([kKmMgGtTpP]?)"
                         rf"\s*(?:{_UNIT_WORDS[unit]})?", raw)
    if not match:
        raise ValueError(f"cannot read {subject}: give {unit} like {_EXAMPLES[unit]}")
    sign, number, suffix = match.groups()
    value = float(number) * _SUFFIX[suffix.lower()]
    if math.isnan(value):
        raise ValueError(f"{subject} is not a number: expected a positive number of {unit}")
    if math.isinf(value):
        beyond = "" if number.lower().startswith("inf") else f" (beyond the largest float, {sys.float_info.max:.3g})"
        raise ValueError(f"{subject} is infinite{beyond}: expected a finite number of {unit}")
    if sign == "-" and value != 0:
        raise ValueError(f"{subject} is negative: expected a positive number of {unit}")
    if value == 0:
        tiny = " (below the smallest float)" if any(d in "123456789" for d in re.split("[eE]", number)[0]) else ""
        raise ValueError(f"{subject} is zero{tiny}: expected a positive number of {unit}")
    return value


def parse_budget(text: str | float) -> float:
    """Parse a FLOP count: ``2e17``, ``2.5e16``, ``500T``, ``1P``, ``3G`` (SI suffixes, any case).

    Raises ``ValueError`` (one line, naming the budget and what is wrong) for zero, negative, non-finite or
    unparseable input.
    """
    return parse_amount(text, "FLOPs", what="budget")


@dataclass(frozen=True)
class ModelCost:
    """Size and per-sample cost of one architecture at one input size."""

    params: int
    forward_flops: int  # per sample

    @property
    def macs(self) -> int:
        return self.forward_flops // 2

    @property
    def train_flops_per_sample(self) -> int:
        return TRAIN_FLOPS_PER_FORWARD_FLOP * self.forward_flops

    def to_dict(self) -> dict[str, int]:
        return {"params": self.params, "forward_flops": self.forward_flops, "macs": self.macs}


_COST_CACHE: dict[tuple[str, tuple[int, ...]], ModelCost] = {}


def measure_cost(model: nn.Module | Genotype, input_shape: tuple[int, int, int]) -> ModelCost:
    """Params and forward FLOPs per sample, measured once per (architecture, input shape) and cached.

    Accepts a model or a genotype (to price a candidate architecture before building it).
    ``input_shape`` is ``(C, H, W)``. Counted on a fresh CPU build in eval mode, so the model's own
    device, mode and BatchNorm statistics are untouched.
    """
    import torch  # imported here, so that parsing a budget (the CLI) does not load torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from search_spaces import build_model, genotype_json

    genotype: Genotype | None = model if not isinstance(model, nn.Module) else getattr(model, "genotype", None)
    key = (genotype_json(genotype), tuple(input_shape)) if genotype is not None else None
    if key is not None and key in _COST_CACHE:
        return _COST_CACHE[key]
    if genotype is not None:
        # A fresh build draws its init from the global RNG: fork it, so that pricing an architecture
        # (or not, when the cost is cached) never changes what a run draws next (e.g. grown filters).
        with torch.random.fork_rng(devices=[]):
            probe = build_model(genotype)
    else:
        assert isinstance(model, nn.Module)  # a genotype is its own genotype, never None
        probe = model
    probe = probe.eval().float().cpu()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        probe(torch.zeros(1, *input_shape))
    cost = ModelCost(sum(p.numel() for p in probe.parameters()), int(counter.get_total_flops()))
    if key is not None:
        _COST_CACHE[key] = cost
    return cost


def count_cost(genotype: Genotype, input_shape: tuple[int, int, int]) -> ModelCost | None:
    """:func:`measure_cost`'s count for an architecture made only of convolutions and linear layers (every
    registered seed), counted by module hooks from the shapes of one forward pass with ``FlopCounterMode``'s
    conventions (a conv or linear layer's multiplies and adds; its bias, normalisation, activations, pooling
    and additions not counted). ``FlopCounterMode``, like any dispatch mode (the meta device's too), imports
    TorchDynamo at its first use: 3.5 s of `grow seeds`' 10 on this CPU, which this saves. None where the model
    holds a layer with weights of another kind (a timm reference): measure that one. Equal to
    :func:`measure_cost` for every registered seed (tests/test_compute.py)."""
    import torch
    from torch import nn

    from search_spaces import build_model

    counted = (nn.Conv2d, nn.Linear)
    free = (nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Flatten, nn.Identity,
            nn.Dropout)
    flops = 0

    def conv(module: nn.Conv2d, inputs: Any, out: torch.Tensor) -> None:
        nonlocal flops
        kh, kw = module.kernel_size
        flops += 2 * out.numel() * (module.in_channels // module.groups) * kh * kw

    def linear(module: nn.Linear, inputs: Any, out: torch.Tensor) -> None:
        nonlocal flops
        flops += 2 * out.numel() * module.in_features

    with torch.random.fork_rng(devices=[]):  # as measure_cost: pricing draws nothing from the run's stream
        probe = build_model(genotype).eval()
    for module in probe.modules():
        if isinstance(module, counted):
            module.register_forward_hook(conv if isinstance(module, nn.Conv2d) else linear)
        elif next(module.parameters(recurse=False), None) is not None and not isinstance(module, free):
            return None
    with torch.no_grad():
        probe(torch.zeros(1, *input_shape))
    return ModelCost(sum(p.numel() for p in probe.parameters()), flops)


@dataclass
class Ledger:
    """Training FLOPs spent against a budget. Evaluation FLOPs are recorded but never charged."""

    budget_flops: float
    spent_flops: float = 0.0
    eval_flops: float = 0.0
    samples: int = 0

    def charge(self, flops: float, samples: int = 0) -> None:
        self.spent_flops += flops
        self.samples += samples

    def record_eval(self, flops: float) -> None:
        self.eval_flops += flops

    @property
    def remaining_flops(self) -> float:
        return max(0.0, self.budget_flops - self.spent_flops)

    @property
    def fraction_spent(self) -> float:
        return min(1.0, self.spent_flops / self.budget_flops)

    def affordable_samples(self, flops_per_sample: float) -> int:
        """How many more samples at this cost fit in the budget (never overrunning it)."""
        return int(self.remaining_flops // flops_per_sample)

    def state_dict(self) -> dict[str, float]:
        return {"budget_flops": self.budget_flops, "spent_flops": self.spent_flops,
                "eval_flops": self.eval_flops, "samples": self.samples}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Ledger:
        return cls(**state)


def measure_train_rate(genotype: Genotype, input_shape: tuple[int, int, int], batch_size: int, device: str = "cpu",
                       steps: int = 5) -> float:
    """Training FLOPs per second of ``genotype`` on ``device``: a few SGD steps on random images, after two
    untimed ones; one device sync at the end (the probe behind ``grow plan``'s ETA)."""
    import time

    import torch

    from search_spaces import build_model

    from .device import resolve_device

    target = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        model = build_model(genotype).to(target).train()
        images = torch.randn(batch_size, *input_shape, device=target)
        labels = torch.randint(0, genotype.num_classes, (batch_size,), device=target)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    def wait() -> None:  # the device has done what was queued
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        elif target.type == "mps":
            torch.mps.synchronize()

    for _ in range(2):
        step()
    wait()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wait()
    elapsed = time.perf_counter() - start
    return steps * batch_size * measure_cost(genotype, input_shape).train_flops_per_sample / max(elapsed, 1e-9)
