"""Architectures as data.

A *genotype* is a small JSON-serialisable description of a network: its family, the width of every
layer, the depth of every stage. A builder (see :mod:`search_spaces.resnet`, :mod:`search_spaces.vgg`,
:mod:`search_spaces.timm_ref`) turns it into an ``nn.Module``; growth and pruning edit the genotype and
copy weights across, so a checkpoint is always ``genotype.json`` + a ``state_dict``.

Example:
    >>> g = ResNetGenotype.uniform([4, 8, 16], blocks=[1, 1, 1])
    >>> genotype_from_dict(g.to_dict()) == g
    True
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Union


@dataclass
class ResNetStage:
    """One stage of a CIFAR ResNet.

    ``width`` is the stage's channel count: the stem (or the downsampling shortcut) and the last conv
    of every block write it, joined by the residual additions, so it changes as one unit.
    ``inner`` holds the width of each basic block's first conv (one entry per block).
    ``shortcut_src`` only matters for a parameter-free ("zeropad") downsampling shortcut: output
    channel ``j`` of the shortcut copies input channel ``shortcut_src[j]`` (``-1``: zeros), and
    channels past the end of the list are zeros. It makes widening and pruning exact: new channels of
    the previous stage are simply not listed, so they cannot leak into this stage.
    """

    width: int
    inner: list[int]
    shortcut_src: list[int] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.inner)


@dataclass
class ResNetGenotype:
    """A CIFAR-style ResNet of basic blocks (He et al. 2016, §4.2)."""

    stages: list[ResNetStage]
    shortcut: str = "zeropad"  # "zeropad" (option A, parameter-free) or "conv" (option B, 1x1 conv + BN)
    in_chans: int = 3
    num_classes: int = 10
    family: str = "resnet"

    @classmethod
    def uniform(cls, widths: list[int], blocks: list[int], *, shortcut: str = "zeropad",
                in_chans: int = 3, num_classes: int = 10) -> ResNetGenotype:
        """Stages of the given widths, every block's inner width equal to its stage's width."""
        stages, prev = [], widths[0]
        for width, depth in zip(widths, blocks):
            stages.append(ResNetStage(width, [width] * depth, list(range(min(prev, width)))))
            prev = width
        stages[0].shortcut_src = []  # stage 1 has no downsampling shortcut
        return cls(stages, shortcut, in_chans, num_classes)

    def compact(self) -> list[list[int]]:
        """Per stage: ``[stage width, inner width of block 1, block 2, ...]``."""
        return [[s.width, *s.inner] for s in self.stages]


@dataclass
class VGGGenotype:
    """A CIFAR VGG with BatchNorm: conv widths per stage, a 2x2 max-pool after each stage."""

    stages: list[list[int]]
    in_chans: int = 3
    num_classes: int = 10
    family: str = "vgg"

    def compact(self) -> list[list[int]]:
        return [list(s) for s in self.stages]


@dataclass
class TimmGenotype:
    """A timm backbone used as a fixed reference (not grown), adapted to small inputs."""

    name: str
    in_chans: int = 3
    num_classes: int = 10
    family: str = "timm"

    def compact(self) -> str:
        return self.name


Genotype = Union[ResNetGenotype, VGGGenotype, TimmGenotype]


def genotype_to_dict(genotype: Genotype) -> dict[str, Any]:
    return asdict(genotype)


def genotype_from_dict(data: dict[str, Any]) -> Genotype:
    """Inverse of :func:`genotype_to_dict`; raises ``ValueError`` on malformed input."""
    try:
        data = copy.deepcopy(dict(data))
        family = data.get("family")
        if family == "resnet":
            data["stages"] = [ResNetStage(**s) for s in data["stages"]]
            return ResNetGenotype(**data)
        if family == "vgg":
            return VGGGenotype(**data)
        if family == "timm":
            return TimmGenotype(**data)
    except (KeyError, TypeError) as err:
        raise ValueError(f"malformed genotype: {err}") from None
    raise ValueError(f"unknown genotype family {family!r}")


def genotype_json(genotype: Genotype) -> str:
    """Canonical JSON text (sorted keys): also used as a cache key."""
    return json.dumps(genotype_to_dict(genotype), sort_keys=True, separators=(",", ":"))


# Attach the dict helpers as methods so callers can write ``g.to_dict()``.
for _cls in (ResNetGenotype, VGGGenotype, TimmGenotype):
    _cls.to_dict = genotype_to_dict  # type: ignore[attr-defined]
