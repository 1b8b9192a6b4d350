"""growth: grow compact networks under a training-FLOP budget with DessiLBI.

Public API (imported lazily, so that ``grow --help`` does not pay for torch)::

    growth.DessiLBI, growth.dessilbi_param_groups      the optimizer   (growth/dessilbi.py)
    growth.channel_groups, growth.architecture_graph   channel graph   (growth/graph.py)
    growth.widen, growth.deepen, growth.prune          operators       (growth/operators.py)
    growth.TrainConfig, growth.GrowConfig              configuration   (growth/config.py)
    growth.parse_budget, growth.measure_cost           compute         (growth/compute.py)
    growth.load_dataset                                 data            (growth/data/)
    growth.Run, growth.train                           how every run starts (growth/run.py)
    growth.Controller, growth.Recorder                 the loop's extension points (growth/trainer.py)
    growth.grow, growth.GrowthController               the growth rule (growth/controller.py)
    growth.GrowthError                                 root of every error raised on purpose (ConfigError,
                                                       DataError, RunError, UnknownSeedError, UsageError);
                                                       defined in search_spaces/errors.py, the lowest layer

Example:
    >>> import growth, search_spaces
    >>> model = search_spaces.create_model("resnet8-thin")
    >>> [g.name for g in growth.channel_groups(model)][:2]
    ['stage1', 'stage1.block1.inner']
"""

from __future__ import annotations

import importlib
from typing import Any

from search_spaces.errors import GrowthError as GrowthError  # re-exported: the root error type

_EXPORTS = {
    "DessiLBI": "dessilbi", "dessilbi_param_groups": "dessilbi",
    "channel_groups": "graph", "architecture_graph": "graph", "ChannelGroup": "graph",
    "widen": "operators", "deepen": "operators", "prune": "operators", "remove_block": "operators",
    "TrainConfig": "config", "GrowConfig": "config",
    "parse_budget": "compute", "measure_cost": "compute", "Ledger": "compute",
    "load_dataset": "data",
    "Run": "run", "Controller": "trainer", "Recorder": "trainer", "train": "run",
    "grow": "controller", "GrowthController": "controller",
}

__all__ = sorted([*_EXPORTS, "GrowthError"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'growth' has no attribute {name!r}")
