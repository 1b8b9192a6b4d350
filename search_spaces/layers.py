"""Layers shared by the family modules (no family of its own): conv + BatchNorm, He initialisation."""

from __future__ import annotations

from torch import nn


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)


def init_convs(model: nn.Module) -> None:
    """He (fan-out) initialisation of every conv, as in torchvision's ResNets."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
