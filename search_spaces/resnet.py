"""CIFAR ResNets (basic blocks, three stages): the genotype, the module and the ``resnet`` family.

Module names are part of the contract (the channel graph and the growth operators address layers by
them): ``stem.conv``/``stem.bn``, ``stages.S.B.conv1|bn1|conv2|bn2|shortcut``, ``fc``.

:class:`ResNetFamily` (registered as the ``resnet`` family) holds all ResNet knowledge the engine and
the baselines use: the channel graph (a stage's stem or downsampling shortcut and every block's last
conv are one coupled group, tied by the residual additions; each block's inner conv is a group of its
own), the zero-padding shortcut's channel routing as widths change, deepening by a block whose last
BatchNorm weight is 0, and which blocks may be removed (not the downsampling first block of stages
2+; a stage keeps at least one block).

Example:
    >>> import torch
    >>> model = CifarResNet(ResNetGenotype.uniform([4, 8, 16], blocks=[1, 1, 1]))
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> [RESNET.group_name(k) for k in (("stage", 0), ("inner", 2, 0))]
    ['stage1', 'stage3.block1.inner']
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from .errors import FamilyError
from .family import Family, GroupKey
from .genotype import Genotype
from .layers import ConvBN, init_convs
from .registry import register_family, register_model

__all__ = ["RESNET", "BasicBlock", "CifarResNet", "ConvBN", "ResNetFamily", "ResNetGenotype", "ResNetStage",
           "ZeroPadShortcut", "init_convs"]


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
class ResNetGenotype(Genotype):
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetGenotype:
        data["stages"] = [ResNetStage(**s) for s in data["stages"]]
        return cls(**data)

    def compact(self) -> list[list[int]]:
        """Per stage: ``[stage width, inner width of block 1, block 2, ...]``."""
        return [[s.width, *s.inner] for s in self.stages]


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)


class ZeroPadShortcut(nn.Module):
    """Parameter-free downsampling shortcut (option A): subsample, then route channels by index.

    Output channel ``j`` copies input channel ``src[j]``; ``-1`` and channels past ``len(src)`` are 0.
    """

    index: torch.Tensor

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
        blocks = [cast(BasicBlock, blk) for blk in cast(nn.Sequential, seq)]
        inner = [blk.conv1.out_channels for blk in blocks]
        src: list[int] = []
        sc = blocks[0].shortcut
        if isinstance(sc, ZeroPadShortcut):
            src = list(sc.src)
        elif isinstance(sc, ConvBN):
            shortcut = "conv"
            src = list(model.genotype.stages[s].shortcut_src)  # unused by a conv shortcut; kept as data
        stages.append(ResNetStage(blocks[0].conv2.out_channels, inner, src))
    return ResNetGenotype(stages, shortcut, model.stem.conv.in_channels, model.fc.out_features)




def _strip(src: list[int]) -> list[int]:
    while src and src[-1] < 0:
        src.pop()
    return src


def _down(n: int) -> int:
    """Output size of a stride-2 conv (3x3 pad 1 or 1x1 pad 0 alike): floor((n - 1) / 2) + 1."""
    return (n - 1) // 2 + 1


class ResNetFamily(Family[ResNetGenotype]):
    """The ``resnet`` family: group keys ``("stage", s)`` (named ``stageS``) and ``("inner", s, b)``
    (``stageS.blockB.inner``), 1-based in names, 0-based in keys."""

    name = "resnet"
    genotype_type = ResNetGenotype
    module_type = CifarResNet

    def build(self, genotype: ResNetGenotype) -> CifarResNet:
        return CifarResNet(genotype)

    def extract(self, model: nn.Module) -> ResNetGenotype:
        return extract_resnet_genotype(cast(CifarResNet, model))

    # -- channels -----------------------------------------------------------------------------------

    def graph(self, g: ResNetGenotype) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_node("input", op="input", width=g.in_chans)
        graph.add_node("stem.conv", op="conv", norm="stem.bn", key=("stage", 0))
        graph.add_edge("input", "stem.conv")
        x = "stem.conv"
        for s, stage in enumerate(g.stages):
            for b in range(stage.depth):
                p = f"stages.{s}.{b}"
                graph.add_node(f"{p}.conv1", op="conv", norm=f"{p}.bn1", key=("inner", s, b))
                graph.add_node(f"{p}.conv2", op="conv", norm=f"{p}.bn2", key=("stage", s))
                graph.add_node(f"{p}.add", op="add")
                graph.add_edge(x, f"{p}.conv1")
                graph.add_edge(f"{p}.conv1", f"{p}.conv2")
                graph.add_edge(f"{p}.conv2", f"{p}.add", tied=True)
                if b == 0 and s > 0:
                    if g.shortcut == "conv":
                        graph.add_node(f"{p}.shortcut.conv", op="conv", norm=f"{p}.shortcut.bn",
                                       key=("stage", s))
                        graph.add_edge(x, f"{p}.shortcut.conv")
                        graph.add_edge(f"{p}.shortcut.conv", f"{p}.add", tied=True)
                    else:
                        # The zero-padding shortcut reads the previous stage through an index map
                        # and writes as many channels as the addition has: tied on its output side.
                        graph.add_node(f"{p}.shortcut", op="route")
                        graph.add_edge(x, f"{p}.shortcut")
                        graph.add_edge(f"{p}.shortcut", f"{p}.add", tied=True)
                else:
                    graph.add_edge(x, f"{p}.add", tied=True)  # identity shortcut
                x = f"{p}.add"
        graph.add_node("fc", op="linear")
        graph.add_edge(x, "fc")
        return graph

    def group_width(self, genotype: ResNetGenotype, key: GroupKey) -> int:
        if key[0] == "stage":
            return genotype.stages[key[1]].width
        return genotype.stages[key[1]].inner[key[2]]

    def group_name(self, key: GroupKey) -> str:
        if key[0] == "stage":
            return f"stage{key[1] + 1}"
        return f"stage{key[1] + 1}.block{key[2] + 1}.inner"

    def resized(self, genotype: ResNetGenotype, key: GroupKey, keep: Sequence[int], n_new: int) -> ResNetGenotype:
        g = copy.deepcopy(genotype)
        width = len(keep) + n_new
        kind, s = key[0], key[1]
        if kind == "inner":
            g.stages[s].inner[key[2]] = width
        elif kind == "stage":
            old_pos = list(keep)
            stage = g.stages[s]
            # Output side of this stage's own shortcut: position j now holds old channel keep[j].
            src = stage.shortcut_src
            stage.shortcut_src = _strip([src[k] if k < len(src) else -1 for k in old_pos])
            stage.width = width
            if s + 1 < len(g.stages):
                # Input side of the next stage's shortcut: old channel c now sits at keep.index(c);
                # pruned channels route zeros, new channels are not routed at all.
                where = {c: j for j, c in enumerate(old_pos)}
                nxt = g.stages[s + 1]
                nxt.shortcut_src = _strip([where.get(c, -1) if c >= 0 else -1 for c in nxt.shortcut_src])
        else:
            raise KeyError(f"not a resnet channel group: {key!r}")
        return g

    def routes_into(self, genotype: ResNetGenotype, key: GroupKey) -> list[tuple[GroupKey, int, int]]:
        s = key[1]
        if key[0] != "stage" or s == 0 or genotype.shortcut != "zeropad":
            return []
        return [(("stage", s - 1), k, j) for j, k in enumerate(genotype.stages[s].shortcut_src) if k >= 0]

    def scaled(self, genotype: ResNetGenotype, multiplier: float) -> ResNetGenotype:
        def scale(width: int) -> int:
            return max(1, round(width * multiplier))

        g = copy.deepcopy(genotype)
        prev = scale(g.stages[0].width)
        for i, stage in enumerate(g.stages):
            stage.width, stage.inner = scale(stage.width), [scale(w) for w in stage.inner]
            stage.shortcut_src = list(range(min(prev, stage.width))) if i > 0 else []
            prev = stage.width
        return g

    # -- depth --------------------------------------------------------------------------------------

    def num_stages(self, genotype: ResNetGenotype) -> int:
        return len(genotype.stages)

    def stage_depth(self, genotype: ResNetGenotype, stage: int) -> int:
        return genotype.stages[stage].depth

    def deepened(self, genotype: ResNetGenotype, stage: int) -> ResNetGenotype:
        self._check_stage(genotype, stage)
        g = copy.deepcopy(genotype)
        inner = sorted(g.stages[stage].inner)
        # the stage's typical inner width (its median), not the last block's: a lagging last block would
        # otherwise be copied into every new one (funnels)
        g.stages[stage].inner.append(inner[len(inner) // 2])
        return g

    def deepens(self, key: GroupKey) -> int | None:
        return key[1] if key[0] == "stage" else None  # a stage's residual stream, not a block's inner conv

    def block_name(self, stage: int, block: int) -> str:
        return f"stages.{stage}.{block}"

    def make_identity(self, block: nn.Module) -> None:
        cast(BasicBlock, block).bn2.weight.zero_()  # residual branch outputs 0: the block is the identity (both modes)

    def removable_blocks(self, genotype: ResNetGenotype) -> list[tuple[int, int]]:
        """All blocks but the downsampling first block of stages 2+ (it changes resolution and width)."""
        return [(s, b) for s, stage in enumerate(genotype.stages) for b in range(stage.depth) if s == 0 or b > 0]

    def without_block(self, genotype: ResNetGenotype, stage: int, block: int) -> ResNetGenotype:
        self._check_stage(genotype, stage)
        if not 0 <= block < genotype.stages[stage].depth or (block == 0 and stage > 0):
            raise FamilyError(f"block {block} of stage {stage} cannot be removed")
        g = copy.deepcopy(genotype)
        del g.stages[stage].inner[block]
        return g

    def branch_norm(self, stage: int, block: int) -> str:
        return f"stages.{stage}.{block}.bn2"

    # -- cost ---------------------------------------------------------------------------------------

    def forward_flops(self, genotype: ResNetGenotype, input_shape: Sequence[int],
                      widths: Mapping[GroupKey, float] | None = None,
                      blocks_on: Mapping[tuple[int, int], float] | None = None) -> float:
        """Only convs and the classifier's matmul count (BatchNorm, ReLU, additions, pooling and the
        zero-padding shortcut do not), exactly what ``growth.compute.measure_cost`` counts; every conv's
        cost is a product of independent factors, so expected widths give the expected count."""
        widths, blocks_on = widths or {}, blocks_on or {}
        stage_w = [widths.get(("stage", s), st.width) for s, st in enumerate(genotype.stages)]
        inner_w = [[widths.get(("inner", s, b), st.inner[b]) for b in range(st.depth)]
                   for s, st in enumerate(genotype.stages)]
        block_on = [[blocks_on.get((s, b), 1) for b in range(st.depth)] for s, st in enumerate(genotype.stages)]
        c_in, h, w = input_shape
        flops = 2 * 9 * c_in * stage_w[0] * h * w  # stem: 3x3 conv
        prev = stage_w[0]
        for s, (inner, on) in enumerate(zip(inner_w, block_on)):
            width = stage_w[s]
            for b, (mid, gate) in enumerate(zip(inner, on)):
                if b == 0 and s > 0:  # the downsampling block (never removed)
                    h, w = _down(h), _down(w)
                    block_in = prev
                    if genotype.shortcut == "conv":
                        flops += gate * 2 * block_in * width * h * w  # 1x1 stride-2 conv
                else:
                    block_in = width
                flops += gate * 2 * 9 * mid * (block_in + width) * h * w  # conv1 + conv2
            prev = width
        return flops + 2 * prev * genotype.num_classes


RESNET = register_family(ResNetFamily())


def _resnet(widths: list[int], depth: int, **kwargs: Any) -> ResNetGenotype:
    n = (depth - 2) // 6
    return ResNetGenotype.uniform(widths, [n, n, n], **kwargs)


@register_model
def resnet20(**kwargs: Any) -> ResNetGenotype:
    """ResNet-20 for CIFAR: widths 16/32/64, 3 blocks per stage (0.27M params, 40.8M MACs)."""
    return _resnet([16, 32, 64], 20, **kwargs)


@register_model
def resnet32(**kwargs: Any) -> ResNetGenotype:
    """ResNet-32 for CIFAR: widths 16/32/64, 5 blocks per stage."""
    return _resnet([16, 32, 64], 32, **kwargs)


@register_model
def resnet56(**kwargs: Any) -> ResNetGenotype:
    """ResNet-56 for CIFAR: widths 16/32/64, 9 blocks per stage."""
    return _resnet([16, 32, 64], 56, **kwargs)


@register_model
def resnet20_thin(**kwargs: Any) -> ResNetGenotype:
    """ResNet-20 at quarter width (4/8/16): the default growing seed."""
    return _resnet([4, 8, 16], 20, **kwargs)


@register_model
def resnet20_16(**kwargs: Any) -> ResNetGenotype:
    """ResNet-20 with every width 16: the growing seed of the DessiLBI paper."""
    return _resnet([16, 16, 16], 20, **kwargs)


@register_model
def resnet56_thin(**kwargs: Any) -> ResNetGenotype:
    """ResNet-56 at quarter width (4/8/16)."""
    return _resnet([4, 8, 16], 56, **kwargs)


# Seeds whose proportions are wrong, about as costly as resnet20-thin (2.2-2.8M MACs at 32x32): what a user's
# guess may look like, and the test of whether growth reshapes a network (Γ decides where) or scales it.


@register_model
def resnet20_flat(**kwargs: Any) -> ResNetGenotype:
    """ResNet-20 with every stage 6 wide: too wide early, starved late (2.78M MACs)."""
    return _resnet([6, 6, 6], 20, **kwargs)


@register_model
def resnet20_inverted(**kwargs: Any) -> ResNetGenotype:
    """ResNet-20 with widths shrinking with depth, 6/5/4 (2.57M MACs)."""
    return _resnet([6, 5, 4], 20, **kwargs)


@register_model
def resnet20_early_thin(**kwargs: Any) -> ResNetGenotype:
    """ResNet-20 with starved early stages, 2/4/24 (2.19M MACs): the missing channels are the costly ones."""
    return _resnet([2, 4, 24], 20, **kwargs)


@register_model
def resnet20_tiny(**kwargs: Any) -> ResNetGenotype:
    """ResNet-20 at 1/8 width (2/4/8), a quarter of resnet20-thin's MACs: the seed for large growth."""
    return _resnet([2, 4, 8], 20, **kwargs)


@register_model
def resnet8_thin(**kwargs: Any) -> ResNetGenotype:
    """One block per stage, widths 4/8/16: the seed for depth growth."""
    return _resnet([4, 8, 16], 8, **kwargs)
