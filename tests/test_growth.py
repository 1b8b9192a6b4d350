"""Channel groups, growth operators (function preservation, optimizer state) and the controller."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import run_grow, start_grow

import search_spaces
from growth.dessilbi import DessiLBI, dessilbi_param_groups
from growth.graph import channel_groups, find_group
from growth.operators import deepen, prune, widen
from search_spaces import ResNetGenotype, build_model
from search_spaces.resnet import ResNetStage

# One seed per family and shortcut type.
FAMILIES = {
    "resnet-zeropad": lambda: search_spaces.create_model("resnet8-thin"),
    "resnet-conv": lambda: build_model(ResNetGenotype.uniform([4, 8, 16], [2, 1, 1], shortcut="conv")),
    "vgg": lambda: search_spaces.create_model("vgg16-thin"),
}


def _trained(family: str, steps: int = 3):
    """A model with non-trivial BN statistics and DessiLBI state (V, Γ, momentum)."""
    torch.manual_seed(0)
    model = FAMILIES[family]()
    opt = DessiLBI(dessilbi_param_groups(model), lr=0.1, nu=1.0, lam=0.01, weight_decay=1e-4)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, x


def _rel_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_widen_preserves_function_and_optimizer_state(family, mode):
    model, opt, x = _trained(family)
    getattr(model, mode)()
    with torch.no_grad():
        before = model(x)
    for group in channel_groups(model):
        producer = model.get_submodule(group.producers[0]).weight
        old_state = {k: v.clone() for k, v in opt.state[producer].items() if torch.is_tensor(v)}
        old_width = group.width
        widen(model, group.name, 3, opt)
        with torch.no_grad():
            assert _rel_change(model(x), before) <= 1e-5, group.name
        state = opt.state[producer]
        assert producer.shape[0] == old_width + 3
        for key in ("momentum_buffer", "V", "gamma"):
            assert torch.equal(state[key][:old_width], old_state[key]), (group.name, key)
            assert not state[key][old_width:].any(), (group.name, key)
        assert torch.equal(state["entry_step"][:old_width], old_state["entry_step"])
        assert (state["entry_step"][old_width:] == -1).all()
    assert search_spaces.extract_genotype(model) == model.genotype
    # The grown model keeps training with the same optimizer.
    model.train()
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()


def test_resized_optimizer_state_keeps_the_parameters_memory_format():
    model, opt, x = _trained("resnet-zeropad")
    model.to(memory_format=torch.channels_last)
    for group in channel_groups(model):
        widen(model, group.name, 2, opt)
    checked = 0
    for p, state in opt.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == p.shape and p.dim() == 4:
                assert value.stride() == p.stride(), key
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_deepen_preserves_function_and_registers_params(family):
    model, opt, x = _trained(family)
    for mode in ("eval", "train"):
        getattr(model, mode)()
        with torch.no_grad():
            before = model(x)
        n_params = sum(len(g["params"]) for g in opt.param_groups)
        deepen(model, 1, opt)
        with torch.no_grad():
            change = _rel_change(model(x), before)
        # VGG's inserted conv+BN is the identity in eval mode only (see growth.operators).
        if mode == "eval" or family.startswith("resnet"):
            assert change <= 1e-5, (family, mode, change)
        assert sum(len(g["params"]) for g in opt.param_groups) > n_params
    assert search_spaces.extract_genotype(model) == model.genotype
    # New convs are group-penalised, so their Γ path is tracked.
    new_conv = [m for m in model.stages[1][-1].modules() if isinstance(m, torch.nn.Conv2d)][0]
    model.train()
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    assert opt.support(new_conv.weight).shape == (new_conv.weight.shape[0],)


def test_rebuild_from_genotype_and_state_dict_after_growth():
    model, opt, x = _trained("resnet-zeropad")
    widen(model, "stage2", 4, opt)
    deepen(model, 2, opt)
    widen(model, "stage3.block2.inner", 4, opt)
    model.eval()
    rebuilt = build_model(search_spaces.genotype_from_dict(json.loads(json.dumps(
        search_spaces.genotype_to_dict(model.genotype)))))
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_resnet_stage_is_one_coupled_group():
    model = search_spaces.create_model("resnet20-thin")
    groups = {g.name: g for g in channel_groups(model)}
    assert len(groups) == 3 + 9  # three stage groups, one inner group per block
    stage1 = groups["stage1"]
    assert stage1.producers == ("stem.conv", "stages.0.0.conv2", "stages.0.1.conv2", "stages.0.2.conv2")
    assert "stages.1.0.conv1" in stage1.consumers and "stages.1.0.shortcut" in stage1.consumers
    assert groups["stage1.block2.inner"].producers == ("stages.0.1.conv1",)
    assert groups["stage1.block2.inner"].consumers == ("stages.0.1.conv2",)

    widen(model, "stage1", 4)
    # The stem, every block's last conv, every block's first conv input and stage 2's input change.
    assert model.stem.conv.weight.shape[0] == 8
    assert all(b.conv2.weight.shape[0] == 8 and b.conv1.weight.shape[1] == 8 for b in model.stages[0])
    assert model.stages[1][0].conv1.weight.shape[1] == 8
    # ...and nothing else: inner convs and stage 2's outputs keep their widths.
    assert all(b.conv1.weight.shape[0] == 4 for b in model.stages[0])
    assert model.stages[1][0].conv2.weight.shape[0] == 8
    # The new stage-1 channels are not routed into stage 2 by the parameter-free shortcut.
    assert model.genotype.stages[1].shortcut_src == [0, 1, 2, 3]


def test_prune_keeps_residual_stages_consistent():
    torch.manual_seed(0)
    model = search_spaces.create_model("resnet20-thin").eval()
    x = torch.randn(4, 3, 32, 32)
    prune(model, "stage1", [0, 2, 3])
    prune(model, "stage2", [1, 3, 5, 7])
    assert model.genotype.stages[0].width == 3
    assert all(b.conv2.weight.shape[0] == 3 for b in model.stages[0])
    assert model.stages[1][0].conv1.weight.shape[1] == 3
    assert model(x).shape == (4, 10)
    assert search_spaces.extract_genotype(model) == model.genotype
    with pytest.raises(ValueError):
        prune(model, "stage1", [0, 0])


def test_find_group_names_known_groups():
    with pytest.raises(KeyError, match="stage1"):
        find_group(search_spaces.create_model("resnet8-thin"), "stage9")


def _grow_cmd(out: Path, budget: str = "1.5e11", extra: tuple = ()) -> list[str]:
    return ["--seed", "resnet8-thin", "--data", "sample",
            "--subset", "1500", "--budget", budget, "--seed-value", "0", "--target-macs", "1.5e6",
            "--quiet", "--out", str(out), *extra]


@pytest.mark.slow
def test_short_growth_run_grows_and_ends_within_budget(tmp_path):
    out = tmp_path / "grow"
    run_grow(*_grow_cmd(out), check=True)
    summary = json.loads((out / "summary.json").read_text())
    events = [json.loads(line) for line in (out / "growth.jsonl").read_text().splitlines()]
    widened = [e for e in events if e["event"] == "widen"]
    assert widened, "no group grew"
    assert all(e["output_change"] <= 1e-5 for e in events if e["event"] in ("widen", "deepen"))
    assert all(e["new_width"] > e["old_width"] for e in widened)
    cost = 3 * summary["forward_flops"]
    assert summary["budget_flops"] - cost < summary["train_flops"] <= summary["budget_flops"]
    assert summary["macs"] <= 1.5e6 < summary["macs"] * 1.25  # grew to the target, not past it
    genotype = search_spaces.genotype_from_dict(json.loads((out / "genotype.json").read_text()))
    assert genotype.compact() == summary["widths"] != search_spaces.get_genotype("resnet8-thin").compact()
    # Growth is front-loaded: done by 40% of the budget (the default), in 4 steps at most.
    assert all(e["fraction"] <= 0.4 + 0.02 for e in widened)
    assert len({e["step"] for e in widened}) <= 4
    model = build_model(genotype)
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))


def _grown_checkpoint(run: Path) -> bool:
    """Whether the run's checkpoint holds a network wider than its seed (checkpoints are written atomically)."""
    try:
        state = torch.load(run / "checkpoint.pt", weights_only=False)
    except (FileNotFoundError, EOFError, RuntimeError):
        return False
    widths = search_spaces.genotype_from_dict(state["genotype"]).compact()
    return widths != search_spaces.get_genotype("resnet8-thin").compact()


@pytest.mark.slow
def test_a_run_killed_after_it_grew_resumes_to_the_uninterrupted_runs_bits(tmp_path):
    """SIGKILL at a random (seeded) moment after the first widening has been checkpointed: resume must
    rebuild the grown network, its resized V/Γ/entry steps and per-layer λ groups, and end bit for bit where
    the uninterrupted run ends (weights and growth log)."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    run_grow(*_grow_cmd(reference), check=True)
    proc = start_grow(*_grow_cmd(killed))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not _grown_checkpoint(killed):
        time.sleep(0.05)
    time.sleep(random.Random(0).uniform(0.0, 1.0))
    assert proc.poll() is None, "run finished before it could be killed; raise the budget"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists() and _grown_checkpoint(killed)
    run_grow("--resume", str(killed), "--quiet", check=True)
    a = torch.load(reference / "weights.pt", weights_only=True)
    b = torch.load(killed / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref_events = (reference / "growth.jsonl").read_text()
    assert ref_events == (killed / "growth.jsonl").read_text()


@pytest.mark.slow
def test_growth_with_deepen_adds_identity_blocks_whose_convs_inherit_lam(tmp_path):
    out = tmp_path / "deepen"
    run_grow("--seed", "resnet8-thin", "--budget", "2e11", "--data", "sample", "--subset", "800", "--seed-value", "0",
             "--target-macs", "4e6", "--deepen", "--quiet", "--out", str(out), check=True)
    events = [json.loads(line) for line in (out / "growth.jsonl").read_text().splitlines()]
    deepened = [e for e in events if e["event"] == "deepen"]
    assert deepened and all(e["output_change"] <= 1e-5 for e in deepened)
    lam = json.loads((out / "summary.json").read_text())["lam"]
    for e in deepened:  # the new block's convs have a λ of their own, inherited from the block before
        s, b = e["stage"] - 1, e["new_block"] - 1
        assert f"stages.{s}.{b}.conv1" in lam and f"stages.{s}.{b}.conv2" in lam


def test_a_new_block_takes_its_stages_median_inner_width_not_the_last_blocks():
    genotype = ResNetGenotype(stages=[ResNetStage(8, [12, 20, 6])], in_chans=3)
    deeper = search_spaces.family_of(genotype).deepened(genotype, 0)
    assert deeper.stages[0].inner == [12, 20, 6, 12]
    again = search_spaces.family_of(deeper).deepened(deeper, 0)
    assert again.stages[0].inner[-1] == 12          # no funnel: a lagging last block is not copied on
