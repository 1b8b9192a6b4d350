"""timm backbones as fixed references, adapted to small (CIFAR-sized) inputs.

``timm:<name>`` builds ``timm.create_model(name)`` with the right ``num_classes``/``in_chans`` and
replaces the stem's first convolution by a 3x3 stride-1 one and its max-pool by the identity, the
usual adaptation for 32x32 images. timm is imported only when such a model is asked for.

The ``timm`` family (:class:`TimmFamily`) only builds: references are not grown, pruned or deepened,
so every other :class:`~search_spaces.family.Family` method raises ``FamilyError``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from torch import nn

from .family import Family
from .genotype import Genotype
from .registry import register_family, register_namespace


@dataclass
class TimmGenotype(Genotype):
    """A timm backbone used as a fixed reference (not grown), adapted to small inputs."""

    name: str
    in_chans: int = 3
    num_classes: int = 10
    family: str = "timm"

    def compact(self) -> str:
        return self.name


def check_timm_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise KeyError(f"unknown timm model {name!r}{hint}")


def build_timm(genotype: TimmGenotype) -> nn.Module:
    import timm

    check_timm_name(genotype.name)
    model = timm.create_model(genotype.name, pretrained=False, num_classes=genotype.num_classes,
                              in_chans=genotype.in_chans)
    name, first = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    model.set_submodule(name, nn.Conv2d(first.in_channels, first.out_channels, 3, 1, 1,
                                        bias=first.bias is not None))
    if isinstance(getattr(model, "maxpool", None), nn.MaxPool2d):
        model.maxpool = nn.Identity()
    setattr(model, "genotype", genotype)  # a plain attribute, as the families' own modules have
    return model


def timm_genotype(name: str, *, num_classes: int = 10, in_chans: int = 3) -> TimmGenotype:
    """The genotype of ``timm:<name>``; ``KeyError`` (naming the closest models) for a name timm lacks."""
    check_timm_name(name)
    return TimmGenotype(name, in_chans, num_classes)


class TimmFamily(Family[TimmGenotype]):
    """The ``timm`` family: build only."""

    name = "timm"
    genotype_type = TimmGenotype

    def build(self, genotype: TimmGenotype) -> nn.Module:
        return build_timm(genotype)


register_namespace("timm", timm_genotype)
TIMM = register_family(TimmFamily())
