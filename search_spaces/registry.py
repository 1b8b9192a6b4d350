"""A timm-style registry of seed architectures.

Seeds are registered as functions returning a genotype; :func:`create_model` builds the module.
Names accept hyphens or underscores (``resnet20-thin`` == ``resnet20_thin``); ``timm:<name>`` asks
for a timm backbone as a reference.

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
from typing import Callable

from torch import nn

from .genotype import Genotype, ResNetGenotype, TimmGenotype, VGGGenotype

_SEEDS: dict[str, Callable[..., Genotype]] = {}


class UnknownSeedError(KeyError):
    """Raised for a seed name that is not registered; the message names the closest ones."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register_model(fn: Callable[..., Genotype]) -> Callable[..., Genotype]:
    """Decorator: register ``fn`` (returning a genotype) under its function name."""
    _SEEDS[_key(fn.__name__)] = fn
    return fn


def list_seeds() -> list[str]:
    """Registered seed names, as users type them (hyphenated)."""
    return sorted(name.replace("_", "-") for name in _SEEDS)


def get_genotype(name: str, *, num_classes: int = 10, in_chans: int = 3) -> Genotype:
    """The genotype of seed ``name`` (or ``timm:<name>``) for the given classes and channels."""
    if name.startswith("timm:"):
        from .timm_ref import check_timm_name

        try:
            check_timm_name(name[5:])
        except KeyError as err:
            raise UnknownSeedError(str(err.args[0])) from None
        return TimmGenotype(name[5:], in_chans, num_classes)
    fn = _SEEDS.get(_key(name))
    if fn is None:
        close = difflib.get_close_matches(_key(name), list(_SEEDS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(c.replace('_', '-') for c in close)}?" if close else ""
        raise UnknownSeedError(f"unknown seed {name!r}{hint} (see `grow seeds`)")
    return fn(num_classes=num_classes, in_chans=in_chans)


def build_model(genotype: Genotype) -> nn.Module:
    """Turn a genotype into a freshly initialised module (``module.genotype`` is set)."""
    if isinstance(genotype, ResNetGenotype):
        from .resnet import CifarResNet

        return CifarResNet(genotype)
    if isinstance(genotype, VGGGenotype):
        from .vgg import VGG

        return VGG(genotype)
    if isinstance(genotype, TimmGenotype):
        from .timm_ref import build_timm

        return build_timm(genotype)
    raise TypeError(f"not a genotype: {genotype!r}")


def create_model(name: str, *, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    """Build seed ``name`` (see :func:`list_seeds`) or ``timm:<name>``."""
    return build_model(get_genotype(name, num_classes=num_classes, in_chans=in_chans))


def extract_genotype(model: nn.Module) -> Genotype:
    """Read a model's architecture back from its modules (timm references return their genotype)."""
    from .resnet import CifarResNet, extract_resnet_genotype
    from .vgg import VGG, extract_vgg_genotype

    if isinstance(model, CifarResNet):
        return extract_resnet_genotype(model)
    if isinstance(model, VGG):
        return extract_vgg_genotype(model)
    return model.genotype
