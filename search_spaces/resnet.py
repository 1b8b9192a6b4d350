"""CIFAR ResNets (basic blocks, three stages) built from a :class:`ResNetGenotype`.

Module names are part of the contract (the channel graph and the growth operators address layers by
them): ``stem.conv``/``stem.bn``, ``stages.S.B.conv1|bn1|conv2|bn2|shortcut``, ``fc``.

Example:
    >>> import torch
    >>> from search_spaces.genotype import ResNetGenotype
    >>> model = CifarResNet(ResNetGenotype.uniform([4, 8, 16], blocks=[1, 1, 1]))
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .genotype import ResNetGenotype, ResNetStage
from .registry import register_builder, register_model


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)


class ZeroPadShortcut(nn.Module):
    """Parameter-free downsampling shortcut (option A): subsample, then route channels by index.

    Output channel ``j`` copies input channel ``src[j]``; ``-1`` and channels past ``len(src)`` are 0.
    """

    def __init__(self, c_in: int, c_out: int, src: list[int], stride: int):
        super().__init__()
        self.stride, self.c_in, self.c_out = stride, c_in, c_out
        self.src = list(src)
        # Index c_in points at an appended all-zero channel, so one index_select does the routing.
        index = [c_in if s < 0 else s for s in src] + [c_in] * (c_out - len(src))
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, 1)).index_select(1, self.index)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, inner: int, c_out: int, stride: int, shortcut: str, src: list[int]):
        super().__init__()
        self.conv1 = _conv3x3(c_in, inner, stride)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = _conv3x3(inner, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride == 1 and c_in == c_out and not src:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "conv":
            self.shortcut = ConvBN(c_in, c_out, kernel=1, stride=stride)
        else:
            self.shortcut = ZeroPadShortcut(c_in, c_out, src, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, genotype: ResNetGenotype):
        super().__init__()
        if genotype.shortcut not in ("zeropad", "conv"):
            raise ValueError(f"unknown shortcut type {genotype.shortcut!r} (zeropad or conv)")
        self.genotype = genotype
        first = genotype.stages[0].width
        self.stem = ConvBN(genotype.in_chans, first)
        stages, prev = [], first
        for s, stage in enumerate(genotype.stages):
            blocks = [make_block(genotype, s, b, prev) for b in range(stage.depth)]
            stages.append(nn.Sequential(*blocks))
            prev = stage.width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(prev, genotype.num_classes)
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = self.stages(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def init_convs(model: nn.Module) -> None:
    """He (fan-out) initialisation of every conv, as in torchvision's ResNets."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def make_block(genotype: ResNetGenotype, s: int, b: int, c_in: int) -> BasicBlock:
    """Block ``b`` of stage ``s``; only the first block of stages after the first downsamples."""
    stage = genotype.stages[s]
    downsample = b == 0 and s > 0
    block_in = c_in if b == 0 else stage.width
    return BasicBlock(block_in, stage.inner[b], stage.width, 2 if downsample else 1,
                      genotype.shortcut, stage.shortcut_src if downsample else [])


def extract_resnet_genotype(model: CifarResNet) -> ResNetGenotype:
    """Read the architecture back from the modules' shapes (round-trip check for the builder)."""
    stages, shortcut = [], "zeropad"
    for s, seq in enumerate(model.stages):
        inner = [blk.conv1.out_channels for blk in seq]
        src: list[int] = []
        sc = seq[0].shortcut
        if isinstance(sc, ZeroPadShortcut):
            src = list(sc.src)
        elif isinstance(sc, ConvBN):
            shortcut = "conv"
            src = list(model.genotype.stages[s].shortcut_src)  # unused by a conv shortcut; kept as data
        stages.append(ResNetStage(seq[0].conv2.out_channels, inner, src))
    return ResNetGenotype(stages, shortcut, model.stem.conv.in_channels, model.fc.out_features)


register_builder(ResNetGenotype, CifarResNet, module_type=CifarResNet, extract=extract_resnet_genotype)


def _resnet(widths: list[int], depth: int, **kwargs) -> ResNetGenotype:
    n = (depth - 2) // 6
    return ResNetGenotype.uniform(widths, [n, n, n], **kwargs)


@register_model
def resnet20(**kwargs) -> ResNetGenotype:
    """ResNet-20 for CIFAR: widths 16/32/64, 3 blocks per stage (0.27M params, 40.8M MACs)."""
    return _resnet([16, 32, 64], 20, **kwargs)


@register_model
def resnet32(**kwargs) -> ResNetGenotype:
    """ResNet-32 for CIFAR: widths 16/32/64, 5 blocks per stage."""
    return _resnet([16, 32, 64], 32, **kwargs)


@register_model
def resnet56(**kwargs) -> ResNetGenotype:
    """ResNet-56 for CIFAR: widths 16/32/64, 9 blocks per stage."""
    return _resnet([16, 32, 64], 56, **kwargs)


@register_model
def resnet20_thin(**kwargs) -> ResNetGenotype:
    """ResNet-20 at quarter width (4/8/16): the default growing seed."""
    return _resnet([4, 8, 16], 20, **kwargs)


@register_model
def resnet20_16(**kwargs) -> ResNetGenotype:
    """ResNet-20 with every width 16: the growing seed of the DessiLBI paper."""
    return _resnet([16, 16, 16], 20, **kwargs)


@register_model
def resnet56_thin(**kwargs) -> ResNetGenotype:
    """ResNet-56 at quarter width (4/8/16)."""
    return _resnet([4, 8, 16], 56, **kwargs)


@register_model
def resnet8_thin(**kwargs) -> ResNetGenotype:
    """One block per stage, widths 4/8/16: the seed for depth growth."""
    return _resnet([4, 8, 16], 8, **kwargs)
