"""Seed architectures and what may grow: genotypes, builders and the seed registry.

Layout (arrows are imports): ``resnet``, ``vgg``, ``timm_ref`` (the families, need torch) ->
``registry`` -> ``genotype``, ``errors`` (no torch). The registry imports no family; each family
module registers itself when imported. This package imports the families lazily, through a loader
it hands the registry, so that ``import search_spaces`` (and ``search_spaces.errors``, which the
``grow`` command line needs) does not import torch; the first lookup (``list_seeds``, ``get_genotype``,
``build_model``, ``extract_genotype``) imports them. A new family is one new module that registers
itself, plus its name in ``_FAMILIES`` below.

``search_spaces`` imports neither ``growth`` nor ``baselines`` (``tests/test_imports.py`` checks it).
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import GrowthError
from .genotype import (
    Genotype,
    ResNetGenotype,
    ResNetStage,
    TimmGenotype,
    VGGGenotype,
    genotype_from_dict,
    genotype_json,
    genotype_to_dict,
)
from .registry import (
    UnknownSeedError,
    add_family_loader,
    build_model,
    create_model,
    extract_genotype,
    get_genotype,
    list_seeds,
    register_builder,
    register_model,
    register_namespace,
)

_FAMILIES = ("resnet", "vgg", "timm_ref")   # modules that register seeds and builders when imported


def _import_families() -> None:
    for name in _FAMILIES:
        importlib.import_module(f"{__name__}.{name}")


add_family_loader(_import_families)


def __getattr__(name: str) -> Any:
    # ``search_spaces.resnet`` etc. as attributes, as when the package imported them eagerly
    if name in _FAMILIES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Genotype", "GrowthError", "ResNetGenotype", "ResNetStage", "TimmGenotype", "VGGGenotype",
    "UnknownSeedError", "build_model", "create_model", "extract_genotype", "genotype_from_dict",
    "genotype_json", "genotype_to_dict", "get_genotype", "list_seeds", "register_builder", "register_model",
    "register_namespace",
]
