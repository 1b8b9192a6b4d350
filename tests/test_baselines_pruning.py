"""Pruning baselines (slimming, dessilbi-prune, sss): the shared rules (minimum widths, per-kind ranking,
MACs within 2% of the target, the start chosen from the budget), each method's mechanism, and their runs
end to end (budget, events, resume)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import search_spaces
from baselines import MethodOptions, configure, parse_method
from baselines.pruning import (
    MACS_TOLERANCE,
    bn_scale_scores,
    choose_start,
    eval_every_dividing,
    group_scores,
    min_width,
    normalised_by_kind,
    plan_prune_to_macs,
    prune_to_macs,
)
from baselines.slimming import PAPER_LR_SUM, SlimmingController, l1_rule
from baselines.sss import SSSController, gamma_rule
from growth.compute import measure_cost
from growth.config import TrainConfig
from growth.graph import channel_groups, groups_of_genotype
from growth.run import Run
from search_spaces import ResNetGenotype, build_model, family_of

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


def _assert_above_min_widths(old_genotype, new_genotype, renamed: dict | None = None) -> None:
    """Every group of the pruned network keeps at least the minimum width of the group it was."""
    widths = {g.name: g.width for g in groups_of_genotype(new_genotype)}
    for g in groups_of_genotype(old_genotype):
        name = (renamed or {}).get(g.name, g.name)
        if name in widths:
            assert widths[name] >= min_width(g.width), (g.name, widths[name], g.width)


def _assert_one_threshold_per_kind(groups, scores: dict, kept: dict, skipped: int) -> None:
    """On kind-normalised scores no removed channel outranks a kept one, except each group's protected
    min-width best channels and at most ``skipped`` channels kept to stay in the MACs window."""
    normalised = normalised_by_kind(groups, scores)
    removed = [float(normalised[g.name][c]) for g in groups for c in range(g.width) if c not in kept[g.name]]
    assert removed
    worst_kept_allowed = max(removed)
    exceptions = 0
    for g in groups:
        s = normalised[g.name]
        protected = set(sorted(range(g.width), key=lambda c: (float(s[c]), c))[g.width - min_width(g.width):])
        exceptions += sum(1 for c in kept[g.name] if c not in protected and float(s[c]) < worst_kept_allowed)
    assert exceptions <= skipped


def _kept(model, before: dict) -> dict:
    """Group name -> indices of the original channels that survived, told apart by their BN scales."""
    modules = dict(model.named_modules())
    out = {}
    for g in channel_groups(model):
        scales = modules[g.norms[0]].weight.detach()
        out[g.name] = [c for c in range(before[g.name].numel()) if bool((before[g.name][c] == scales).any())]
        assert len(out[g.name]) == g.width
    return out


def _fake_trainer(model, optimizer=None, steps_to_prune: int = 100):
    """What a controller reads of a trainer; lr 0.1 without warm-up, ``steps_to_prune`` batches of 32
    before the prune point at 0.5 (so Σ η_t = 0.1 · steps_to_prune)."""
    cost = measure_cost(model, SHAPE)
    config = TrainConfig(data="sample", batch_size=32, lr=0.1, warmup_frac=0.0, schedule="cosine",
                         decay_start_frac=0.5, budget_flops=2 * steps_to_prune * 32 * cost.train_flops_per_sample)
    return SimpleNamespace(model=model, optimizer=optimizer, device=torch.device("cpu"), input_shape=SHAPE,
                           cost=cost, config=config, data=SimpleNamespace(train_y=torch.zeros(256)))


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
                                                            "train_size": 256, **(extra or {})})
    _, controller = configure(parse_method(method), base, options)
    return Run.open(base, resume=out, kind="bench").trainer(controller), controller


# --------------------------------------------------------------------------- the shared rules


def test_min_width_rule():
    assert [min_width(w) for w in (1, 2, 3, 4, 8, 9, 16, 32, 64)] == [1, 2, 2, 2, 2, 3, 4, 8, 16]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_prune_to_macs_meets_the_target_above_min_widths(family, ratio):
    torch.manual_seed(0)
    model = FAMILIES[family]()
    genotype = model.genotype
    groups = groups_of_genotype(genotype)
    scores = {g.name: torch.rand(g.width) for g in groups}
    target = ratio * measure_cost(genotype, SHAPE).macs
    plan = plan_prune_to_macs(genotype, scores, target, SHAPE)
    assert plan.met and plan.note is None and abs(plan.macs / target - 1) <= MACS_TOLERANCE
    prune_to_macs(model, scores, target, SHAPE)
    assert measure_cost(model, SHAPE).macs == plan.macs  # the analytic price is the measured one
    _assert_above_min_widths(genotype, model.genotype)
    kept = {g.name: plan.keep.get(g.name, torch.arange(g.width)).tolist() for g in groups}
    _assert_one_threshold_per_kind(groups, scores, kept, plan.skipped)


def test_ranking_is_per_kind():
    """Scaling one kind's scores (the residual stream's BN scales are smaller than the inner convs')
    changes nothing: each kind is ranked against itself."""
    torch.manual_seed(5)
    genotype = FAMILIES["resnet-zeropad"]().genotype
    scores = {g.name: torch.rand(g.width) for g in groups_of_genotype(genotype)}
    shrunk = {name: s * (0.05 if "inner" not in name else 1.0) for name, s in scores.items()}
    target = 0.4 * measure_cost(genotype, SHAPE).macs
    a, b = (plan_prune_to_macs(genotype, s, target, SHAPE) for s in (scores, shrunk))
    assert a.keep.keys() == b.keep.keys() and all(torch.equal(a.keep[k], b.keep[k]) for k in a.keep)
    assert any(name.startswith("stage") and "inner" not in name for name in a.keep)  # the stream is pruned too


def test_an_unreachable_target_stops_at_the_min_widths_and_says_so():
    model = FAMILIES["resnet-zeropad"]()
    old = model.genotype
    scores = {g.name: torch.rand(g.width) for g in channel_groups(model)}
    plan = prune_to_macs(model, scores, 1.0, SHAPE)
    assert not plan.met and "minimum widths" in plan.note and plan.macs == plan.floor_macs
    assert all(g.width == min_width(o.width) for g, o in zip(channel_groups(model), groups_of_genotype(old)))
    assert plan.detail()["target_met"] is False and plan.detail()["target_note"] == plan.note


def test_first_channels_go_first():
    """SSS's dead channels: removed before any ranked channel, however well they score (one may stay
    only where its removal would undershoot the window: a skipped channel)."""
    genotype = FAMILIES["resnet-conv"]().genotype
    groups = groups_of_genotype(genotype)
    scores = {g.name: torch.linspace(0.1, 1.0, g.width) for g in groups}
    first = {g.name: torch.arange(g.width) == g.width - 1 for g in groups}  # each group's best channel
    plan = plan_prune_to_macs(genotype, scores, 0.5 * measure_cost(genotype, SHAPE).macs, SHAPE, first=first)
    kept = {g.name: plan.keep.get(g.name, torch.arange(g.width)).tolist() for g in groups}
    assert plan.met and plan.pruned > len(groups)
    assert sum(g.width - 1 in kept[g.name] for g in groups) <= plan.skipped


@pytest.mark.parametrize("family", FAMILIES)
def test_pruning_through_groups_keeps_the_network_consistent(family):
    torch.manual_seed(1)
    model = FAMILIES[family]()
    _randomise_bn(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(4, *SHAPE)
    torch.nn.functional.cross_entropy(model(x), torch.arange(4)).backward()
    optimizer.step()  # momentum buffers, which pruning must cut alongside
    scores = group_scores(model, bn_scale_scores(model))
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


# --------------------------------------------------------------------------- the start, from the budget

CIFAR = (3, 32, 32)


def _start(budget: float, target: float | None, train_size: int | None = 45_000):
    return choose_start("resnet20", search_spaces.get_genotype("resnet20"), CIFAR, budget_flops=budget,
                        prune_frac=0.5, target_macs=target, train_size=train_size)


def test_a_small_budget_starts_from_a_smaller_dense_net():
    full = measure_cost(search_spaces.get_genotype("resnet20"), CIFAR).macs  # 40.6M
    big = _start(1e15, 0.4 * full)   # the full net pre-trains for many epochs
    assert big.label == "resnet20" and big.multiplier == 1.0 and big.rule == "seed" and big.pretrain_epochs > 1
    mid = _start(1e13, 2.65e6)       # 0.46 epoch on the full net: the largest net that gets 1 epoch
    assert mid.label.startswith("resnet20@") and mid.macs < full and mid.rule.startswith("budget")
    assert 1.0 <= mid.pretrain_epochs < 1.1 and mid.macs >= 2 * 2.65e6
    tiny = _start(1e12, 2.65e6)      # not even 2x the target gets 1 epoch: 2x the target, fewer epochs
    assert tiny.rule == "2x target" and tiny.pretrain_epochs < 1
    assert 1.9 * 2.65e6 <= tiny.macs <= 2 * 2.65e6
    capped = _start(1e15, 1e6)       # affordable, but the minimum widths would decide: at most 8x
    assert capped.rule == "8x target" and 7.5e6 <= capped.macs <= 8e6
    assert _start(1e12, None, None).label == "resnet20"  # no target: the seed
    assert tiny.summary() == {"start": tiny.label, "start_macs": tiny.macs,
                              "pretrain_epochs": round(tiny.pretrain_epochs, 3), "start_rule": "2x target"}


def test_the_method_trains_the_start_it_chose():
    base = TrainConfig(data="sample", budget_flops=1e10)
    full = measure_cost(search_spaces.get_genotype("resnet20", in_chans=1), SHAPE).macs
    for method in ("slimming", "sss", "dessilbi-prune"):
        options = MethodOptions(target_macs=0.1 * full, extra={"input_shape": SHAPE, "num_classes": 10,
                                                               "train_size": 1000})
        config, controller = configure(parse_method(method), base, options)
        start = controller.summary()
        assert start["start"].startswith("resnet20@") and start["start_rule"] == "2x target"
        assert config.genotype is not None and config.seed == "resnet20"
        assert measure_cost(search_spaces.genotype_from_dict(config.genotype), SHAPE).macs == start["start_macs"]


# --------------------------------------------------------------------------- mechanisms, no training


def test_slimming_adds_the_l1_subgradient_on_bn_scales():
    model = FAMILIES["resnet-zeropad"]()
    _randomise_bn(model)
    model.stem.bn.weight.data[0] = -0.5
    scales = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    controller = SlimmingController(target_macs=1.0, l1=1e-5)
    controller.attach(_fake_trainer(model))
    model(torch.randn(2, *SHAPE)).sum().backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    controller.after_backward(_fake_trainer(model))
    for name, p in model.named_parameters():
        l1 = 1e-5 * torch.sign(p.detach()) if id(p) in scales else 0.0
        assert torch.equal(p.grad, before[name] + l1), name


def test_slimming_l1_keeps_the_papers_integrated_pull():
    assert l1_rule("resnet", PAPER_LR_SUM) == pytest.approx(1e-5)  # the paper's values on its own run
    assert l1_rule("vgg", PAPER_LR_SUM) == pytest.approx(1e-4)
    controller = SlimmingController()
    controller.attach(_fake_trainer(FAMILIES["resnet-zeropad"](), steps_to_prune=100))  # Σ η_t = 10
    assert controller.l1 == pytest.approx(1e-5 * PAPER_LR_SUM / 10)
    assert controller.summary()["l1"] == controller.l1


def test_sss_gamma_rule():
    assert gamma_rule(0.9, 1000.0) == 0.01           # long enough: the paper's γ
    assert gamma_rule(0.9, 5.0) == pytest.approx(0.02)  # too short: undefended factors reach 0 by the prune
    controller = SSSController()
    controller.attach(_fake_trainer(FAMILIES["resnet-zeropad"](), torch.optim.SGD([torch.zeros(1)]), 20))
    assert controller.gamma == pytest.approx(0.1 / 2.0)


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
        assert widths["stage1"] == max(old.stages[0].width - zero["stage1"], min_width(old.stages[0].width))
        if old.shortcut == "zeropad":
            # Stage-2 channels that the shortcut fills with a live stage-1 channel are not dead.
            assert old.stages[1].shortcut_src == [0, 1, 2, 3]
            assert widths["stage2"] == old.stages[1].width - 3
            # kept stage-2 channels 0, 2, 3, 4, 7 read old stage-1 channels 0, 2, 3 (pruned), -, -
            assert model.genotype.stages[1].shortcut_src == [0, 1]
        else:
            assert widths["stage2"] == old.stages[1].width - zero["stage2"]
    else:
        assert all(widths[g.name] == max(g.width - zero[g.name], min_width(g.width)) for g in groups_of_genotype(old))


# --------------------------------------------------------------------------- which channels go (no full run)


def test_sss_target_prunes_the_smallest_factors_after_the_zero_ones():
    """With a MACs target: zero factors go first (a block too), then the smallest factors ranked per
    kind, each matched to its channel although the block removal renumbered the later inner groups."""
    torch.manual_seed(3)
    model = FAMILIES["resnet-zeropad"]()
    for m in model.modules():  # BN scales 1: after folding, each BN scale is its channel's factor
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.fill_(1.0)
    old = model.genotype
    target = 0.4 * measure_cost(model, SHAPE).macs
    controller = SSSController(target_macs=target, gamma=0.01)
    trainer = _fake_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    controller.attach(trainer)
    with torch.no_grad():
        for f in controller.channel_factors.values():
            f.copy_(torch.rand(f.numel()) * 0.9 + 0.1)
            f[0] = 0.0
        controller.block_factors["stage1.block1"].zero_()
    factors = {k: f.detach().clone() for k, f in controller.channel_factors.items()}
    detail = controller.prune(trainer)
    assert detail["blocks_removed"] == ["stage1.block1"] and detail["target_met"]
    assert abs(measure_cost(model, SHAPE).macs / target - 1) <= MACS_TOLERANCE
    # Stage 1's blocks 2 and 3 are now 1 and 2; block 1's inner group is gone.
    renamed = {"stage1.block2.inner": "stage1.block1.inner", "stage1.block3.inner": "stage1.block2.inner",
               "stage1.block1.inner": None}
    _assert_above_min_widths(old, model.genotype, renamed)
    scores = {renamed.get(k, k): f for k, f in factors.items() if renamed.get(k, k)}
    kept = _kept(model, scores)  # each surviving BN scale is one of its own old group's factors
    assert all(float(scores[name][c]) > 0 for name, cs in kept.items() for c in cs)  # the zeros went first
    groups = groups_of_genotype(family_of(old).without_block(old, 0, 0))
    _assert_one_threshold_per_kind(groups, scores, kept, detail["channels_skipped"])


@pytest.mark.slow
def test_dessilbi_prune_to_a_target_ranks_channels_by_entry_step(tmp_path: Path, one_thread: None):
    full = measure_cost(search_spaces.get_genotype("resnet20-thin", in_chans=1), SHAPE).macs
    trainer, controller = _run(tmp_path, "dessilbi-prune:resnet20-thin", 30, target_macs=0.5 * full,
                               extra={"dessilbi-prune": {"lam": 1e-6}})
    controller.attach(trainer)
    trainer.train_step(32)
    opt, modules = trainer.optimizer, dict(trainer.model.named_modules())
    old = trainer.model.genotype
    t = opt.step_count
    torch.manual_seed(4)
    scores = {}
    for g in channel_groups(trainer.model):
        steps = [torch.randperm(1000)[: g.width] + 1 for _ in g.producers]  # distinct within a layer
        for p, e in zip(g.producers, steps):
            opt.state[modules[p].weight]["entry_step"].copy_(e)
        # earlier entry = more important; a coupled channel: the mean over its producers
        scores[g.name] = torch.stack([1 + (t - e).float() / t for e in steps]).mean(0)
        modules[g.norms[0]].weight.data.copy_(torch.rand(g.width) + 0.5)  # tells the channels apart
    before = {g.name: modules[g.norms[0]].weight.detach().clone() for g in channel_groups(trainer.model)}
    detail = controller.prune(trainer)
    assert detail["target_met"] and abs(trainer.cost.macs / (0.5 * full) - 1) <= MACS_TOLERANCE
    _assert_above_min_widths(old, trainer.model.genotype)
    _assert_one_threshold_per_kind(groups_of_genotype(old), scores, _kept(trainer.model, before),
                                   detail["channels_skipped"])
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
@pytest.mark.parametrize("method", ["slimming", "sss", "dessilbi-prune"])
def test_pruning_run_meets_its_target_above_min_widths(tmp_path: Path, one_thread: None, method: str):
    """A short run with a deep cut (to 35% of the MACs): every group at or above its minimum width,
    the MACs within 2% of the target, the start and the outcome in summary.json; a resume after the
    prune comes back with the pruned architecture, phase, event and start."""
    spec = f"{method}:resnet20-thin"
    seed = search_spaces.get_genotype("resnet20-thin", in_chans=1)
    full = measure_cost(seed, SHAPE).macs
    target = 0.35 * full
    trainer, controller = _run(tmp_path, spec, 16, target_macs=target)
    trainer.fit()
    summary, event = _check_run(tmp_path / "run", method)
    _assert_above_min_widths(seed, trainer.model.genotype,
                             {k: v for k, v in _block_renames(event).items()})
    assert abs(summary["macs"] / target - 1) <= MACS_TOLERANCE
    assert summary["target_met"] is True and summary["target_note"] is None and event["target_met"]
    assert summary["start"] == "resnet20-thin" and summary["start_macs"] == event["old_macs"] == full
    assert summary["pretrain_epochs"] >= 1 and summary["min_width_frac"] == 0.25
    assert trainer.config.decay_start_frac == 0.5

    trainer.save_checkpoint()
    resumed, again = _resume(tmp_path / "run", spec, target_macs=target)
    assert resumed.model.genotype == trainer.model.genotype
    assert again.phase == "finetune" and again.event == controller.event and again.start == controller.start
    for a, b in zip(resumed.model.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a, b)


def _block_renames(event: dict) -> dict:
    """Old inner-group name -> new one after an SSS block removal (None: the removed block's)."""
    renamed: dict = {}
    for key in sorted(event.get("blocks_removed", []), reverse=True):
        stage, block = key.split(".")
        s, b = int(stage[5:]), int(block[5:])
        renamed[f"stage{s}.block{b}.inner"] = None
        for later in range(b + 1, 10):
            renamed[f"stage{s}.block{later}.inner"] = f"stage{s}.block{later - 1}.inner"
    return renamed


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
    # Each group keeps as many channels as it has supported ones (which ones: the next test), or its
    # minimum width where the support is narrower.
    widths = {g.name: g.width for g in groups_of_genotype(search_spaces.get_genotype("resnet20-thin"))}
    assert event["topped_up_groups"] == [n for n, w in widths.items() if int(seen[n].sum()) < min_width(w)]
    for g in channel_groups(trainer.model):
        assert int(seen[g.name].sum()) == event["support"][g.name]
        assert g.width == max(int(seen[g.name].sum()), min_width(widths[g.name]))
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
