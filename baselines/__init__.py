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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from growth.config import TrainConfig
    from growth.trainer import Controller

    #: A method: ``fn(base_config, arg, options) -> (config, controller | None)``.
    Method = Callable[..., tuple[TrainConfig, Controller | None]]

_M = TypeVar("_M", bound="Method")

_METHODS: dict[str, Method] = {}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    arg: str | None = None

    def __str__(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"


@dataclass
class MethodOptions:
    """What a method may need beyond the base config."""

    target_macs: float | None = None      # size target for uniform scaling and pruning (MACs)
    extra: dict[str, Any] = field(default_factory=dict)


def register_method(name: str) -> Callable[[_M], _M]:
    """Decorator: ``fn(base_config, arg, options) -> (config, controller | None)``."""

    def wrap(fn: _M) -> _M:
        _METHODS[name] = fn
        return fn

    return wrap


def list_methods() -> list[str]:
    """The registered method names."""
    _load_all()
    return sorted(_METHODS)


def parse_method(text: str) -> MethodSpec:
    """``"fixed:resnet20"`` -> ``MethodSpec("fixed", "resnet20")``; ``timm:x`` means ``fixed:timm:x``."""
    text = text.strip()
    if text.startswith("timm:"):
        return MethodSpec("fixed", text)
    name, _, arg = text.partition(":")
    _load_all()
    if name not in _METHODS:
        raise ValueError(f"unknown method {text!r}; methods: {', '.join(sorted(_METHODS))}")
    if name in ("fixed", "uniform", "width") and not arg:
        raise ValueError(f"method {name} needs a seed, e.g. {name}:resnet20")
    if name == "width":
        from .fixed import split_width_arg

        split_width_arg(arg)
    return MethodSpec(name, arg or None)


DEFAULT_FRONTIER_MULTS = (1.0, 1.25, 1.5, 1.75, 2.0)   # width x1 .. x2, i.e. MACs x1 .. ~x4


def expand_methods(texts: list[str], frontier_mults: tuple[float, ...] = DEFAULT_FRONTIER_MULTS) -> list[str]:
    """Method specs with every ``frontier:<seed>`` replaced by its ``width:<seed>@<mult>`` cells.

    >>> expand_methods(["grow", "frontier:resnet20-thin"], (1.0, 1.5))
    ['grow', 'width:resnet20-thin@1', 'width:resnet20-thin@1.5']
    """
    out: list[str] = []
    for text in texts:
        name, _, seed = text.strip().partition(":")
        if name == "frontier":
            if not seed:
                raise ValueError("method frontier needs a seed, e.g. frontier:resnet20-thin")
            out += [f"width:{seed}@{m:g}" for m in frontier_mults]
        else:
            out.append(text.strip())
    return out


def configure(spec: MethodSpec, base: TrainConfig,
              options: MethodOptions | None = None) -> tuple[TrainConfig, Controller | None]:
    """The config and controller that method ``spec`` trains with, from a base config."""
    _load_all()
    return _METHODS[spec.name](base, spec.arg, options or MethodOptions())


def _load_all() -> None:
    # Importing the modules registers their methods; done lazily so that `grow --help` stays fast.
    import importlib

    for module in ("fixed", "grow_method", "scs", "sss", "slimming", "dessilbi_prune"):
        importlib.import_module(f"baselines.{module}")
