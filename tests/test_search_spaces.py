"""Tests for search_spaces: the seed registry, genotypes (JSON round trip), builders, timm references."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import search_spaces
from growth.compute import measure_cost
from search_spaces import (
    TimmGenotype,
    UnknownSeedError,
    build_model,
    create_model,
    extract_genotype,
    genotype_from_dict,
    genotype_json,
    genotype_to_dict,
    get_genotype,
    list_seeds,
)

SEEDS = list_seeds()


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _perturb_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Give BatchNorm layers non-trivial affine parameters and running statistics."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(1 + torch.rand(m.running_var.shape, generator=gen))


def test_registry_lists_the_expected_seeds() -> None:
    assert SEEDS == sorted(SEEDS)
    for name in ("resnet20", "resnet20-thin", "resnet8-thin", "resnet56", "vgg16", "vgg16-thin"):
        assert name in SEEDS
    assert all("_" not in name for name in SEEDS)  # listed as users type them


@pytest.mark.parametrize("name", SEEDS)
def test_genotype_json_round_trip(name: str) -> None:
    model = create_model(name)
    genotype = model.genotype
    assert genotype == get_genotype(name)
    text = json.dumps(genotype_to_dict(genotype))
    back = genotype_from_dict(json.loads(text))
    assert back == genotype
    assert type(back) is type(genotype)
    assert genotype_json(back) == genotype_json(genotype)
    assert genotype_to_dict(back) == genotype_to_dict(genotype)


@pytest.mark.parametrize("name", SEEDS)
def test_extract_genotype_inverts_build_model(name: str) -> None:
    genotype = get_genotype(name)
    assert extract_genotype(build_model(genotype)) == genotype
    # also for a non-default number of classes and input channels
    genotype = get_genotype(name, num_classes=7, in_chans=1)
    assert (genotype.num_classes, genotype.in_chans) == (7, 1)
    assert extract_genotype(build_model(genotype)) == genotype


def _forward_backward(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], num_classes)
    assert torch.isfinite(out).all()
    loss = nn.functional.cross_entropy(out, torch.arange(x.shape[0]) % num_classes)
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", SEEDS)
def test_forward_backward_gives_finite_grads(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    _forward_backward(model, torch.randn(2, 3, 32, 32), 10)


@pytest.mark.parametrize("name", ["resnet8-thin", "vgg16-thin"])
def test_grayscale_28px_seven_classes(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=1)
    assert model.genotype.in_chans == 1 and model.genotype.num_classes == 7
    _forward_backward(model, torch.randn(2, 1, 28, 28), 7)


@pytest.mark.parametrize("name", SEEDS)
def test_state_dict_reload_reproduces_outputs(name: str) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = create_model(name)
    _perturb_bn(model, gen)
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=gen)
    with torch.no_grad():
        expected = model(x)
    torch.manual_seed(123)  # a different init, overwritten by the state_dict
    clone = build_model(model.genotype)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    with torch.no_grad():
        got = clone(x)
    assert torch.equal(got, expected)


def test_resnet20_macs() -> None:
    cost = measure_cost(create_model("resnet20"), (3, 32, 32))
    assert cost.macs == pytest.approx(40.8e6, rel=0.01)
    assert cost.params == pytest.approx(0.27e6, rel=0.01)


def test_vgg16_macs_and_params() -> None:
    cost = measure_cost(create_model("vgg16"), (3, 32, 32))
    assert cost.macs == pytest.approx(313e6, rel=0.01)
    assert cost.params == pytest.approx(14.7e6, rel=0.01)


@pytest.mark.parametrize("spelling", ["resnet20-thin", "resnet20_thin", "ResNet20-Thin", " resnet20_thin "])
def test_hyphen_and_underscore_names(spelling: str) -> None:
    model = create_model(spelling)
    assert model.genotype == get_genotype("resnet20-thin")
    assert model.genotype.compact() == [[4, 4, 4, 4], [8, 8, 8, 8], [16, 16, 16, 16]]


def test_unknown_seed_names_close_seeds() -> None:
    with pytest.raises(UnknownSeedError) as excinfo:
        create_model("resnet20-thn")
    message = str(excinfo.value)
    assert "resnet20-thin" in message
    assert "resnet20-thn" in message
    assert "\n" not in message
    assert not message.startswith(("'", '"'))  # not KeyError's quoted repr
    assert isinstance(excinfo.value, KeyError)  # callers catching KeyError still work


def test_unknown_seed_without_close_match() -> None:
    with pytest.raises(UnknownSeedError) as excinfo:
        get_genotype("zzzzzzzz")
    message = str(excinfo.value)
    assert "zzzzzzzz" in message and "did you mean" not in message and "\n" not in message


@pytest.mark.slow
def test_timm_resnet18_is_adapted_to_small_inputs(no_network: None) -> None:
    pytest.importorskip("timm")
    torch.manual_seed(0)
    model = create_model("timm:resnet18", num_classes=7)
    assert model.genotype == TimmGenotype("resnet18", 3, 7)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    first = convs[0]
    assert first.kernel_size == (3, 3) and first.stride == (1, 1) and first.padding == (1, 1)
    assert first.in_channels == 3
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    # the genotype survives JSON and names the same reference
    g = genotype_from_dict(json.loads(json.dumps(genotype_to_dict(model.genotype))))
    assert g == model.genotype and extract_genotype(model) == model.genotype


def test_timm_in_chans(no_network: None) -> None:
    pytest.importorskip("timm")
    model = create_model("timm:resnet18", num_classes=3, in_chans=1)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1 and first.kernel_size == (3, 3)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


def test_unknown_timm_name(no_network: None) -> None:
    pytest.importorskip("timm")
    with pytest.raises(UnknownSeedError) as excinfo:
        create_model("timm:resnet18x")
    message = str(excinfo.value)
    assert "resnet18x" in message and "\n" not in message
    with pytest.raises(UnknownSeedError):
        get_genotype("timm:definitely-not-a-model")


def test_genotype_from_dict_rejects_malformed_input() -> None:
    with pytest.raises(ValueError):
        genotype_from_dict({"family": "nope"})
    with pytest.raises(ValueError):
        genotype_from_dict({"family": "resnet"})  # no stages
    with pytest.raises(ValueError):
        genotype_from_dict({"family": "vgg", "stages": [[8]], "bogus": 1})


def test_build_model_rejects_non_genotypes() -> None:
    with pytest.raises(TypeError):
        build_model({"family": "resnet"})  # a dict, not a genotype


def test_package_exports() -> None:
    for name in search_spaces.__all__:
        assert hasattr(search_spaces, name)
