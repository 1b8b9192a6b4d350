"""A timm-style registry of seed architectures and of the families that build them.

Seeds are registered as functions returning a genotype; :func:`create_model` builds the module.
Names accept hyphens or underscores (``resnet20-thin`` == ``resnet20_thin``); ``timm:<name>`` asks
for a timm backbone as a reference.

The registry imports no family: each family module (``resnet``, ``vgg``, ``timm_ref``) imports the
registry and registers itself (its seeds with :func:`register_model`, its builder and genotype reader
with :func:`register_builder`, a ``prefix:`` namespace with :func:`register_namespace`). The package
``search_spaces`` hands the registry a loader (:func:`add_family_loader`) that imports the shipped
families before the first lookup, so the arrows point one way only: families -> registry. The
registry (like ``genotype`` and ``errors``) does not import torch at module level.

Example:
    >>> import search_spaces
    >>> "resnet20-thin" in search_spaces.list_seeds()
    True
    >>> model = search_spaces.create_model("resnet20-thin", num_classes=10)
    >>> model.genotype.compact()
    [[4, 4, 4, 4], [8, 8, 8, 8], [16, 16, 16, 16]]
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Callable

from .errors import GrowthError

if TYPE_CHECKING:
    from torch import nn

    from .genotype import Genotype

_SEEDS: dict[str, Callable[..., Genotype]] = {}
_BUILDERS: dict[type, Callable[[Any], nn.Module]] = {}           # genotype class -> builder
_EXTRACTORS: dict[type, Callable[[Any], Genotype]] = {}          # module class -> genotype reader
_NAMESPACES: dict[str, Callable[..., Genotype]] = {}             # "timm" -> resolver of "timm:<name>"
_PENDING_LOADERS: list[Callable[[], None]] = []


class UnknownSeedError(GrowthError, KeyError):
    """Raised for a seed name that is not registered; the message names the closest ones."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register_model(fn: Callable[..., Genotype]) -> Callable[..., Genotype]:
    """Decorator: register ``fn`` (returning a genotype) under its function name."""
    _SEEDS[_key(fn.__name__)] = fn
    return fn


def register_builder(genotype_type: type, build: Callable[[Any], nn.Module], *,
                     module_type: type | None = None, extract: Callable[[Any], Genotype] | None = None) -> None:
    """A family registers how to build its genotypes and, optionally, how to read one back from a module."""
    _BUILDERS[genotype_type] = build
    if module_type is not None and extract is not None:
        _EXTRACTORS[module_type] = extract


def register_namespace(prefix: str, resolve: Callable[..., Genotype]) -> None:
    """Names ``<prefix>:<rest>`` resolve to ``resolve(rest, num_classes=..., in_chans=...)``.

    ``resolve`` raises ``KeyError`` (its message naming the closest names) for an unknown ``rest``.
    """
    _NAMESPACES[prefix] = resolve


def add_family_loader(load: Callable[[], None]) -> None:
    """Run ``load()`` (which imports family modules, which register themselves) before the next lookup."""
    _PENDING_LOADERS.append(load)


def _load_families() -> None:
    while _PENDING_LOADERS:
        load = _PENDING_LOADERS.pop(0)
        try:
            load()
        except BaseException:
            _PENDING_LOADERS.insert(0, load)
            raise


def list_seeds() -> list[str]:
    """Registered seed names, as users type them (hyphenated)."""
    _load_families()
    return sorted(name.replace("_", "-") for name in _SEEDS)


def get_genotype(name: str, *, num_classes: int = 10, in_chans: int = 3) -> Genotype:
    """The genotype of seed ``name`` (or ``timm:<name>``) for the given classes and channels."""
    _load_families()
    prefix, sep, rest = name.partition(":")
    resolve = _NAMESPACES.get(prefix) if sep else None
    if resolve is not None:
        try:
            return resolve(rest, num_classes=num_classes, in_chans=in_chans)
        except KeyError as err:
            raise UnknownSeedError(str(err.args[0])) from None
    fn = _SEEDS.get(_key(name))
    if fn is None:
        close = difflib.get_close_matches(_key(name), list(_SEEDS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(c.replace('_', '-') for c in close)}?" if close else ""
        raise UnknownSeedError(f"unknown seed {name!r}{hint} (see `grow seeds`)")
    return fn(num_classes=num_classes, in_chans=in_chans)


def build_model(genotype: Genotype) -> nn.Module:
    """Turn a genotype into a freshly initialised module (``module.genotype`` is set)."""
    _load_families()
    for klass in type(genotype).__mro__:
        if klass in _BUILDERS:
            return _BUILDERS[klass](genotype)
    raise TypeError(f"not a genotype: {genotype!r}")


def create_model(name: str, *, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    """Build seed ``name`` (see :func:`list_seeds`) or ``timm:<name>``."""
    return build_model(get_genotype(name, num_classes=num_classes, in_chans=in_chans))


def extract_genotype(model: nn.Module) -> Genotype:
    """Read a model's architecture back from its modules (timm references return their genotype)."""
    _load_families()
    for klass in type(model).__mro__:
        if klass in _EXTRACTORS:
            return _EXTRACTORS[klass](model)
    return model.genotype
