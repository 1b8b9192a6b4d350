"""Tests for growth.compute: budget parsing, the FLOP ledger, measured and cached model cost."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from growth.compute import TRAIN_FLOPS_PER_FORWARD_FLOP, Ledger, ModelCost, measure_cost, parse_amount, parse_budget
from search_spaces import VGGGenotype, build_model, create_model, get_genotype

# --------------------------------------------------------------------------- parse_budget


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2e17", 2e17),
        ("2.5e16", 2.5e16),
        ("500T", 5e14),
        ("1P", 1e15),
        ("3G", 3e9),
        ("3 G", 3e9),          # a space before the suffix is allowed
        ("3g", 3e9),           # suffixes in any case
        ("500t", 5e14),
        ("1p", 1e15),
        ("2k", 2e3),
        ("2K", 2e3),
        ("7M", 7e6),
        ("1.5T", 1.5e12),
        (".5T", 5e11),
        ("1e3", 1e3),
        ("2E17", 2e17),
        ("2e+17", 2e17),
        ("12", 12.0),
        ("  2e17  ", 2e17),    # surrounding blanks are ignored
        ("5TFLOPs", 5e12),     # an optional unit
        ("5 TFLOPs", 5e12),
        ("5tflops", 5e12),
        ("1e14flop", 1e14),
    ],
)
def test_parse_budget_accepts(text: str, expected: float) -> None:
    assert parse_budget(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("value", [2e17, 1000, 2.5e16, 1])
def test_parse_budget_accepts_numbers(value: float) -> None:
    assert parse_budget(value) == pytest.approx(float(value), rel=1e-12)


@pytest.mark.parametrize(
    "text",
    ["0", "0.0", "0T", "-1", "-5", "-1e17", "+-1", "nan", "NaN", "inf", "-inf", "Infinity", "junk", "",
     "   ", "1e400", "1e-400", "T", "1TT", "1.2.3", "2e17 2e17", "1 X", "e17", "1Z", "1e17 FLOPS!",
     "2e", "2E"],  # no exa suffix: a dangling exponent is a typo, not 2e18
)
def test_parse_budget_rejects(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_budget(text)
    message = str(excinfo.value)
    assert message and "\n" not in message


@pytest.mark.parametrize("value", [0, -1, -2.5e16, float("nan"), float("inf"), float("-inf")])
def test_parse_budget_rejects_bad_numbers(value: float) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_budget(value)
    assert "\n" not in str(excinfo.value)


def test_parse_budget_error_names_the_input() -> None:
    with pytest.raises(ValueError, match="junk"):
        parse_budget("junk")
    with pytest.raises(ValueError, match="positive"):
        parse_budget("0")


@pytest.mark.parametrize("text, wrong", [
    ("-1", "is negative"), ("-2.5e16", "is negative"), ("-5T", "is negative"), ("1e400", "is infinite (beyond"),
    ("inf", "is infinite"), ("nan", "is not a number"), ("0", "is zero"), ("0T", "is zero"),
    ("1e-400", "is zero (below"), ("junk", "cannot read"), ("1 X", "cannot read"),
])
def test_parse_amount_says_what_is_wrong(text: str, wrong: str) -> None:
    # '-1' once read as unreadable and '1e400' as not positive
    for unit in ("FLOPs", "MACs"):
        with pytest.raises(ValueError) as excinfo:
            parse_amount(text, unit)
        message = str(excinfo.value)
        assert wrong in message and repr(text) in message and unit in message and "\n" not in message
    with pytest.raises(ValueError) as excinfo:
        parse_budget(text)
    assert (f"budget {text!r} {wrong}" if "cannot" not in wrong else f"{wrong} budget {text!r}") in str(excinfo.value)


def test_parse_amount_reads_its_unit() -> None:
    assert parse_amount("4M MACs", "MACs") == parse_amount("4e6", "MACs") == 4e6
    with pytest.raises(ValueError, match="give MACs like"):
        parse_amount("5TFLOPs", "MACs")  # a FLOP count given for MACs


# --------------------------------------------------------------------------- Ledger


def test_ledger_charge_and_fraction() -> None:
    ledger = Ledger(budget_flops=1e9)
    assert ledger.fraction_spent == 0.0 and ledger.remaining_flops == 1e9
    ledger.charge(4e8, samples=10)
    assert ledger.spent_flops == 4e8 and ledger.samples == 10
    assert ledger.fraction_spent == pytest.approx(0.4)
    assert ledger.remaining_flops == pytest.approx(6e8)
    ledger.charge(1e8)  # samples default to 0
    assert ledger.samples == 10 and ledger.fraction_spent == pytest.approx(0.5)


def test_ledger_eval_is_not_charged() -> None:
    ledger = Ledger(budget_flops=1e9)
    ledger.record_eval(5e8)
    ledger.record_eval(5e8)
    assert ledger.eval_flops == 1e9
    assert ledger.spent_flops == 0 and ledger.fraction_spent == 0 and ledger.remaining_flops == 1e9


def test_ledger_affordable_samples_never_overruns() -> None:
    ledger = Ledger(budget_flops=1e9)
    ledger.charge(4e8)
    assert ledger.affordable_samples(1e8) == 6
    assert ledger.affordable_samples(7e8) == 0
    assert ledger.affordable_samples(6e8) == 1
    assert ledger.affordable_samples(1.1e8) == 5  # 5.45 -> 5
    ledger = Ledger(budget_flops=1000.0)
    for cost in (1.0, 3.0, 7.0, 999.0, 1000.0, 1001.0):
        n = ledger.affordable_samples(cost)
        assert n * cost <= ledger.remaining_flops < (n + 1) * cost


def test_ledger_overspent_is_capped() -> None:
    ledger = Ledger(budget_flops=100.0)
    ledger.charge(150.0)
    assert ledger.fraction_spent == 1.0
    assert ledger.remaining_flops == 0.0
    assert ledger.affordable_samples(1.0) == 0


def test_ledger_state_dict_round_trip() -> None:
    ledger = Ledger(budget_flops=1e9)
    ledger.charge(3e8, samples=7)
    ledger.record_eval(2e7)
    clone = Ledger.from_state_dict(ledger.state_dict())
    assert clone == ledger
    assert set(ledger.state_dict()) == {"budget_flops", "spent_flops", "eval_flops", "samples"}


# --------------------------------------------------------------------------- measure_cost


def test_model_cost_units() -> None:
    cost = ModelCost(params=10, forward_flops=1000)
    assert cost.macs == 500
    assert cost.train_flops_per_sample == TRAIN_FLOPS_PER_FORWARD_FLOP * 1000 == 3000
    assert cost.to_dict() == {"params": 10, "forward_flops": 1000, "macs": 500}


@pytest.mark.slow
def test_measure_cost_counts_macs_as_half_the_flops() -> None:
    # one 3x3 conv 1->8 on 4x4 (8*9*16 = 1152 MACs) and a linear 8->3 (24 MACs); BN/ReLU/pool uncounted
    genotype = VGGGenotype([[8]], in_chans=1, num_classes=3)
    cost = measure_cost(build_model(genotype), (1, 4, 4))
    assert cost.macs == 1152 + 24
    assert cost.forward_flops == 2 * cost.macs
    assert cost.params == 8 * 9 + 2 * 8 + 8 * 3 + 3
    assert cost.train_flops_per_sample == 3 * cost.forward_flops


def test_measure_cost_is_cached_per_architecture_and_shape() -> None:
    model = create_model("resnet8-thin")
    first = measure_cost(model, (3, 32, 32))
    assert measure_cost(model, (3, 32, 32)) is first
    # same architecture, other instance or the bare genotype: same cache entry
    assert measure_cost(create_model("resnet8-thin"), (3, 32, 32)) is first
    assert measure_cost(get_genotype("resnet8-thin"), (3, 32, 32)) is first
    assert measure_cost(model, [3, 32, 32]) is first
    # another input size is another entry, cheaper for fewer pixels
    smaller = measure_cost(model, (3, 16, 16))
    assert smaller is not first and smaller.forward_flops < first.forward_flops
    assert smaller.params == first.params
    assert first.forward_flops == 2 * first.macs
    assert first.params == sum(p.numel() for p in model.parameters())


def test_measure_cost_leaves_the_model_alone() -> None:
    model = create_model("resnet8-thin", in_chans=1, num_classes=5)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure_cost(model, (1, 28, 28))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_measure_cost_leaves_the_global_rng_alone() -> None:
    """Pricing an architecture must not draw from torch's global RNG: growth initialises new filters
    from it, and whether a cost was cached (process history, resume) must not change them."""
    genotype = get_genotype("resnet8-thin", num_classes=9)
    model = build_model(get_genotype("vgg16-thin", num_classes=9))
    shape = (3, 20, 20)  # a shape nothing else measures: a cache miss, so a probe gets built
    torch.manual_seed(0)
    state = torch.get_rng_state()
    measure_cost(genotype, shape)
    assert torch.equal(torch.get_rng_state(), state)
    measure_cost(model, shape)
    assert torch.equal(torch.get_rng_state(), state)


def test_measure_cost_of_a_plain_module() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    cost = measure_cost(model, (3, 2, 2))
    assert cost.params == 12 * 5 + 5
    assert cost.forward_flops == 2 * 12 * 5
    assert math.isclose(cost.macs, 60)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_counting_from_shapes_equals_measuring_for_every_seed(shape: tuple[int, int, int]) -> None:
    """`grow seeds` counts with module hooks (FlopCounterMode would import TorchDynamo, seconds); the table
    it prints must be what measure_cost says."""
    from growth.compute import count_cost
    from search_spaces import list_seeds

    for name in list_seeds():
        genotype = get_genotype(name, in_chans=shape[0])
        assert count_cost(genotype, shape) == measure_cost(genotype, shape), name
