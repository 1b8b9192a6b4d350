"""CIFAR VGG with BatchNorm: the genotype, the module and the ``vgg`` family, all in this one file.

Module names: ``stages.S.I.conv|bn`` and ``fc``; a 2x2 max-pool follows every stage, then global
average pooling and one linear classifier (the common CIFAR VGG-16-BN: 14.7M params, 313M MACs).

:class:`VGGFamily` (registered as the ``vgg`` family): every conv is a channel group of its own, key
``("conv", s, i)``, named ``stageS.convI`` (1-based); deepening appends a conv + BN + ReLU whose conv
is a Dirac kernel and whose BN is the identity in eval mode (in train mode the new BN normalises with
the batch's statistics, so there the function changes until the layer adapts); no block is removable.

Example:
    >>> import torch
    >>> model = VGG(VGGGenotype([[8], [16]]))
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> VGG_FAMILY.deepened(model.genotype, 1).compact(), VGG_FAMILY.removable_blocks(model.genotype)
    ([[8], [16, 16]], [])
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from .family import Family, GroupKey
from .genotype import Genotype
from .layers import ConvBN, init_convs
from .registry import register_family, register_model

__all__ = ["VGG", "VGGFamily", "VGGGenotype", "VGG_FAMILY"]


@dataclass
class VGGGenotype(Genotype):
    """A CIFAR VGG with BatchNorm: conv widths per stage, a 2x2 max-pool after each stage."""

    stages: list[list[int]]
    in_chans: int = 3
    num_classes: int = 10
    family: str = "vgg"

    def compact(self) -> list[list[int]]:
        return [list(s) for s in self.stages]


class VGG(nn.Module):
    def __init__(self, genotype: VGGGenotype):
        super().__init__()
        self.genotype = genotype
        stages, prev = [], genotype.in_chans
        for widths in genotype.stages:
            layers = []
            for width in widths:
                layers.append(ConvBN(prev, width))
                prev = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(prev, genotype.num_classes)
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            for layer in cast(nn.Sequential, stage):
                x = F.relu(layer(x))
            # ceil_mode keeps odd sizes (e.g. 28x28 inputs) from shrinking to zero
            x = F.max_pool2d(x, 2, ceil_mode=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def extract_vgg_genotype(model: VGG) -> VGGGenotype:
    stages = [[cast(ConvBN, layer).conv.out_channels for layer in cast(nn.Sequential, stage)]
              for stage in model.stages]
    first = cast(ConvBN, cast(nn.Sequential, model.stages[0])[0]).conv
    return VGGGenotype(stages, first.in_channels, model.fc.out_features)


class VGGFamily(Family[VGGGenotype]):
    """The ``vgg`` family (see the module docstring)."""

    name = "vgg"
    genotype_type = VGGGenotype
    module_type = VGG

    def build(self, genotype: VGGGenotype) -> VGG:
        return VGG(genotype)

    def extract(self, model: nn.Module) -> VGGGenotype:
        return extract_vgg_genotype(cast(VGG, model))

    def graph(self, g: VGGGenotype) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_node("input", op="input", width=g.in_chans)
        x = "input"
        for s, widths in enumerate(g.stages):
            for i in range(len(widths)):
                name = f"stages.{s}.{i}.conv"
                graph.add_node(name, op="conv", norm=f"stages.{s}.{i}.bn", key=("conv", s, i))
                graph.add_edge(x, name)
                x = name
        graph.add_node("fc", op="linear")
        graph.add_edge(x, "fc")
        return graph

    def group_width(self, genotype: VGGGenotype, key: GroupKey) -> int:
        return genotype.stages[key[1]][key[2]]

    def group_name(self, key: GroupKey) -> str:
        return f"stage{key[1] + 1}.conv{key[2] + 1}"

    def resized(self, genotype: VGGGenotype, key: GroupKey, keep: Sequence[int], n_new: int) -> VGGGenotype:
        if key[0] != "conv":
            raise KeyError(f"not a vgg channel group: {key!r}")
        g = copy.deepcopy(genotype)
        g.stages[key[1]][key[2]] = len(keep) + n_new
        return g

    def scaled(self, genotype: VGGGenotype, multiplier: float) -> VGGGenotype:
        g = copy.deepcopy(genotype)
        g.stages = [[max(1, round(w * multiplier)) for w in stage] for stage in g.stages]
        return g

    def num_stages(self, genotype: VGGGenotype) -> int:
        return len(genotype.stages)

    def stage_depth(self, genotype: VGGGenotype, stage: int) -> int:
        return len(genotype.stages[stage])

    def deepened(self, genotype: VGGGenotype, stage: int) -> VGGGenotype:
        self._check_stage(genotype, stage)
        g = copy.deepcopy(genotype)
        g.stages[stage].append(g.stages[stage][-1])
        return g

    def block_name(self, stage: int, block: int) -> str:
        return f"stages.{stage}.{block}"

    def make_identity(self, block: nn.Module) -> None:
        layer = cast(ConvBN, block)
        nn.init.dirac_(layer.conv.weight)
        # running_var = 1 - eps makes the eval-mode normalisation exactly x / 1.
        running_var = cast(torch.Tensor, layer.bn.running_var)
        running_var.fill_(1.0 - layer.bn.eps)


VGG_FAMILY = register_family(VGGFamily())


_VGG16 = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


@register_model
def vgg16(**kwargs: Any) -> VGGGenotype:
    """CIFAR VGG-16 with BatchNorm (13 convs, 64..512 filters)."""
    return VGGGenotype([list(s) for s in _VGG16], **kwargs)


@register_model
def vgg16_thin(**kwargs: Any) -> VGGGenotype:
    """VGG-16 layout with 16 filters in every conv: the DessiLBI paper's VGG growing seed."""
    return VGGGenotype([[16] * len(s) for s in _VGG16], **kwargs)
