"""The literature growth baselines (baselines.literature_growth): Variance Transfer and Net2Net.

Unit tests check each method's widening on trained models of every family (function preservation,
the paper's pairing / transfer / copy-and-split, optimizer state) and Variance Transfer's
learning-rate rule; short in-process runs on the shipped sample data check the MACs target, the
growth log, the summary and an exact resume.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import search_spaces
from baselines import MethodOptions, MethodSpec, configure
from baselines.literature_growth import (
    Net2NetController,
    Net2NetSettings,
    VarianceTransferController,
    VTSettings,
    entry_births,
    split_pairs,
    subnetwork_rates,
)
from growth.config import TrainConfig
from growth.data import load_dataset
from growth.graph import channel_groups, find_group
from growth.operators import replicate
from growth.run import Run
from search_spaces import ResNetGenotype, build_model, genotype_of

FAMILIES = {
    "resnet-zeropad": lambda: search_spaces.create_model("resnet8-thin"),
    "resnet-conv": lambda: build_model(ResNetGenotype.uniform([4, 8, 16], [2, 1, 1], shortcut="conv")),
    "vgg": lambda: search_spaces.create_model("vgg16-thin"),
}


def _trained(family: str, steps: int = 3) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Tensor]:
    """A model with non-trivial weights, BatchNorm statistics and SGD momentum."""
    torch.manual_seed(0)
    model = FAMILIES[family]()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, x


def _rel_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _vt(target: float = 1e6) -> VarianceTransferController:
    controller = VarianceTransferController(target, search_spaces.get_genotype("resnet8-thin"), VTSettings())
    controller.generator.manual_seed(0)
    return controller


def _net2net(noise: float = 0.1) -> Net2NetController:
    controller = Net2NetController(1e6, Net2NetSettings(steps=4, grow_until_frac=0.4, min_growth=1.25,
                                                        noise=noise))
    controller.generator.manual_seed(0)
    return controller


# -- the widenings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_vt_widening_preserves_function_up_to_batchnorm_eps(family: str, mode: str) -> None:
    # Exact but for BatchNorm's ε: running var c²σ² + ε instead of c²(σ² + ε).
    _widen_every_group(family, mode, lambda trainer, group: _vt().widen_group(trainer, group.name, 5),
                       tolerance=1e-3)


def _widen_every_group(family: str, mode: str, widen: Any, tolerance: float) -> tuple:
    """Widen each channel group of a trained ``family`` model in turn with ``widen(trainer, group)``,
    checking after each that the output (in ``mode``) moved by at most ``tolerance``."""
    model, opt, x = _trained(family)
    trainer = SimpleNamespace(model=model, optimizer=opt)
    getattr(model, mode)()
    with torch.no_grad():
        before = model(x)
    for group in channel_groups(model):
        widen(trainer, group)
        getattr(model, mode)()
        with torch.no_grad():
            assert _rel_change(model(x), before) <= tolerance, group.name
    assert search_spaces.extract_genotype(model) == model.genotype
    return model, opt, x


def test_vt_pairs_new_units_and_transfers_the_old_weights_and_statistics() -> None:
    model, opt, _ = _trained("resnet-zeropad")
    group = find_group(model, "stage2")
    old, n = group.width, 6
    reader = model.get_submodule(group.consumers[0])           # a conv that reads stage 2 ...
    norm = model.get_submodule(group.consumers[0].replace("conv1", "bn1"))  # ... and its BatchNorm
    old_reader, old_mean, old_var = reader.weight.detach().clone(), norm.running_mean.clone(), norm.running_var.clone()
    momentum = opt.state[reader.weight]["momentum_buffer"].clone()
    detail = _vt().widen_group(SimpleNamespace(model=model, optimizer=opt), "stage2", n)  # type: ignore[arg-type]
    c = old / (old + n)
    assert detail == {"pairs": 3, "transfer": round(c, 6)}
    for name in group.producers:  # incoming V, V
        w = model.get_submodule(name).weight
        assert torch.equal(w[old::2][:3], w[old + 1::2][:3]) and w[old:].abs().sum() > 0
    w = reader.weight.detach()
    assert torch.equal(w[:, old::2], -w[:, old + 1::2]) and w[:, old:].abs().sum() > 0  # outgoing Z, -Z
    assert torch.allclose(w[:, :old], old_reader * c)                  # W_{t+1} = W_t · C_t / C_{t+1}
    assert torch.allclose(norm.running_mean, old_mean * c) and torch.allclose(norm.running_var, old_var * c * c)
    # Old weights and the new ones start on one scale: the transferred layer's.
    assert 0.5 < float(w[:, old:].pow(2).mean().sqrt() / w[:, :old].pow(2).mean().sqrt()) < 2
    # The optimizer keeps the old state, new entries at 0.
    state = opt.state[reader.weight]["momentum_buffer"]
    assert torch.equal(state[:, :old], momentum) and not state[:, old:].any()
    # The classifier has no BatchNorm to absorb the transfer: its old weights stay.
    fc_before = model.fc.weight.detach().clone()
    _vt().widen_group(SimpleNamespace(model=model, optimizer=opt), "stage3", 2)  # type: ignore[arg-type]
    assert torch.equal(model.fc.weight.detach()[:, :fc_before.shape[1]], fc_before)


def test_split_pairs_leaves_an_odd_channel_out() -> None:
    assert split_pairs(6) == (3, 0) and split_pairs(1) == (0, 1)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_net2net_widening_preserves_function_exactly(family: str, mode: str) -> None:
    model, opt, x = _widen_every_group(
        family, mode, lambda trainer, group: _net2net().widen_group(trainer, group.name, group.width + 3),
        tolerance=1e-5)
    model.train()
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()


def test_net2net_copies_incoming_and_splits_outgoing_weights_with_zero_sum_noise() -> None:
    model, opt, _ = _trained("resnet-zeropad")
    group = find_group(model, "stage1.block1.inner")
    old, n = group.width, 6
    producer, reader = model.get_submodule(group.producers[0]), model.get_submodule(group.consumers[0])
    reader_before = reader.weight.detach().clone()
    momentum_before = opt.state[reader.weight]["momentum_buffer"].clone()
    controller = _net2net()
    sources = torch.randint(old, (n,), generator=_copy_generator(controller.generator))  # the draw it will make
    controller.widen_group(SimpleNamespace(model=model, optimizer=opt), group.name, n)  # type: ignore[arg-type]
    copy_of = torch.cat([torch.arange(old), sources])
    assert torch.equal(producer.weight.detach()[old:], producer.weight.detach()[sources])   # incoming copied
    w, momentum = reader.weight.detach(), opt.state[reader.weight]["momentum_buffer"]
    for source in range(old):
        columns = (copy_of == source).nonzero().flatten()
        # The copies' columns sum to the source's: exact function preservation ...
        assert torch.allclose(w[:, columns].sum(1), reader_before[:, source], atol=1e-6)
        assert torch.allclose(momentum[:, columns].sum(1), momentum_before[:, source], atol=1e-6)
        if len(columns) > 1:  # ... yet the copies differ (the noise breaks their symmetry)
            assert not torch.equal(w[:, columns[0]], w[:, columns[1]])


def _copy_generator(generator: torch.Generator) -> torch.Generator:
    copy = torch.Generator()
    copy.set_state(generator.get_state())
    return copy


def test_grown_weights_have_the_strides_of_a_rebuilt_model() -> None:
    """A resumed run rebuilds the grown model and places it channels-last; the grown weights must have
    the same strides (a 1-channel stem's (C, 1, 3, 3) weight is contiguous in both layouts, and other
    strides pick another conv kernel: the runs would drift apart in the last bits)."""
    model = search_spaces.create_model("resnet8-thin", in_chans=1).to(memory_format=torch.channels_last)
    _net2net().widen_group(SimpleNamespace(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1)),
                           "stage1", 2)  # type: ignore[arg-type]
    rebuilt = build_model(model.genotype).to(memory_format=torch.channels_last)
    strides = {k: v.stride() for k, v in rebuilt.state_dict().items()}
    assert {k: v.stride() for k, v in model.state_dict().items()} == strides


def test_replicate_checks_its_sources() -> None:
    model = search_spaces.create_model("resnet8-thin")
    with pytest.raises(ValueError):
        replicate(model, "stage1", [4])
    with pytest.raises(ValueError):
        replicate(model, "stage1", [])


# -- Variance Transfer's learning-rate rule ---------------------------------------------------------


def test_entry_births_and_subnetwork_rates_follow_the_width_history() -> None:
    model, opt, _ = _trained("resnet-zeropad")
    history = [{g.name: g.width for g in channel_groups(model)}]
    _vt().widen_group(SimpleNamespace(model=model, optimizer=opt), "stage1.block1.inner", 4)  # type: ignore[arg-type]
    history.append({g.name: g.width for g in channel_groups(model)})
    births = entry_births(model, history)
    old = history[0]["stage1.block1.inner"]
    conv1, bn1, conv2 = (births[f"stages.0.0.{name}.weight"] for name in ("conv1", "bn1", "conv2"))
    assert not conv1[:old].any() and (conv1[old:] == 1).all() and (bn1[old:] == 1).all()
    assert not conv2[:, :old].any() and (conv2[:, old:] == 1).all()
    assert not births["fc.weight"].any() and not births["stem.conv.weight"].any()
    block = model.stages[0][0]
    new_sq = float(block.conv1.weight.detach()[old:].pow(2).sum() + block.conv2.weight.detach()[:, old:].pow(2).sum())
    all_sq = float(sum(p.detach().pow(2).sum() for p in model.parameters() if p.dim() >= 2))
    rates = subnetwork_rates(model, history)
    assert rates[0] == 1.0
    assert math.isclose(rates[1], math.sqrt(new_sq / (all_sq - new_sq)), rel_tol=1e-5)


def test_vt_learning_rate_rule_steps_new_entries_by_their_rate() -> None:
    """With the gradient scale, one SGD step moves an entry of sub-network t by exactly r_t times the
    global step, weight decay included."""
    model, _, x = _trained("resnet-zeropad")
    history = [{g.name: g.width for g in channel_groups(model)}]
    decay, lr = 5e-4, 0.1
    opt = torch.optim.SGD([{"params": [p for p in model.parameters() if p.dim() > 1]},
                           {"params": [p for p in model.parameters() if p.dim() <= 1], "weight_decay": 0.0}],
                          lr=lr, weight_decay=decay)
    controller = _vt()
    trainer = SimpleNamespace(model=model, optimizer=opt)
    controller.widen_group(trainer, "stage2", 4)  # type: ignore[arg-type]
    history.append({g.name: g.width for g in channel_groups(model)})
    controller.history, controller.rates = history, [1.0, 3.0]
    controller.restore(trainer)  # type: ignore[arg-type]
    weight = model.stages[1][0].conv2.weight
    old = history[0]["stage2"]
    model.train()
    opt.zero_grad()
    F.cross_entropy(model(x), torch.randint(0, 10, (16,))).backward()
    plain = weight.grad.detach().clone() + decay * weight.detach()
    before = weight.detach().clone()
    controller.after_backward(trainer)  # type: ignore[arg-type]
    opt.step()
    step = before - weight.detach()
    assert torch.allclose(step[:old], lr * plain[:old], atol=1e-7)
    assert torch.allclose(step[old:], 3.0 * lr * plain[old:], atol=1e-7)


# -- short runs on the sample data ------------------------------------------------------------------

TARGET_MACS = 1.2e6  # resnet8-thin at 28x28: 0.65M MACs
BUDGET = 3e10


def _run(spec: str, out: Path, controller_hook: Any = None, resume: bool = False) -> dict[str, Any]:
    """One cell as ``grow bench`` runs it (configure, Run.open, fit), in this process."""
    data = load_dataset("sample", val_size=None, subset=300, split_seed=0)
    shape = tuple(data.train_x.shape[1:])
    base = TrainConfig(data="sample", budget_flops=BUDGET, subset=300, seed_value=0, device="cpu",
                       checkpoint_every_s=1e9)
    options = MethodOptions(target_macs=TARGET_MACS, extra={"input_shape": shape, "num_classes": data.num_classes})
    name, _, arg = spec.partition(":")
    config, controller = configure(MethodSpec(name, arg or None), base, options)
    if controller_hook is not None:
        controller_hook(controller)
    run = Run.open(config, None if resume else out, out if resume else None, kind="bench")
    return run.fit(controller)


def _events(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "growth.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("literature")
    return {name: (out / name, _run(f"{name}:resnet8-thin", out / name)) for name in ("vt", "net2net")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vt", "net2net"])
def test_run_reaches_its_macs_target_within_budget(name: str, runs: dict) -> None:
    out, summary = runs[name]
    assert TARGET_MACS * 0.97 <= summary["macs"] <= TARGET_MACS * 1.02, summary["widths"]
    assert BUDGET - 3 * 128 * summary["forward_flops"] <= summary["train_flops"] <= BUDGET
    assert summary["method"] == name and summary["growth_steps_done"] == summary["growth_steps"]
    assert summary["start_widths"] == _events(out)[0]["start_widths"] != summary["widths"]
    assert genotype_of(build_model(search_spaces.genotype_from_dict(
        json.loads((out / "genotype.json").read_text())))).compact() == summary["widths"]


@pytest.mark.slow
def test_vt_starts_at_a_quarter_width_and_grows_in_eight_steps_by_half_the_budget(runs: dict) -> None:
    out, summary = runs["vt"]
    events = _events(out)
    plan = events[0]
    assert plan["event"] == "plan" and plan["grows"] and len(plan["step_fractions"]) == 8
    final = plan["final_widths"]
    assert all(abs(s - max(1, round(f / 4))) <= 1 for s_row, f_row in zip(summary["start_widths"], final)
               for s, f in zip(s_row, f_row))
    assert summary["widths"] == final
    checks = [e for e in events if e["event"] == "check"]
    assert len(checks) == 8 and all(e["fraction"] <= 0.5 + 0.02 for e in checks)
    widened = [e for e in events if e["event"] == "widen"]
    assert widened and all(e["output_change"] <= 1e-3 for e in widened)
    rates = [e for e in events if e["event"] == "lr_rates"]
    assert len(rates) == 8 and len(summary["lr_rates"]) == 9 and summary["lr_rates"][0] == 1.0
    assert all(r > 0 for r in summary["lr_rates"])


@pytest.mark.slow
def test_net2net_grows_on_grows_schedule_and_preserves_function(runs: dict) -> None:
    out, summary = runs["net2net"]
    events = _events(out)
    assert summary["start_widths"] == search_spaces.get_genotype("resnet8-thin").compact()
    checks = [e for e in events if e["event"] == "check"]
    assert len(checks) == 4 and all(e["fraction"] <= 0.4 + 0.02 for e in checks)
    widened = [e for e in events if e["event"] == "widen"]
    assert widened and all(e["output_change"] <= 1e-5 for e in widened)
    # Every group grew alike (to within rounding), the stem's narrow stage included.
    ratios = [w / s for w_row, s_row in zip(summary["widths"], summary["start_widths"]) for w, s in zip(w_row, s_row)]
    assert max(ratios) / min(ratios) < 1.4, summary["widths"]


class _Stop(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vt", "net2net"])
def test_run_resumes_identically(name: str, runs: dict, tmp_path: Path) -> None:
    """Stopped at its third growth step (after the last checkpoint, which was taken after the second),
    then resumed: the same weights, growth log and summary as the run that was never stopped."""
    reference, summary = runs[name]
    out = tmp_path / name

    def stop_at_third_step(controller: Any) -> None:
        on_eval = controller.on_eval

        def hook(trainer: Any, val_acc: float) -> None:
            if controller.steps_done == 2:
                raise _Stop
            on_eval(trainer, val_acc)

        controller.on_eval = hook

    with pytest.raises(_Stop):
        _run(f"{name}:resnet8-thin", out, stop_at_third_step)
    resumed = _run(f"{name}:resnet8-thin", out, resume=True)
    a = torch.load(reference / "weights.pt", weights_only=True)
    b = torch.load(out / "weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (reference / "growth.jsonl").read_text() == (out / "growth.jsonl").read_text()
    timing = ("train_time_s", "images_per_s")
    assert {k: v for k, v in summary.items() if k not in timing} == {k: v for k, v in resumed.items()
                                                                     if k not in timing}
