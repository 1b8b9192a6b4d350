"""Seed architectures and what may grow: genotypes, builders and the seed registry."""

from __future__ import annotations

from . import resnet, vgg  # noqa: F401  (registers the seeds)
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
    build_model,
    create_model,
    extract_genotype,
    get_genotype,
    list_seeds,
    register_model,
)

__all__ = [
    "Genotype", "ResNetGenotype", "ResNetStage", "TimmGenotype", "VGGGenotype",
    "UnknownSeedError", "build_model", "create_model", "extract_genotype", "genotype_from_dict",
    "genotype_json", "genotype_to_dict", "get_genotype", "list_seeds", "register_model",
]
