"""Architectures as data.

A *genotype* is a small JSON-serialisable description of a network: its family, the width of every
layer, the depth of every stage. Every family defines its genotype dataclass in its own module
(``ResNetGenotype`` in :mod:`search_spaces.resnet`, ``VGGGenotype`` in :mod:`search_spaces.vgg`,
``TimmGenotype`` in :mod:`search_spaces.timm_ref`), deriving from :class:`Genotype`; its family object
(:class:`search_spaces.family.Family`) builds it into an ``nn.Module``. Growth and pruning edit the
genotype and copy weights across, so a checkpoint is always ``genotype.json`` + a ``state_dict``.
``search_spaces.genotype_from_dict`` reads a dict back through the family registry.

Example:
    >>> import search_spaces
    >>> g = search_spaces.get_genotype("resnet8-thin")
    >>> search_spaces.genotype_from_dict(g.to_dict()) == g, isinstance(g, Genotype)
    (True, True)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any


class Genotype:
    """The base of every family's genotype dataclass.

    Every subclass has the dataclass fields ``in_chans`` and ``num_classes`` (the data's) and ``family``
    (its family's name as default), which says which family reads the genotype back
    (:func:`search_spaces.genotype_from_dict`).
    """

    in_chans: int
    num_classes: int
    family: str

    def to_dict(self) -> dict[str, Any]:
        return genotype_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genotype:
        """Inverse of :meth:`to_dict` (``data`` is a copy the method may change); ``KeyError`` or
        ``TypeError`` on malformed input."""
        return cls(**data)

    def compact(self) -> Any:
        """A short, printable summary of the widths (each family defines it)."""
        raise NotImplementedError


def genotype_to_dict(genotype: Genotype) -> dict[str, Any]:
    return asdict(genotype)  # type: ignore[call-overload]  # every genotype is a dataclass


def genotype_json(genotype: Genotype) -> str:
    """Canonical JSON text (sorted keys): also used as a cache key."""
    return json.dumps(genotype_to_dict(genotype), sort_keys=True, separators=(",", ":"))
