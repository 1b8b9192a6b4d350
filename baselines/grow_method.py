"""``grow``: the engine itself, as one method of the benchmark (see growth.controller)."""

from __future__ import annotations

import dataclasses

from growth.config import GrowConfig, TrainConfig

from . import MethodOptions, register_method


@register_method("grow")
def grow(base: TrainConfig, seed: str | None, options: MethodOptions):
    from growth.controller import GrowthController

    shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig)
              if f.name not in ("seed", "optimizer", "lr", "weight_decay", "schedule", "genotype",
                                "eval_every_frac", "decay_start_frac", "lam", "nu", "kappa")}
    config = GrowConfig(**shared, seed=seed or "resnet20-thin", **options.extra.get("grow", {}))
    return config, GrowthController(config)
