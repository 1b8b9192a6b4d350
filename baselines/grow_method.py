"""``grow`` and its controls, on the same engine (see growth.controller).

    grow                  DessiLBI growth from resnet20-thin (or grow:<seed>)
    grow-uniform          the same schedule and sizes, every group widened alike, Γ not read
    grow-price            the same schedule, sizes and value-per-MAC rule as grow, with equal scores (Γ not read)
    dessilbi:<seed>       DessiLBI on the fixed seed, no growth (the optimizer without growth)
    scratch               the grown genotype of the same seed value, trained from scratch with SGD
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from growth.config import ConfigError, GrowConfig, TrainConfig

from .registry import MethodOptions, register_method

if TYPE_CHECKING:
    from growth.controller import GrowthController

DEFAULT_SEED = "resnet20-thin"
# What a growth run takes from the bench's base config; the optimizer settings are growth's own.
_SHARED = ("data", "budget_flops", "subset", "val_size", "batch_size", "momentum", "nesterov",
           "label_smoothing", "warmup_frac", "checkpoint_every_s", "seed_value", "device", "precision",
           "channels_last", "compile")


def _grow_config(base: TrainConfig, seed: str | None, options: MethodOptions, **overrides: Any) -> GrowConfig:
    shared = {name: getattr(base, name) for name in _SHARED}
    return GrowConfig(**shared, seed=seed or DEFAULT_SEED, **{**options.extra.get("grow", {}), **overrides})


@register_method("grow")
def grow(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[GrowConfig, GrowthController]:
    from growth.controller import GrowthController

    config = _grow_config(base, seed, options)
    return config, GrowthController(config)


@register_method("grow-uniform")
def grow_uniform(base: TrainConfig, seed: str | None,
                 options: MethodOptions) -> tuple[GrowConfig, GrowthController]:
    from growth.controller import GrowthController

    config = _grow_config(base, seed, options, allocation="uniform")
    return config, GrowthController(config)


@register_method("grow-price")
def grow_price(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[GrowConfig, GrowthController]:
    from growth.controller import GrowthController

    config = _grow_config(base, seed, options, allocation="price")
    return config, GrowthController(config)


@register_method("dessilbi")
def dessilbi(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[GrowConfig, GrowthController]:
    from growth.controller import GrowthController

    config = _grow_config(base, seed, options, allocation="none")
    return config, GrowthController(config)


@register_method("scratch")
def scratch(base: TrainConfig, seed: str | None, options: MethodOptions) -> tuple[TrainConfig, None]:
    genotype = options.extra.get("grown_genotype")
    if genotype is None:
        raise ConfigError("scratch trains the grown genotype: run the grow cell of this seed value first")
    return dataclasses.replace(base, seed=seed or DEFAULT_SEED, optimizer="sgd", genotype=genotype), None
