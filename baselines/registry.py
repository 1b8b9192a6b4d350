"""The method registry: method specs, options, ``register_method`` and the look-ups.

Each method module (``fixed``, ``grow_method``, ``scs``, ...) imports this module and registers its
methods; this module imports none of them. The package ``baselines`` hands the registry a loader
(:func:`add_method_loader`) that imports the shipped method modules before the first look-up, so
the arrows point one way only: method modules -> registry.

Example:
    >>> split_width_arg("resnet20-thin@1.5")
    ('resnet20-thin', 1.5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from growth.config import ConfigError
from search_spaces.registry import PendingLoaders

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


_LOADERS = PendingLoaders()


def add_method_loader(load: Callable[[], None]) -> None:
    """Run ``load()`` (which imports method modules, which register themselves) before the next look-up."""
    _LOADERS.add(load)


def _load_all() -> None:
    _LOADERS.run()


def list_methods() -> list[str]:
    """The registered method names."""
    _load_all()
    return sorted(_METHODS)


#: How the methods that take an argument are written (the rest take an optional seed: ``grow:resnet8-thin``).
_FORMS = {"fixed": "fixed:<seed>", "uniform": "uniform:<seed>", "width": "width:<seed>@<mult>"}


def method_forms() -> list[str]:
    """Every way to name a method in ``--methods``: the registered methods (with their argument where one is
    needed) and the forms that stand for them, ``frontier:<seed>`` and ``timm:<model>``."""
    _load_all()
    return sorted([*(_FORMS.get(name, name) for name in _METHODS), "frontier:<seed>", "timm:<model>"])


def parse_method(text: str) -> MethodSpec:
    """``"fixed:resnet20"`` -> ``MethodSpec("fixed", "resnet20")``; ``timm:x`` means ``fixed:timm:x``.

    The method must be registered and its seed (``timm:<model>``: the timm model) must exist, else a one-line
    ``ValueError`` naming the closest names; what the method makes of its seed is checked when it runs.
    """
    text = text.strip()
    if text.startswith("timm:"):
        check_seed(text, text)
        return MethodSpec("fixed", text)
    name, _, arg = text.partition(":")
    _load_all()
    if name not in _METHODS:
        raise ValueError(f"unknown method {text!r}; methods: {', '.join(method_forms())}")
    if name in ("fixed", "uniform", "width") and not arg:
        raise ValueError(f"method {name} needs a seed, e.g. {_FORMS[name].replace('<seed>', 'resnet20')}")
    if arg:
        check_seed(split_width_arg(arg)[0] if name == "width" else arg, text)
    return MethodSpec(name, arg or None)


def check_seed(seed: str, method: str) -> None:
    """A ``ValueError`` (one line) unless ``seed`` is a registered seed or a timm model (``timm:<model>``,
    looked up in timm's registry: no network); ``method`` is named in the message."""
    from search_spaces import UnknownSeedError, get_genotype

    try:
        get_genotype(seed)
    except UnknownSeedError as err:
        raise ValueError(f"method {method!r}: {err}") from None


def split_width_arg(arg: str) -> tuple[str, float]:
    """``"resnet20-thin@1.5"`` -> ``("resnet20-thin", 1.5)``; one line on anything else."""
    seed, sep, mult = arg.rpartition("@")
    try:
        value = float(mult)
    except ValueError:
        value = float("nan")
    if not sep or not seed or not value > 0 or value == float("inf"):
        raise ConfigError(f"width:<seed>@<multiplier> needs a positive multiplier, got width:{arg}")
    return seed, value


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
            check_seed(seed, text.strip())
            out += [f"width:{seed}@{m:g}" for m in frontier_mults]
        else:
            out.append(text.strip())
    return out


def configure(spec: MethodSpec, base: TrainConfig,
              options: MethodOptions | None = None) -> tuple[TrainConfig, Controller | None]:
    """The config and controller that method ``spec`` trains with, from a base config."""
    _load_all()
    return _METHODS[spec.name](base, spec.arg, options or MethodOptions())
