"""The channel-dependency graph of an architecture and its coupled channel groups.

Nodes of :func:`architecture_graph` are layers (by module name) and residual additions; an edge
``u -> v`` means ``v`` reads ``u``'s output channels. Edges marked ``tied=True`` join tensors that
must have the same channels (an addition and the tensors added into it). A *channel group* is a
connected component of the tied edges: every layer in it writes the same channels, so its width
changes as one unit. In a ResNet stage joined by identity shortcuts this is the stem (or the
downsampling shortcut) plus every block's last conv; each block's inner conv is a group of its own.

Example:
    >>> import search_spaces
    >>> groups = channel_groups(search_spaces.create_model("resnet8-thin"))
    >>> [(g.name, g.width) for g in groups][:2]
    [('stage1', 4), ('stage1.block1.inner', 4)]
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
from torch import nn

from search_spaces import Genotype, ResNetGenotype, VGGGenotype


@dataclass(frozen=True)
class ChannelGroup:
    """Layers whose output channels must change together.

    ``producers``: convs that write the channels (dim 0 of their weight); ``norms``: the BatchNorms
    after them; ``consumers``: layers that read the channels (dim 1 of a conv/linear weight, or a
    parameter-free shortcut); ``key``: where the width lives in the genotype.
    """

    name: str
    width: int
    producers: tuple[str, ...]
    norms: tuple[str, ...]
    consumers: tuple[str, ...]
    key: tuple

    @property
    def kind(self) -> str:
        return self.key[0]


def architecture_graph(genotype: Genotype) -> nx.DiGraph:
    """Layer graph with ``width`` on producing nodes and ``tied`` on channel-sharing edges."""
    if isinstance(genotype, ResNetGenotype):
        return _resnet_graph(genotype)
    if isinstance(genotype, VGGGenotype):
        return _vgg_graph(genotype)
    raise ValueError(f"no channel graph for the {genotype.family!r} family (references are not grown)")


def _resnet_graph(g: ResNetGenotype) -> nx.DiGraph:
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


def _vgg_graph(g: VGGGenotype) -> nx.DiGraph:
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


def _group_width(genotype: Genotype, key: tuple) -> int:
    if key[0] == "stage":
        return genotype.stages[key[1]].width
    if key[0] == "inner":
        return genotype.stages[key[1]].inner[key[2]]
    return genotype.stages[key[1]][key[2]]


def _group_name(key: tuple) -> str:
    if key[0] == "stage":
        return f"stage{key[1] + 1}"
    if key[0] == "inner":
        return f"stage{key[1] + 1}.block{key[2] + 1}.inner"
    return f"stage{key[1] + 1}.conv{key[2] + 1}"


def groups_of_genotype(genotype: Genotype) -> list[ChannelGroup]:
    """The coupled channel groups of an architecture, in network order."""
    graph = architecture_graph(genotype)
    tied = nx.Graph()
    tied.add_nodes_from(graph.nodes)
    tied.add_edges_from((u, v) for u, v, t in graph.edges(data="tied") if t)
    order = {n: i for i, n in enumerate(graph.nodes)}
    groups = []
    for component in nx.connected_components(tied):
        convs = sorted((n for n in component if graph.nodes[n].get("op") == "conv"), key=order.get)
        if not convs:
            continue  # the input tensor
        keys = {graph.nodes[n]["key"] for n in convs}
        assert len(keys) == 1, f"inconsistent channel group {convs}: {keys}"
        key = keys.pop()
        consumers = sorted({v for n in component for v in graph.successors(n) if v not in component},
                           key=order.get)
        groups.append(ChannelGroup(
            name=_group_name(key), width=_group_width(genotype, key), producers=tuple(convs),
            norms=tuple(graph.nodes[n]["norm"] for n in convs), consumers=tuple(consumers), key=key))
    return sorted(groups, key=lambda grp: order[grp.producers[0]])


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The coupled channel groups of a built model (see :func:`groups_of_genotype`)."""
    return groups_of_genotype(model.genotype)


def find_group(model_or_genotype, name: str) -> ChannelGroup:
    genotype = getattr(model_or_genotype, "genotype", model_or_genotype)
    groups = groups_of_genotype(genotype)
    for group in groups:
        if group.name == name:
            return group
    raise KeyError(f"no channel group {name!r}; groups: {', '.join(g.name for g in groups)}")
