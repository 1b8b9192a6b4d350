"""``fixed:<seed>`` (and timm references), ``uniform:<seed>`` and ``width:<seed>@<mult>``: plain SGD on
one architecture.

``uniform`` is the honest control for growth: the seed with every width multiplied by one factor,
the factor chosen so that the network's MACs come as close as possible to the target from below
(in a benchmark, the grown network's MACs). ``width:<seed>@<mult>`` scales the seed by a given
factor; ``grow bench`` expands ``frontier:<seed>`` into several of them, the curve of the best fixed
widths at the bench's budget that every method's *frontier gap* is measured against.

Example:
    >>> import search_spaces
    >>> g = uniform_genotype(search_spaces.get_genotype("resnet20"), 0.5)
    >>> g.compact()[0]
    [8, 8, 8, 8]
"""

from __future__ import annotations

import dataclasses

from growth.config import ConfigError, TrainConfig
from search_spaces import FamilyError, Genotype, family_of, genotype_to_dict, get_genotype

from .registry import MethodOptions, register_method, split_width_arg


@register_method("fixed")
def fixed(base: TrainConfig, seed: str, options: MethodOptions) -> tuple[TrainConfig, None]:
    return dataclasses.replace(base, seed=seed, optimizer="sgd"), None


def uniform_genotype(genotype: Genotype, multiplier: float) -> Genotype:
    """Every width times ``multiplier`` (rounded, at least 1): :meth:`search_spaces.Family.scaled`."""
    try:
        return family_of(genotype).scaled(genotype, multiplier)
    except FamilyError as err:
        raise ConfigError(str(err)) from None


def match_macs(genotype: Genotype, target_macs: float, input_shape: tuple[int, int, int]) -> Genotype:
    """The uniform scaling of ``genotype`` with the most MACs not above ``target_macs``."""
    from growth.compute import measure_cost

    lo, hi = 1e-3, 1.0
    while measure_cost(uniform_genotype(genotype, hi), input_shape).macs <= target_macs and hi < 64:
        lo, hi = hi, hi * 2
    for _ in range(30):  # MACs grow monotonically with the multiplier (up to rounding)
        mid = (lo + hi) / 2
        if measure_cost(uniform_genotype(genotype, mid), input_shape).macs <= target_macs:
            lo = mid
        else:
            hi = mid
    return uniform_genotype(genotype, lo)


@register_method("uniform")
def uniform(base: TrainConfig, seed: str, options: MethodOptions) -> tuple[TrainConfig, None]:
    if options.target_macs is None:
        raise ConfigError("uniform:<seed> needs a MACs target (grow bench sets it to the grown network's)")
    shape = options.extra["input_shape"]
    genotype = get_genotype(seed, num_classes=options.extra["num_classes"], in_chans=shape[0])
    scaled = match_macs(genotype, options.target_macs, shape)
    return dataclasses.replace(base, seed=seed, optimizer="sgd", genotype=genotype_to_dict(scaled)), None


@register_method("width")
def width(base: TrainConfig, arg: str, options: MethodOptions) -> tuple[TrainConfig, None]:
    seed, mult = split_width_arg(arg)
    genotype = get_genotype(seed, num_classes=options.extra.get("num_classes", 10),
                            in_chans=options.extra.get("input_shape", (3,))[0])
    scaled = uniform_genotype(genotype, mult)
    return dataclasses.replace(base, seed=seed, optimizer="sgd", genotype=genotype_to_dict(scaled)), None
