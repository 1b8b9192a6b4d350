"""CIFAR VGG with BatchNorm, built from a :class:`VGGGenotype`.

Module names: ``stages.S.I.conv|bn`` and ``fc``; a 2x2 max-pool follows every stage, then global
average pooling and one linear classifier (the common CIFAR VGG-16-BN: 14.7M params, 313M MACs).

Example:
    >>> import torch
    >>> from search_spaces.genotype import VGGGenotype
    >>> model = VGG(VGGGenotype([[8], [16]]))
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .genotype import VGGGenotype
from .registry import register_builder, register_model
from .resnet import ConvBN, init_convs


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
            for layer in stage:
                x = F.relu(layer(x))
            # ceil_mode keeps odd sizes (e.g. 28x28 inputs) from shrinking to zero
            x = F.max_pool2d(x, 2, ceil_mode=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def extract_vgg_genotype(model: VGG) -> VGGGenotype:
    stages = [[layer.conv.out_channels for layer in stage] for stage in model.stages]
    first = model.stages[0][0].conv
    return VGGGenotype(stages, first.in_channels, model.fc.out_features)


register_builder(VGGGenotype, VGG, module_type=VGG, extract=extract_vgg_genotype)


_VGG16 = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


@register_model
def vgg16(**kwargs) -> VGGGenotype:
    """CIFAR VGG-16 with BatchNorm (13 convs, 64..512 filters)."""
    return VGGGenotype([list(s) for s in _VGG16], **kwargs)


@register_model
def vgg16_thin(**kwargs) -> VGGGenotype:
    """VGG-16 layout with 16 filters in every conv: the DessiLBI paper's VGG growing seed."""
    return VGGGenotype([[16] * len(s) for s in _VGG16], **kwargs)
