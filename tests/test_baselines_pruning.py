"""Pruning baselines (slimming, dessilbi-prune, sss): global pruning to a MACs target through coupled
channel groups, each method's mechanism, and their runs end to end (budget, events, resume)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import search_spaces
from baselines import MethodOptions, configure, parse_method
from baselines.pruning import bn_scale_scores, eval_every_dividing, group_scores, plan_prune_to_macs, prune_to_macs
from baselines.slimming import SlimmingController
from baselines.sss import SSSController
from growth.compute import measure_cost
from growth.config import TrainConfig
from growth.graph import channel_groups, find_group, groups_of_genotype
from growth.operators import resized_genotype
from growth.run import Run
from search_spaces import ResNetGenotype, build_model

SHAPE = (1, 28, 28)  # the shipped sample data
FAMILIES = {
    "resnet-zeropad": lambda: search_spaces.create_model("resnet20-thin", in_chans=1),
    "resnet-conv": lambda: build_model(ResNetGenotype.uniform([4, 8, 16], [2, 2, 1], shortcut="conv",
                                                              in_chans=1)),
    "vgg": lambda: search_spaces.create_model("vgg16-thin", in_chans=1),
}


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm parameters and statistics, so that pruning the wrong channel shows."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)


def _one_channel_step(genotype) -> int:
    """The most MACs that giving one group one channel back can add: the target's granularity."""
    macs = measure_cost(genotype, SHAPE).macs
    return max(measure_cost(resized_genotype(genotype, g, torch.arange(g.width), 1), SHAPE).macs - macs
               for g in groups_of_genotype(genotype))


def _fake_trainer(model, optimizer=None):
    return SimpleNamespace(model=model, optimizer=optimizer, device=torch.device("cpu"), input_shape=SHAPE,
                           cost=measure_cost(model, SHAPE))


def _run(tmp_path: Path, method: str, budget_batches: float, target_macs: float | None = None,
         extra: dict | None = None, name: str = "run"):
    """A method run on the sample data: ``budget_batches`` batches of 32 at the seed's full cost."""
    seed = method.partition(":")[2]
    per_sample = measure_cost(search_spaces.get_genotype(seed, in_chans=1), SHAPE).train_flops_per_sample
    base = TrainConfig(data="sample", subset=256, val_size=200, batch_size=32, seed_value=0,
                       budget_flops=budget_batches * 32 * per_sample, eval_every_frac=0.1)
    options = MethodOptions(target_macs=target_macs,
                            extra={"input_shape": SHAPE, "num_classes": 10, **(extra or {})})
    config, controller = configure(parse_method(method), base, options)
    trainer = Run.open(config, out=tmp_path / name, kind="bench").trainer(controller)
    return trainer, controller


def _check_run(out: Path, method: str) -> tuple[dict, dict]:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_flops"] <= summary["budget_flops"]
    events = [json.loads(line) for line in (out / "growth.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["prune"]
    event = events[0]
    assert event["method"] == method and event["fraction"] >= 0.5 - 1e-9
    assert event["new_widths"] == summary["widths"] and event["macs"] == summary["macs"]
    assert summary["pruned_at_step"] == event["step"] < summary["steps"]  # fine-tuned afterwards
    return summary, event


def _resume(out: Path, method: str, extra: dict | None = None, target_macs: float | None = None):
    """A new trainer (and controller) from the run's last checkpoint, as `grow bench` resumes."""
    base = TrainConfig(data="sample")
    options = MethodOptions(target_macs=target_macs, extra={"input_shape": SHAPE, "num_classes": 10,
                                                            **(extra or {})})
    _, controller = configure(parse_method(method), base, options)
    return Run.open(base, resume=out, kind="bench").trainer(controller), controller


# --------------------------------------------------------------------------- global pruning


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_prune_to_macs_reaches_target_within_one_channel(family):
    torch.manual_seed(0)
    model = FAMILIES[family]()
    genotype = model.genotype
    scores = {g.name: torch.rand(g.width) for g in channel_groups(model)}
    full = measure_cost(genotype, SHAPE).macs
    target = 0.45 * full
    plan = plan_prune_to_macs(genotype, scores, target, SHAPE)
    assert plan.reached and plan.macs <= target
    prune_to_macs(model, scores, target, SHAPE)
    macs = measure_cost(model, SHAPE).macs
    assert macs == plan.macs <= target
    assert target - macs < _one_channel_step(model.genotype)
    # One global threshold: every removed channel scores <= it, every kept candidate >= it.
    for g in groups_of_genotype(genotype):
        kept = plan.keep.get(g.name, torch.arange(g.width))
        assert kept.numel() >= 1
        removed = sorted(set(range(g.width)) - set(kept.tolist()))
        assert all(float(scores[g.name][c]) <= plan.threshold for c in removed)
        best = int(scores[g.name].argmax())
        assert all(float(scores[g.name][c]) >= plan.threshold for c in kept.tolist() if c != best)


def test_prune_to_macs_keeps_one_channel_per_group_when_target_is_unreachable():
    model = FAMILIES["resnet-zeropad"]()
    scores = {g.name: torch.rand(g.width) for g in channel_groups(model)}
    plan = prune_to_macs(model, scores, 1.0, SHAPE)
    assert not plan.reached
    assert all(g.width == 1 for g in channel_groups(model))


@pytest.mark.parametrize("family", FAMILIES)
def test_pruning_through_groups_keeps_the_network_consistent(family):
    torch.manual_seed(1)
    model = FAMILIES[family]()
    _randomise_bn(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(4, *SHAPE)
    torch.nn.functional.cross_entropy(model(x), torch.arange(4)).backward()
    optimizer.step()  # momentum buffers, which pruning must cut alongside
    scores = group_scores(model, bn_scale_scores(model), reduce="mean")
    prune_to_macs(model, scores, 0.5 * measure_cost(model, SHAPE).macs, SHAPE, optimizer)
    model.eval()
    assert search_spaces.extract_genotype(model) == model.genotype
    rebuilt = build_model(model.genotype).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    for p in model.parameters():
        assert optimizer.state[p]["momentum_buffer"].shape == p.shape
    model.train()
    torch.nn.functional.cross_entropy(model(x), torch.arange(4)).backward()
    optimizer.step()  # training goes on with the same optimizer


def test_eval_grid_hits_the_prune_point():
    assert eval_every_dividing(0.5, 0.1) == pytest.approx(0.1)
    assert eval_every_dividing(0.5, 0.3) == pytest.approx(0.25)
    assert eval_every_dividing(0.6, 0.25) == pytest.approx(0.2)


# --------------------------------------------------------------------------- mechanisms, no training


def test_slimming_adds_the_l1_subgradient_on_bn_scales():
    model = FAMILIES["resnet-zeropad"]()
    _randomise_bn(model)
    model.stem.bn.weight.data[0] = -0.5
    scales = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    controller = SlimmingController(target_macs=1.0)
    controller.attach(_fake_trainer(model))
    assert controller.l1 == 1e-5  # the paper's ResNet value
    model(torch.randn(2, *SHAPE)).sum().backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    controller.after_backward(_fake_trainer(model))
    for name, p in model.named_parameters():
        l1 = 1e-5 * torch.sign(p.detach()) if id(p) in scales else 0.0
        assert torch.equal(p.grad, before[name] + l1), name
    vgg = SlimmingController()
    vgg.attach(_fake_trainer(FAMILIES["vgg"]()))
    assert vgg.l1 == 1e-4


def test_sss_apg_step_matches_the_formula():
    model = FAMILIES["resnet-zeropad"]()
    controller = SSSController(gamma=0.1, momentum=0.9)
    trainer = _fake_trainer(model, torch.optim.SGD(model.parameters(), lr=0.5))
    controller.attach(trainer)
    f = controller.channel_factors["stage2"]
    lam, v = torch.full_like(f, 1.0), torch.zeros_like(f)
    torch.manual_seed(0)
    for _ in range(4):
        grad = torch.randn_like(f) * 3
        f.grad = grad.clone()
        controller.after_step(trainer)
        z = lam - 0.5 * grad
        s = torch.sign(z) * (z.abs() - 0.05).clamp_min(0)   # S_{ηγ}(z), then λ >= 0
        s = s.clamp_min(0)
        v = s - lam + 0.9 * v
        lam = (s + 0.9 * v).clamp_min(0)
        assert torch.allclose(f.detach(), lam, atol=1e-6)
        assert f.grad is None
    assert (f == 0).any() and (f > 0).any()  # exact zeros appear


@pytest.mark.parametrize("family", FAMILIES)
def test_sss_prune_of_zero_factors_preserves_the_function(family):
    torch.manual_seed(2)
    model = FAMILIES[family]()
    _randomise_bn(model)
    model.eval()
    controller = SSSController()
    trainer = _fake_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    controller.attach(trainer)
    old = model.genotype
    zero_blocks = []  # one removable block per stage that has one
    for key in controller.block_factors:
        if not any(z.split(".")[0] == key.split(".")[0] for z in zero_blocks):
            zero_blocks.append(key)
    with torch.no_grad():
        for f in controller.channel_factors.values():
            f.uniform_(0.3, 1.0)
            f[torch.randperm(f.numel())[: f.numel() // 2]] = 0.0
        for key in zero_blocks:
            controller.block_factors[key].zero_()
        if isinstance(old, ResNetGenotype):
            # Stage 2's channels 0-3 get stage 1's through the shortcut, 4-7 get zeros: channel 0
            # (zero factor, live source) must stay; 1 (dead source), 5 and 6 (no source) must go.
            for name, zeros in (("stage1", [1, 3]), ("stage2", [0, 1, 5, 6])):
                f = controller.channel_factors[name]
                f.uniform_(0.3, 1.0)
                f[zeros] = 0.0
    zero = {k: int((f == 0).sum()) for k, f in controller.channel_factors.items()}
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        before = model(x)
    detail = controller.prune(trainer)
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(after, before, atol=1e-5, rtol=1e-4)  # folded, and only dead parts removed
    assert search_spaces.extract_genotype(model) == model.genotype
    assert measure_cost(model, SHAPE).macs < measure_cost(old, SHAPE).macs
    assert not any(m._forward_hooks for m in model.modules())  # the hooks are gone
    widths = {g.name: g.width for g in channel_groups(model)}
    if isinstance(old, ResNetGenotype):
        assert sorted(detail["blocks_removed"]) == sorted(zero_blocks)
        depth = sum(s.depth for s in old.stages) - len(zero_blocks)
        assert sum(s.depth for s in model.genotype.stages) == depth
        assert widths["stage1"] == old.stages[0].width - zero["stage1"]
        if old.shortcut == "zeropad":
            # Stage-2 channels that the shortcut fills with a live stage-1 channel are not dead.
            assert old.stages[1].shortcut_src == [0, 1, 2, 3]
            assert widths["stage2"] == old.stages[1].width - 3
            # kept stage-2 channels 0, 2, 3, 4, 7 read old stage-1 channels 0, 2, 3 (pruned), -, -
            assert model.genotype.stages[1].shortcut_src == [0, 1]
        else:
            assert widths["stage2"] == old.stages[1].width - zero["stage2"]
    else:
        assert all(widths[g.name] == g.width - zero[g.name] for g in groups_of_genotype(old))


# --------------------------------------------------------------------------- which channels go (no full run)


def test_sss_target_prunes_the_smallest_factors_after_the_zero_ones():
    """With a MACs target: zero factors go first (a block too), then the smallest factors globally,
    each matched to its channel although the block removal renumbered the later inner groups."""
    torch.manual_seed(3)
    model = FAMILIES["resnet-zeropad"]()
    for m in model.modules():  # BN scales 1: after folding, each BN scale is its channel's factor
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.fill_(1.0)
    full = measure_cost(model, SHAPE).macs
    controller = SSSController(target_macs=0.4 * full)
    trainer = _fake_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    controller.attach(trainer)
    with torch.no_grad():
        for f in controller.channel_factors.values():
            f.copy_(torch.rand(f.numel()) * 0.9 + 0.1)
            f[0] = 0.0
        controller.block_factors["stage1.block1"].zero_()
    factors = {k: f.detach().clone() for k, f in controller.channel_factors.items()}
    detail = controller.prune(trainer)
    assert detail["blocks_removed"] == ["stage1.block1"] and detail["target_reached"]
    assert measure_cost(model, SHAPE).macs <= 0.4 * full
    modules = dict(model.named_modules())
    kept, removed = [], []
    for g in channel_groups(model):
        # the old group this one was: stage 1's blocks 2 and 3 are now 1 and 2
        old = g.name.replace("stage1.block2.", "stage1.block3.").replace("stage1.block1.", "stage1.block2.")
        scales = modules[g.norms[0]].weight.detach()
        original = factors[old]
        assert all(bool((original - v).abs().min() < 1e-6) for v in scales), g.name  # the right block's
        assert 0.0 not in scales.tolist()
        survivors = set(round(v, 5) for v in scales.tolist())
        rest = [v for v in original.tolist() if v > 0 and round(v, 5) not in survivors]
        kept += sorted(scales.tolist())[:-1] if len(survivors) > 1 else []  # the best always stays
        removed += rest
    assert min(kept) >= max(removed)  # one global threshold on the factors


@pytest.mark.slow
def test_dessilbi_prune_to_a_target_ranks_channels_by_entry_step(tmp_path: Path, one_thread: None):
    full = measure_cost(search_spaces.get_genotype("resnet20-thin", in_chans=1), SHAPE).macs
    trainer, controller = _run(tmp_path, "dessilbi-prune:resnet20-thin", 30, target_macs=0.5 * full,
                               extra={"dessilbi-prune": {"lam": 1e-6}})
    controller.attach(trainer)
    trainer.train_step(32)
    opt, modules = trainer.optimizer, dict(trainer.model.named_modules())
    torch.manual_seed(4)
    entry = {}
    for g in channel_groups(trainer.model):
        steps = [torch.randperm(1000)[: g.width] + 1 for _ in g.producers]  # distinct within a layer
        for p, e in zip(g.producers, steps):
            opt.state[modules[p].weight]["entry_step"].copy_(e)
        entry[g.name] = torch.stack(steps).amin(0)  # a channel is as early as its earliest filter
        modules[g.norms[0]].weight.data.copy_(torch.rand(g.width) + 0.5)  # tells the channels apart
    before = {g.name: modules[g.norms[0]].weight.detach().clone() for g in channel_groups(trainer.model)}
    detail = controller.prune(trainer)
    assert detail["target_reached"] and trainer.cost.macs <= 0.5 * full
    modules = dict(trainer.model.named_modules())
    kept, removed = [], []
    for name, e in entry.items():
        scales = modules[find_group(trainer.model, name).norms[0]].weight.detach()
        survived = [c for c in range(e.numel()) if bool((before[name][c] == scales).any())]
        assert len(survived) == scales.numel()
        best = int(e.argmin())
        kept += [int(e[c]) for c in survived if c != best]
        removed += [int(e[c]) for c in range(e.numel()) if c not in survived]
    assert removed and max(kept) <= min(removed)  # earlier entry = more important, one threshold
    assert all(group["penalty"] is None for group in opt.param_groups)


@pytest.mark.slow
def test_dessilbi_prune_keeps_the_supported_channels_by_index(tmp_path: Path, one_thread: None):
    """A known support: a tiny λ lets every filter in after a few steps, then Γ of every third
    channel is zeroed by hand in all of its group's producers. Exactly the others must survive."""
    trainer, controller = _run(tmp_path, "dessilbi-prune:resnet20-thin", 30,
                               extra={"dessilbi-prune": {"lam": 1e-6}})
    controller.attach(trainer)
    for _ in range(3):
        trainer.train_step(32)
    opt, modules = trainer.optimizer, dict(trainer.model.named_modules())
    before = {}
    for g in channel_groups(trainer.model):
        for p in g.producers:
            opt.state[modules[p].weight]["gamma"][1::3] = 0.0
        mask = torch.stack([opt.support(modules[p].weight) for p in g.producers]).any(0)
        assert mask.tolist() == [c % 3 != 1 for c in range(g.width)]
        before[g.name] = [modules[n].weight.detach().clone() for n in g.norms]
    controller.prune(trainer)
    modules = dict(trainer.model.named_modules())
    for g in channel_groups(trainer.model):
        for norm, scale in zip(g.norms, before[g.name]):
            kept = [c for c in range(scale.numel()) if c % 3 != 1]
            assert torch.equal(modules[norm].weight.detach(), scale[kept]), norm


# --------------------------------------------------------------------------- end-to-end runs


@pytest.mark.slow
def test_slimming_run_reaches_its_macs_target(tmp_path: Path, one_thread: None):
    full = measure_cost(search_spaces.get_genotype("resnet20-thin", in_chans=1), SHAPE).macs
    target = 0.6 * full
    trainer, controller = _run(tmp_path, "slimming:resnet20-thin", 30, target_macs=target)
    trainer.fit()
    summary, event = _check_run(tmp_path / "run", "slimming")
    assert summary["macs"] <= target
    assert target - summary["macs"] < _one_channel_step(trainer.model.genotype)
    assert event["old_macs"] == full and event["target_reached"]
    assert trainer.config.decay_start_frac == 0.5 and trainer.config.optimizer == "sgd"

    # Resume after the prune: pruned architecture, phase and event come back.
    trainer.save_checkpoint()
    resumed, again = _resume(tmp_path / "run", "slimming:resnet20-thin", target_macs=target)
    assert resumed.model.genotype == trainer.model.genotype
    assert again.phase == "finetune" and again.event == controller.event
    for a, b in zip(resumed.model.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_dessilbi_prune_keeps_exactly_the_support(tmp_path: Path, one_thread: None):
    trainer, controller = _run(tmp_path, "dessilbi-prune:resnet20-thin", 30)
    seen = {}
    prune = controller.prune

    def spy(tr):  # supp(Γ) per conv and per group, just before the prune
        opt, modules = tr.optimizer, dict(tr.model.named_modules())
        for name in controller.lam:
            seen[name] = opt.support(modules[name].weight)
        for g in channel_groups(tr.model):
            seen[g.name] = torch.stack([seen[p] for p in g.producers]).any(0)
        return prune(tr)

    controller.prune = spy
    trainer.fit()
    summary, event = _check_run(tmp_path / "run", "dessilbi-prune")
    # The per-layer λ: in every conv a strict, non-empty part of the filters is in supp(Γ).
    assert len(set(controller.lam.values())) > 1
    assert all(0 < int(seen[conv].sum()) < seen[conv].numel() for conv in controller.lam)
    assert event["empty_support_groups"] == []
    # Each group keeps as many channels as it has supported ones (which ones: the next test).
    for g in channel_groups(trainer.model):
        assert g.width == int(seen[g.name].sum()) == event["support"][g.name]
    assert summary["macs"] < event["old_macs"]
    # Penalties off for the fine-tuning, also in the checkpoint a resume starts from.
    assert all(group["penalty"] is None for group in trainer.optimizer.param_groups)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert all(group["penalty"] is None for group in state["optimizer"]["param_groups"])
    resumed, again = _resume(tmp_path / "run", "dessilbi-prune:resnet20-thin")
    assert again.phase == "finetune" and resumed.model.genotype == trainer.model.genotype
    assert all(group["penalty"] is None for group in resumed.optimizer.param_groups)


@pytest.mark.slow
def test_sss_run_removes_zero_factors_and_resumes_identically(tmp_path: Path, one_thread: None):
    # γ strong enough for exact zeros within 40 steps; the prune late, so that the fine-tuning of
    # the (much cheaper) pruned network takes few steps.
    extra = {"sss": {"gamma": 0.04, "prune_frac": 0.8}}
    trainer, controller = _run(tmp_path, "sss:resnet20-thin", 50, extra=extra, name="A")
    trainer.fit()
    summary, event = _check_run(tmp_path / "A", "sss")
    zeros = sum(event["zero_channels"].values())
    assert 0 < zeros < sum(g.width for g in groups_of_genotype(search_spaces.get_genotype("resnet20-thin")))
    assert event["macs"] < event["old_macs"] and summary["macs"] == event["macs"]
    assert event["output_change"] < 1e-5  # folding and removing zero factors is exact
    assert not any(m._forward_hooks for m in trainer.model.modules())

    # Interrupt a second run at the evaluation before the prune, resume it: the factors, their
    # momentum and the phase come back from the checkpoint, and the run ends where A ended.
    trainer, controller = _run(tmp_path, "sss:resnet20-thin", 50, extra=extra, name="B")

    class Interrupt(Exception):
        pass

    on_eval = controller.on_eval

    def stop_at_sixth(tr, acc):  # the last checkpoint is then the one at 0.5 of the budget
        if len((tmp_path / "B" / "metrics.jsonl").read_text().splitlines()) == 6:
            raise Interrupt
        on_eval(tr, acc)

    controller.on_eval = stop_at_sixth
    with pytest.raises(Interrupt):
        trainer.fit()
    resumed, again = _resume(tmp_path / "B", "sss:resnet20-thin", extra=extra)
    assert again.phase == "train" and again.channel_factors and again.velocity
    assert any(not torch.equal(f, torch.ones_like(f)) for f in again.channel_factors.values())
    resumed.fit()
    a = torch.load(tmp_path / "A" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "B" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "B" / "growth.jsonl").read_text()) == event
