"""Seed architectures and what may grow: genotypes, family objects and the seed registry.

Layout (arrows are imports): ``resnet``, ``vgg``, ``timm_ref`` (the families: each defines its genotype,
module and :class:`~search_spaces.family.Family` object, needs torch) -> ``registry``, ``family``,
``layers`` -> ``genotype``, ``errors`` (no torch). The registry imports no family; each family module
registers itself when imported. This package imports the families lazily, through a loader it hands the
registry, so that ``import search_spaces`` (and ``search_spaces.errors``, which the ``grow`` command line
needs) does not import torch; the first lookup (``list_seeds``, ``get_genotype``, ``build_model``,
``extract_genotype``, ``family_of``, ``genotype_from_dict``) imports them, and so does asking for a
family's genotype class (``search_spaces.ResNetGenotype``). The loader imports every module of the
package, so a new family is one new module that registers itself.

``search_spaces`` imports neither ``growth`` nor ``baselines`` (``tests/test_imports.py`` checks it).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .errors import FamilyError, GrowthError
from .family import Family
from .genotype import Genotype, genotype_json, genotype_to_dict
from .registry import (
    UnknownSeedError,
    add_family_loader,
    build_model,
    create_model,
    extract_genotype,
    family_of,
    genotype_from_dict,
    genotype_of,
    get_genotype,
    list_families,
    list_seeds,
    register_family,
    register_model,
    register_namespace,
)

# The families' genotype classes, re-exported (imported on first use: their modules need torch).
_GENOTYPES = {"ResNetGenotype": "resnet", "ResNetStage": "resnet", "VGGGenotype": "vgg",
              "TimmGenotype": "timm_ref"}


def _modules() -> list[str]:
    return [info.name for info in pkgutil.iter_modules(__path__)]


def _import_families() -> None:
    # Every module of the package: the family modules register themselves when imported.
    for name in _modules():
        importlib.import_module(f"{__name__}.{name}")


add_family_loader(_import_families)


def __getattr__(name: str) -> Any:
    # ``search_spaces.resnet`` etc. as attributes, as when the package imported them eagerly
    if name in _modules():
        return importlib.import_module(f"{__name__}.{name}")
    if name in _GENOTYPES:
        return getattr(importlib.import_module(f"{__name__}.{_GENOTYPES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Family", "FamilyError", "Genotype", "GrowthError", "ResNetGenotype", "ResNetStage", "TimmGenotype",
    "UnknownSeedError", "VGGGenotype", "build_model", "create_model", "extract_genotype", "family_of",
    "genotype_from_dict", "genotype_json", "genotype_of", "genotype_to_dict", "get_genotype", "list_families",
    "list_seeds", "register_family", "register_model", "register_namespace",
]
