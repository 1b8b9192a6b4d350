"""Baselines that growth is measured against, all on the same data, trainer, ledger and run store.

A *method* turns a base :class:`~growth.config.TrainConfig` (data, budget, seed value, optimiser
settings) into the config it trains with and, optionally, a controller that plugs into the trainer
(penalties, pruning, gating; see ``growth.trainer.Controller``). Every phase a method has
(pre-training, search, fine-tuning) is charged to the one training-FLOP budget, and every method
writes the same ``summary.json`` as a growth run.

Method specs, as ``grow bench --methods`` takes them::

    grow                  DessiLBI growth from resnet20-thin (growth.controller)
    fixed:<seed>          SGD on a fixed architecture; fixed:timm:<name> or timm:<name> for references
    uniform:<seed>        the seed scaled uniformly in width to a MACs target
    width:<seed>@<mult>   the seed scaled uniformly in width by <mult>, SGD
    frontier:<seed>       shorthand for width:<seed>@m for several m (grow bench --frontier-mults)
    scs                   Structured Continuous Sparsification growth
    sss                   Sparse Structure Selection
    slimming              Network Slimming
    dessilbi-prune        train the full network with DessiLBI, keep supp(Γ), fine-tune

Example:
    >>> parse_method("uniform:resnet20")
    MethodSpec(name='uniform', arg='resnet20')
"""

from __future__ import annotations

import importlib

from .registry import (
    DEFAULT_FRONTIER_MULTS,
    MethodOptions,
    MethodSpec,
    add_method_loader,
    configure,
    expand_methods,
    list_methods,
    parse_method,
    register_method,
)

_METHOD_MODULES = ("fixed", "grow_method", "scs", "sss", "slimming", "dessilbi_prune", "literature_growth")


def _import_methods() -> None:
    # Importing the modules registers their methods; done lazily so that `grow --help` stays fast.
    for module in _METHOD_MODULES:
        importlib.import_module(f"{__name__}.{module}")


add_method_loader(_import_methods)

__all__ = ["DEFAULT_FRONTIER_MULTS", "MethodOptions", "MethodSpec", "add_method_loader", "configure",
           "expand_methods", "list_methods", "parse_method", "register_method"]
