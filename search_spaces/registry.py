"""A timm-style registry of seed architectures and of the families that build them.

Seeds are registered as functions returning a genotype; :func:`create_model` builds the module.
Names accept hyphens or underscores (``resnet20-thin`` == ``resnet20_thin``); ``timm:<name>`` asks
for a timm backbone as a reference.

The registry imports no family: each family module (``resnet``, ``vgg``, ``timm_ref``) imports the
registry and registers itself (its seeds with :func:`register_model`, its family object, a
:class:`~search_spaces.family.Family`, with :func:`register_family`, a ``prefix:`` namespace with
:func:`register_namespace`). :func:`family_of` finds the family of a genotype or a built model. The
package ``search_spaces`` hands the registry a loader (:func:`add_family_loader`) that imports the
shipped families before the first lookup, so the arrows point one way only: families -> registry.
The registry (like ``genotype``, ``family`` and ``errors``) does not import torch at module level.

Example:
    >>> import search_spaces
    >>> "resnet20-thin" in search_spaces.list_seeds()
    True
    >>> model = search_spaces.create_model("resnet20-thin", num_classes=10)
    >>> model.genotype.compact(), family_of(model).name
    ([[4, 4, 4, 4], [8, 8, 8, 8], [16, 16, 16, 16]], 'resnet')
"""

from __future__ import annotations

import copy
import difflib
from typing import TYPE_CHECKING, Any, Callable, TypeVar, cast

from .errors import GrowthError

if TYPE_CHECKING:
    from torch import nn

    from .family import Family
    from .genotype import Genotype

_SEEDS: dict[str, Callable[..., Genotype]] = {}
_BY_GENOTYPE: dict[type, Family[Any]] = {}                        # genotype class -> family
_BY_MODULE: dict[type, Family[Any]] = {}                          # built module class -> family
_BY_NAME: dict[str, Family[Any]] = {}                             # genotype's ``family`` field -> family
F = TypeVar("F", bound="Family[Any]")
_NAMESPACES: dict[str, Callable[..., Genotype]] = {}             # "timm" -> resolver of "timm:<name>"


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


def register_family(family: F) -> F:
    """A family module registers its family object (see :class:`~search_spaces.family.Family`)."""
    _BY_GENOTYPE[family.genotype_type] = family
    _BY_NAME[family.name] = family
    if family.module_type is not None:
        _BY_MODULE[family.module_type] = family
    return family


def list_families() -> list[Family[Any]]:
    """The registered family objects, in registration order."""
    _load_families()
    return list(_BY_NAME.values())


def _lookup(table: dict[type, Family[Any]], obj: object) -> Family[Any] | None:
    for klass in type(obj).__mro__:
        if klass in table:
            return table[klass]
    return None


def genotype_of(model: nn.Module) -> Genotype:
    """The genotype of a built model: :func:`build_model` sets ``model.genotype`` and the growth
    operators keep it current (``nn.Module`` attributes are untyped, hence this accessor)."""
    genotype = getattr(model, "genotype", None)
    if genotype is None:
        raise TypeError(f"{type(model).__name__} was not built from a genotype (search_spaces.build_model)")
    return cast("Genotype", genotype)


def family_of(genotype_or_model: Any) -> Family[Any]:
    """The family of a genotype or of a built model (by type, through the MRO; a module of no
    registered class, e.g. a timm reference, by its ``genotype``). ``TypeError`` for anything else."""
    _load_families()
    family = _lookup(_BY_GENOTYPE, genotype_or_model) or _lookup(_BY_MODULE, genotype_or_model)
    if family is None:
        genotype = getattr(genotype_or_model, "genotype", None)
        family = _lookup(_BY_GENOTYPE, genotype) if genotype is not None else None
    if family is None:
        raise TypeError(f"not a genotype or a model of a registered family: {type(genotype_or_model).__name__}")
    return family


def register_namespace(prefix: str, resolve: Callable[..., Genotype]) -> None:
    """Names ``<prefix>:<rest>`` resolve to ``resolve(rest, num_classes=..., in_chans=...)``.

    ``resolve`` raises ``KeyError`` (its message naming the closest names) for an unknown ``rest``.
    """
    _NAMESPACES[prefix] = resolve


class PendingLoaders:
    """Loaders to run once, before a registry's next look-up: each imports modules that register
    themselves, so that the registry itself imports none of them. A loader that fails stays pending.
    (Also the method registry's, in ``baselines.registry``.)"""

    def __init__(self) -> None:
        self._pending: list[Callable[[], None]] = []

    def add(self, load: Callable[[], None]) -> None:
        self._pending.append(load)

    def run(self) -> None:
        while self._pending:
            load = self._pending.pop(0)
            try:
                load()
            except BaseException:
                self._pending.insert(0, load)
                raise


_LOADERS = PendingLoaders()


def add_family_loader(load: Callable[[], None]) -> None:
    """Run ``load()`` (which imports family modules, which register themselves) before the next lookup."""
    _LOADERS.add(load)


def _load_families() -> None:
    _LOADERS.run()


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
    family = _lookup(_BY_GENOTYPE, genotype)
    if family is None:
        raise TypeError(f"not a genotype: {genotype!r}")
    return family.build(genotype)


def create_model(name: str, *, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    """Build seed ``name`` (see :func:`list_seeds`) or ``timm:<name>``."""
    return build_model(get_genotype(name, num_classes=num_classes, in_chans=in_chans))


def extract_genotype(model: nn.Module) -> Genotype:
    """Read a model's architecture back from its modules (timm references return their genotype)."""
    _load_families()
    family = _lookup(_BY_MODULE, model)
    genotype: Genotype = family.extract(model) if family is not None else getattr(model, "genotype")
    return genotype


def genotype_from_dict(data: dict[str, Any]) -> Genotype:
    """Inverse of :func:`~search_spaces.genotype.genotype_to_dict`, by the registered family named in
    ``data["family"]``; raises ``ValueError`` on malformed input."""
    _load_families()
    try:
        data = copy.deepcopy(dict(data))
        family = data.get("family")
        if family in _BY_NAME:
            return _BY_NAME[family].genotype_type.from_dict(data)
    except (KeyError, TypeError) as err:
        raise ValueError(f"malformed genotype: {err}") from None
    raise ValueError(f"unknown genotype family {family!r}")
