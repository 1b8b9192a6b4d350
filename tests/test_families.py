"""Every registered model family through its family object (search_spaces.family.Family): the graph
addresses the built modules, widening and deepening keep the function, pruning and block removal keep
the genotype consistent, analytic FLOPs match measured ones, and each family lives in its own module."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import search_spaces
from growth.compute import measure_cost
from growth.graph import channel_groups, groups_of_genotype
from growth.operators import deepen, deepened_genotype, prune, remove_block, resized_genotype, widen
from search_spaces import FamilyError, family_of, get_genotype, list_families, list_seeds

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = list_families()
SMALL_SEEDS = {"resnet": "resnet8-thin", "vgg": "vgg16-thin"}  # other families: their first seed
SHAPE = (3, 16, 16)
OPS = {"input", "conv", "route", "add", "linear"}

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _ids(family) -> str:
    return family.name


def seed_of(family) -> str | None:
    """A small registered seed of ``family``; None for a family without seeds (timm references)."""
    if family.name in SMALL_SEEDS:
        return SMALL_SEEDS[family.name]
    return next((name for name in list_seeds() if family_of(get_genotype(name)) is family), None)


def _seeded(family) -> str:
    seed = seed_of(family)
    if seed is None:
        pytest.skip(f"the {family.name!r} family registers no seed (a reference family, build only)")
    return seed


def _model(family) -> nn.Module:
    """The family's small seed with non-trivial BatchNorm parameters and statistics, in eval mode."""
    torch.manual_seed(0)
    model = search_spaces.create_model(_seeded(family))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).norm() / b.norm()) <= 1e-5


def _x() -> torch.Tensor:
    return torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))


def test_every_shipped_family_is_registered() -> None:
    assert {"resnet", "vgg", "timm"} <= {f.name for f in FAMILIES}
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)
    with pytest.raises(TypeError):
        family_of({"family": "resnet"})  # a dict, not a genotype


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_family_is_found_by_genotype_and_model_and_round_trips(family) -> None:
    model = _model(family)
    genotype = model.genotype
    assert isinstance(genotype, family.genotype_type) and genotype.family == family.name
    assert family_of(genotype) is family and family_of(model) is family
    assert family.extract(model) == genotype == search_spaces.extract_genotype(model)
    assert search_spaces.genotype_from_dict(genotype.to_dict()) == genotype


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_graph_addresses_the_built_modules(family) -> None:
    model = _model(family)
    genotype = model.genotype
    graph = family.graph(genotype)
    modules = dict(model.named_modules())
    for name, data in graph.nodes(data=True):
        assert data["op"] in OPS, name
        if data["op"] == "input":
            assert data["width"] == genotype.in_chans
        elif data["op"] == "conv":
            assert isinstance(modules[name], nn.Conv2d) and isinstance(modules[data["norm"]], nn.BatchNorm2d)
            assert modules[name].out_channels == family.group_width(genotype, data["key"])
        elif data["op"] == "linear":
            assert isinstance(modules[name], nn.Linear)
        elif data["op"] == "route":
            assert not list(modules[name].parameters())  # parameter-free routing
    assert all(isinstance(t, bool) for _, _, t in graph.edges(data="tied") if t is not None)
    groups = groups_of_genotype(genotype)
    assert len({g.name for g in groups}) == len(groups)
    assert all(g.name == family.group_name(g.key) for g in groups)
    assert all(modules[p].out_channels == g.width for g in groups for p in g.producers)


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_widening_every_group_preserves_the_function(family) -> None:
    model, x = _model(family), _x()
    before = _out(model, x)
    for group in channel_groups(model):
        expected = family.resized(model.genotype, group.key, list(range(group.width)), 2)
        assert resized_genotype(model.genotype, group, torch.arange(group.width), 2) == expected
        widen(model, group.name, 2)
        assert model.genotype == expected == family.extract(model), group.name
        assert family.group_width(model.genotype, group.key) == group.width + 2
        assert _close(_out(model, x), before), group.name
    model.train()
    before = _out(model, x)
    widen(model, channel_groups(model)[0].name, 3)  # new channels have their own BN statistics
    assert _close(_out(model, x), before)


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_deepening_every_stage_preserves_the_function_where_supported(family) -> None:
    model, x = _model(family), _x()
    try:
        family.deepened(model.genotype, 0)
    except FamilyError:
        pytest.skip(f"the {family.name!r} family does not deepen")
    before = _out(model, x)
    for stage in range(family.num_stages(model.genotype)):
        depth = family.stage_depth(model.genotype, stage)
        expected = family.deepened(model.genotype, stage)
        deepen(model, stage)
        assert model.genotype == expected == family.extract(model)
        assert family.stage_depth(model.genotype, stage) == depth + 1
        assert _close(_out(model, x), before), stage  # eval mode: exact for every family
    with pytest.raises(FamilyError, match="out of range"):
        deepened_genotype(model.genotype, family.num_stages(model.genotype))


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_pruned_genotype_rebuilds_the_same_network(family) -> None:
    model, x = _model(family), _x()
    for group in channel_groups(model):
        prune(model, group.name, list(range(0, group.width, 2))[::-1])  # every other channel, reversed
    assert family.extract(model) == model.genotype
    rebuilt = family.build(search_spaces.genotype_from_dict(model.genotype.to_dict()))
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(_out(rebuilt.eval(), x), _out(model, x))  # the routing follows the kept channels


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_removable_blocks_follow_the_one_rule(family) -> None:
    model, x = _model(family), _x()
    genotype = model.genotype
    removable = set(family.removable_blocks(genotype))
    for stage in range(family.num_stages(genotype)):
        for block in range(family.stage_depth(genotype, stage)):
            if (stage, block) not in removable:
                with pytest.raises(FamilyError):
                    family.without_block(genotype, stage, block)
            if family.stage_depth(genotype, stage) == 1:  # a stage keeps one block
                with pytest.raises(FamilyError):
                    remove_block(copy.deepcopy(model), stage, block)
    if not removable:
        return
    for stage in range(family.num_stages(genotype)):
        deepen(model, stage)
    for stage, block in family.removable_blocks(model.genotype):
        trial = copy.deepcopy(model)
        norm = trial.get_submodule(family.branch_norm(stage, block))
        with torch.no_grad():  # the branch scaled by 0: the block is the identity
            norm.weight.zero_()
            norm.bias.zero_()
        before = _out(trial, x)
        remove_block(trial, stage, block)
        assert trial.genotype == family.without_block(model.genotype, stage, block) == family.extract(trial)
        assert _close(_out(trial, x), before), (stage, block)


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_uniform_scaling(family) -> None:
    genotype = get_genotype(_seeded(family))
    assert family.scaled(genotype, 1.0) == genotype
    scaled = family.scaled(genotype, 1.5)
    widths = [max(1, round(1.5 * g.width)) for g in groups_of_genotype(genotype)]
    assert [g.width for g in groups_of_genotype(scaled)] == widths
    assert family.extract(family.build(scaled)) == scaled


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_analytic_flops_equal_measured_ones_where_the_family_has_them(family) -> None:
    genotype = get_genotype(_seeded(family))
    try:
        family.forward_flops(genotype, SHAPE)
    except FamilyError:
        pytest.skip(f"the {family.name!r} family has no analytic FLOP count")
    groups = groups_of_genotype(genotype)
    pruned = family.resized(genotype, groups[-1].key, [0], 0)
    for g in (genotype, family.scaled(genotype, 1.5), pruned):
        assert family.forward_flops(g, SHAPE) == measure_cost(g, SHAPE).forward_flops


def test_a_reference_family_refuses_growth_in_one_line() -> None:
    genotype = search_spaces.TimmGenotype("resnet18")
    family = family_of(genotype)
    for call in (lambda: family.graph(genotype), lambda: family.scaled(genotype, 2.0),
                 lambda: family.deepened(genotype, 0), lambda: family.without_block(genotype, 0, 0),
                 lambda: family.forward_flops(genotype, SHAPE), lambda: groups_of_genotype(genotype)):
        with pytest.raises(FamilyError, match="'timm' model$"):
            call()
    assert family.removable_blocks(genotype) == [] and family.routes_into(genotype, ("stage", 1)) == []
    with pytest.raises(FamilyError, match="^cannot deepen a 'timm' model$"):
        deepened_genotype(genotype, 0)


# -------------------------------------------------------------------------- one module per family


def _identifiers(path: Path) -> set[str]:
    """Names a module uses in code (not in docstrings or comments): identifiers, attributes, imported
    names and the words of its string constants."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.update(node.name.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            names.update(re.findall(r"\w+", node.value))
    return names


def _imports(path: Path, package: str | None = None) -> set[str]:
    """The modules a file imports (``from a import b`` counts as ``a`` and ``a.b``; relative ones are
    resolved in ``package``, by default the file's own)."""
    package = package or ".".join(path.relative_to(ROOT).parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


SOURCES = sorted(p for package in ("search_spaces", "growth", "baselines") for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("family", FAMILIES, ids=_ids)
def test_each_family_lives_in_its_own_module(family) -> None:
    """Its classes are named only in its module (and re-exported by the package), and no other module
    imports it: nobody else tests a genotype's type; they ask ``family_of`` instead."""
    module = type(family).__module__
    home = ROOT / (module.replace(".", "/") + ".py")
    assert home.exists() and family.genotype_type.__module__ == module
    own = {type(family).__name__, family.genotype_type.__name__}
    if family.module_type is not None:
        assert family.module_type.__module__ == module
        own.add(family.module_type.__name__)
    exports = ROOT / "search_spaces" / "__init__.py"  # the registry's lazy exports and family loader
    named = {f"{path.relative_to(ROOT)}: {sorted(own & _identifiers(path))}" for path in SOURCES
             if path not in (home, exports) and own & _identifiers(path)}
    assert not named
    importers = [str(path.relative_to(ROOT)) for path in SOURCES
                 if path != home and any(m == module or m.startswith(module + ".") for m in _imports(path))]
    assert not importers


def test_the_one_module_check_sees_code_but_not_prose(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text('"""Mentions VGGGenotype in prose."""\n# and VGGGenotype here\n'
                    'def f(g):\n    """VGGGenotype."""\n    return isinstance(g, search_spaces.vgg.VGG)\n'
                    'from .vgg import VGGFamily\nx = getattr(m, "ResNetGenotype")\n')
    found = _identifiers(path)
    assert {"VGG", "VGGFamily", "ResNetGenotype"} <= found and "VGGGenotype" not in found
    assert {"search_spaces.vgg", "search_spaces.vgg.VGGFamily"} <= _imports(path, "search_spaces")
