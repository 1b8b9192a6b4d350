"""One object per model family: everything the engine and the baselines know about a family.

A family (``ResNetFamily`` in :mod:`search_spaces.resnet`, ``VGGFamily`` in :mod:`search_spaces.vgg`,
``TimmFamily`` in :mod:`search_spaces.timm_ref`) is a :class:`Family` subclass, instantiated once and
registered by its own module with :func:`search_spaces.registry.register_family`;
:func:`search_spaces.registry.family_of` finds it for a genotype or a built model. Code outside the
family module asks the family instead of testing the genotype's type, and the package imports each of
its modules before the first look-up, so adding a family is one new module.

What a family knows, by topic:

* **Building:** :attr:`~Family.genotype_type`, :attr:`~Family.module_type`, :meth:`~Family.build`,
  :meth:`~Family.extract` (the genotype read back from a built module).
* **Channels:** :meth:`~Family.graph`, the channel-dependency graph of a genotype (a networkx
  ``DiGraph`` whose nodes are module names and residual additions: ``op`` ("input", "conv", "route",
  "add", "linear"), on convs ``norm`` (the BatchNorm after it) and ``key`` (where its width lives in the
  genotype), ``width`` on the input; edges ``u -> v`` when ``v`` reads ``u``'s channels, ``tied=True``
  when both must have the same channels). ``growth.graph`` turns it into coupled channel groups,
  named by :meth:`~Family.group_name`, sized by :meth:`~Family.group_width`. :meth:`~Family.resized`
  sets a group's width (keeping parameter-free channel routing consistent), :meth:`~Family.routes_into`
  says which channels such routing copies, :meth:`~Family.scaled` scales every width.
* **Depth:** :meth:`~Family.num_stages`, :meth:`~Family.stage_depth`, :meth:`~Family.deepened` (one block
  appended) and :meth:`~Family.make_identity` (that block made the identity on the built module),
  :meth:`~Family.block_name`; :meth:`~Family.removable_blocks`, :meth:`~Family.without_block` and
  :meth:`~Family.branch_norm` for the baselines that remove residual blocks.
* **Cost:** :meth:`~Family.forward_flops`, an analytic count where the family has one (for hot loops
  that price many sub-networks; ``growth.compute.measure_cost`` measures any built model).

Whatever a family cannot do raises :class:`~search_spaces.errors.FamilyError` (a ``GrowthError`` and a
``ValueError``) with one line, e.g. ``cannot deepen a 'timm' model``. The base class imports neither
torch nor networkx (the families do).

Example:
    >>> import search_spaces
    >>> resnet = search_spaces.family_of(search_spaces.get_genotype("resnet8-thin"))
    >>> resnet.name, resnet.group_name(("inner", 0, 0)), resnet.removable_blocks(resnet.deepened(
    ...     search_spaces.get_genotype("resnet8-thin"), 1))
    ('resnet', 'stage1.block1.inner', [(0, 0), (1, 1)])
    >>> timm = search_spaces.family_of(search_spaces.TimmGenotype("resnet18"))
    >>> timm.deepened(search_spaces.TimmGenotype("resnet18"), 0)
    Traceback (most recent call last):
    ...
    search_spaces.errors.FamilyError: cannot deepen a 'timm' model
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .errors import FamilyError
from .genotype import Genotype

if TYPE_CHECKING:
    import networkx as nx
    from torch import nn

__all__ = ["Family", "GroupKey"]

#: Where a channel group's width lives in its genotype, e.g. ``("stage", 1)`` or ``("inner", 0, 2)``;
#: the first entry is the group's *kind*.
GroupKey = tuple[Any, ...]

G = TypeVar("G", bound=Genotype)


class Family(ABC, Generic[G]):
    """Everything one model family knows (see the module docstring), for genotypes of type ``G``.
    Subclasses set the class attributes and override what they support; the rest raises
    :class:`FamilyError`."""

    #: The genotype's ``family`` field, e.g. ``"resnet"``; :func:`genotype_from_dict` reads it.
    name: ClassVar[str]
    #: The genotype dataclass (a :class:`~search_spaces.genotype.Genotype` subclass).
    genotype_type: ClassVar[type[Genotype]]
    #: The class of the built module, where the family can read a genotype back from its layers.
    module_type: ClassVar[type | None] = None

    def _cannot(self, what: str) -> FamilyError:
        return FamilyError(f"cannot {what} a {self.name!r} model")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- building -----------------------------------------------------------------------------------

    @abstractmethod
    def build(self, genotype: G) -> nn.Module:
        """A freshly initialised module for ``genotype`` (``module.genotype`` is set)."""

    def extract(self, model: nn.Module) -> G:
        """The architecture read back from a built module (by default its ``genotype`` attribute)."""
        genotype: G = getattr(model, "genotype")
        return genotype

    # -- channels -----------------------------------------------------------------------------------

    def graph(self, genotype: G) -> nx.DiGraph:
        """The channel-dependency graph (node and edge attributes in the module docstring)."""
        raise self._cannot("take the channel graph of")

    def group_width(self, genotype: G, key: GroupKey) -> int:
        """The width of the channel group at ``key``."""
        raise self._cannot("take a channel group's width of")

    def group_name(self, key: GroupKey) -> str:
        """The display name of the group at ``key`` (``stage1``, ``stage1.block2.inner``, ...)."""
        raise self._cannot("name a channel group of")

    def resized(self, genotype: G, key: GroupKey, keep: Sequence[int], n_new: int) -> G:
        """A copy of ``genotype`` whose group ``key`` holds its old channels ``keep`` (in that order)
        followed by ``n_new`` new ones; parameter-free routing into and out of the group follows the
        kept channels, and new channels are routed nowhere."""
        raise self._cannot("resize a channel group of")

    def routes_into(self, genotype: G, key: GroupKey) -> list[tuple[GroupKey, int, int]]:
        """``(source group key, source channel, channel of this group)`` for every channel of group
        ``key`` that a parameter-free layer (a zero-padding shortcut) fills with a copy of another
        group's channel; empty where there is no such layer."""
        return []

    def scaled(self, genotype: G, multiplier: float) -> G:
        """Every width times ``multiplier`` (rounded, at least 1), routing reset to the identity."""
        raise self._cannot("scale uniformly")

    # -- depth --------------------------------------------------------------------------------------

    def num_stages(self, genotype: G) -> int:
        raise self._cannot("count the stages of")

    def stage_depth(self, genotype: G, stage: int) -> int:
        """Blocks (ResNet) or layers (VGG) in ``stage`` (0-based)."""
        raise self._cannot("take the stage depth of")

    def deepened(self, genotype: G, stage: int) -> G:
        """A copy of ``genotype`` with one block appended to ``stage``, of the stage's typical width (ResNet:
        the median inner width of its blocks)."""
        raise self._cannot("deepen")

    def deepens(self, key: GroupKey) -> int | None:
        """The stage a growing channel group may deepen (growth with ``deepen``), or None: that
        group grows in width only (the default)."""
        return None

    def block_name(self, stage: int, block: int) -> str:
        """The module name of block ``block`` of ``stage`` in a built model; blocks of a stage are
        the items of one ``nn.Sequential`` (the name's parent), so they can be appended or deleted."""
        raise self._cannot("address a block of")

    def make_identity(self, block: nn.Module) -> None:
        """Make a freshly built block (the one :meth:`deepened` appended) compute the identity, at
        least in eval mode (call under ``torch.no_grad()``)."""
        raise self._cannot("deepen")

    def removable_blocks(self, genotype: G) -> list[tuple[int, int]]:
        """``(stage, block)`` of every block that may be removed (none by default). The rule has a
        second half, the same for every family: a stage keeps at least one block, which
        ``growth.operators.remove_block`` checks and the pruning baselines respect."""
        return []

    def without_block(self, genotype: G, stage: int, block: int) -> G:
        """A copy of ``genotype`` without block ``block`` of ``stage``, one of :meth:`removable_blocks`
        (even a stage's last one: a sampled sub-network may skip a whole stage)."""
        raise self._cannot("remove a block of")

    def branch_norm(self, stage: int, block: int) -> str:
        """The module name of the norm that ends a removable block's residual branch: scaling its
        output by 0 makes the block the identity."""
        raise self._cannot("remove a block of")

    def _check_stage(self, genotype: G, stage: int) -> None:
        n = self.num_stages(genotype)
        if not 0 <= stage < n:
            raise FamilyError(f"stage {stage} out of range (model has {n} stages)")

    # -- cost ---------------------------------------------------------------------------------------

    def forward_flops(self, genotype: G, input_shape: Sequence[int],
                      widths: Mapping[GroupKey, float] | None = None,
                      blocks_on: Mapping[tuple[int, int], float] | None = None) -> float:
        """Forward FLOPs per sample (multiply and add counted apart, as ``FlopCounterMode``),
        analytically. ``widths`` overrides group widths by key and ``blocks_on`` says whether (or
        with which probability) a removable block runs (default 1); with integers the count is exact
        (equal to ``growth.compute.measure_cost``'s), with expectations of independent gates it is the
        expected count."""
        raise self._cannot("count the FLOPs analytically of")
