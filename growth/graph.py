"""The channel-dependency graph of an architecture and its coupled channel groups.

Nodes of :func:`architecture_graph` are layers (by module name) and residual additions; an edge
``u -> v`` means ``v`` reads ``u``'s output channels. Edges marked ``tied=True`` join tensors that
must have the same channels (an addition and the tensors added into it). A *channel group* is a
connected component of the tied edges: every layer in it writes the same channels, so its width
changes as one unit. In a ResNet stage joined by identity shortcuts this is the stem (or the
downsampling shortcut) plus every block's last conv; each block's inner conv is a group of its own.
The graph, the groups' names and widths come from the genotype's family
(:func:`search_spaces.family_of`); this module only finds the components, so it is the same for all.

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

from search_spaces import Genotype, family_of, genotype_of


@dataclass(frozen=True)
class ChannelGroup:
    """Layers whose output channels must change together.

    ``producers``: convs that write the channels (dim 0 of their weight); ``norms``: the BatchNorms
    after them; ``consumers``: layers that read the channels (dim 1 of a conv/linear weight, or a
    parameter-free shortcut); ``key``: where the width lives in the genotype; ``routes``: parameter-free
    layers (a zero-padding shortcut) that write the group's channels by copying another group's.
    """

    name: str
    width: int
    producers: tuple[str, ...]
    norms: tuple[str, ...]
    consumers: tuple[str, ...]
    key: tuple
    routes: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return self.key[0]


def architecture_graph(genotype: Genotype) -> nx.DiGraph:
    """Layer graph with ``width`` on producing nodes and ``tied`` on channel-sharing edges (the
    genotype's family draws it: :meth:`search_spaces.Family.graph`)."""
    return family_of(genotype).graph(genotype)


def groups_of_genotype(genotype: Genotype) -> list[ChannelGroup]:
    """The coupled channel groups of an architecture, in network order."""
    family = family_of(genotype)
    graph = family.graph(genotype)
    tied = nx.Graph()
    tied.add_nodes_from(graph.nodes)
    tied.add_edges_from((u, v) for u, v, t in graph.edges(data="tied") if t)
    order = {n: i for i, n in enumerate(graph.nodes)}
    groups = []
    for component in nx.connected_components(tied):
        convs = sorted((n for n in component if graph.nodes[n].get("op") == "conv"), key=order.__getitem__)
        if not convs:
            continue  # the input tensor
        keys = {graph.nodes[n]["key"] for n in convs}
        assert len(keys) == 1, f"inconsistent channel group {convs}: {keys}"
        key = keys.pop()
        consumers = sorted({v for n in component for v in graph.successors(n) if v not in component},
                           key=order.__getitem__)
        routes = sorted((n for n in component if graph.nodes[n].get("op") == "route"), key=order.__getitem__)
        groups.append(ChannelGroup(
            name=family.group_name(key), width=family.group_width(genotype, key), producers=tuple(convs),
            norms=tuple(graph.nodes[n]["norm"] for n in convs), consumers=tuple(consumers), key=key,
            routes=tuple(routes)))
    return sorted(groups, key=lambda grp: order[grp.producers[0]])


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The coupled channel groups of a built model (see :func:`groups_of_genotype`)."""
    return groups_of_genotype(genotype_of(model))


def find_group(model_or_genotype: nn.Module | Genotype, name: str) -> ChannelGroup:
    """The channel group called ``name`` (e.g. ``stage2``) of a model or genotype."""
    genotype = genotype_of(model_or_genotype) if isinstance(model_or_genotype, nn.Module) else model_or_genotype
    groups = groups_of_genotype(genotype)
    for group in groups:
        if group.name == name:
            return group
    raise KeyError(f"no channel group {name!r}; groups: {', '.join(g.name for g in groups)}")
