"""The growth rule (growth.controller): size from the budget, schedule, Γ entry rate, safety."""

from __future__ import annotations

import json

import pytest
import torch

from growth.compute import measure_cost
from growth.config import ConfigError, GrowConfig
from growth.controller import GrowthController, grow, occupancy, select_groups, width_multiple
from growth.dessilbi import as_dessilbi
from growth.graph import channel_groups, groups_of_genotype
from growth.operators import resized_genotype
from growth.plan import step_targets, target_macs
from growth.run import Run
from growth.runstore import RunError, RunStore
from search_spaces import ResNetGenotype, genotype_to_dict, get_genotype


def test_size_target_follows_the_budget_rule_and_an_explicit_target_wins():
    cfg = GrowConfig(budget_flops=1e13, size_ref_macs=4e6, size_ref_budget=1e13, size_exponent=0.5)
    assert target_macs(cfg) == pytest.approx(4e6)
    assert target_macs(GrowConfig(budget_flops=4e13, size_ref_macs=4e6, size_exponent=0.5,
                                  size_fit_max_budget=1e14)) == pytest.approx(8e6)
    assert target_macs(GrowConfig(budget_flops=1e11, size_ref_macs=4e6, size_exponent=0.5)) == pytest.approx(4e5)
    # From 1e11 to 2e17 the target spans the range a run can afford, monotonically.
    budgets = [1e11, 1e13, 1e15, 2e17]
    targets = [target_macs(GrowConfig(budget_flops=b)) for b in budgets]
    assert targets == sorted(targets) and targets[-1] > 100 * targets[0]
    assert target_macs(GrowConfig(budget_flops=1e13, target_macs=3e6)) == 3e6


def test_steps_are_geometric_and_end_at_the_target():
    steps = step_targets(2e6, 8e6, 2)
    assert steps == [4e6, 8e6]
    assert step_targets(1e6, 1e6, 3) == [1e6, 1e6, 1e6]


def test_occupancy_is_the_share_of_the_window_the_filters_spent_in_supp():
    def occ(inside: list[bool], entries: list[int], since: int = 100, now: int = 200) -> float:
        return occupancy([torch.tensor(inside)], [torch.tensor(entries)], since, now)

    # Last check (and widening) at step 100: three old filters in supp all window, two new ones not yet.
    assert occ([True, True, True, False, False], [3, 50, 90, -1, -1]) == 0.6
    # One new filter entered half-way through the window.
    assert occ([True, True, True, True, False], [3, 50, 90, 150, -1]) == 0.7
    # Every filter in supp all window: saturated; none: 0.
    assert occ([True, True], [3, 50]) == 1.0 and occ([False, False], [-1, -1]) == 0.0
    # A filter that entered and left again counts nothing.
    assert occ([False, True], [20, 20]) == 0.5
    # Counted over all producers of a group together.
    assert occupancy([torch.tensor([False, True]), torch.tensor([True, False])],
                     [torch.tensor([-1, 0]), torch.tensor([0, -1])], 0, 10) == 0.5


def test_selection_is_relative_to_the_best_score_and_empty_without_entries():
    assert select_groups({"a": 0.5, "b": 1.0, "c": 0.95}, 0.9) == ["b", "c"]
    assert select_groups({"a": 0.0, "b": 0.0}, 0.9) == []
    assert select_groups({"a": 0.3, "b": 0.2}, 0.5) == ["a", "b"]


def _trainer(tmp_path, **overrides):
    cfg = GrowConfig(**{"seed": "resnet8-thin", "data": "sample", "subset": 400, "budget_flops": 4e10,
                        "seed_value": 0, **overrides})
    run = Run.open(cfg, tmp_path / "run", kind="grow")
    controller = GrowthController(run.config)
    trainer = run.trainer(controller)
    return trainer, controller


def _check_now(trainer, controller) -> None:
    """Call the controller as the trainer does at its first planned check (the ledger at that point)."""
    trainer.ledger.charge(controller.plan.events[0].at_fraction * trainer.ledger.budget_flops)
    controller.on_eval(trainer, 0.5)


def _events(trainer) -> list[dict]:
    return trainer.store.read_jsonl("growth.jsonl")


@pytest.mark.slow
def test_no_growth_when_the_target_is_not_clearly_above_the_seed(tmp_path, one_thread):
    trainer, controller = _trainer(tmp_path, target_macs=1.1 * measure_cost(
        get_genotype("resnet8-thin", in_chans=1), (1, 28, 28)).macs)
    summary = trainer.fit()
    plan = _events(trainer)[0]
    assert plan["event"] == "plan" and plan["grows"] is False
    assert not [e for e in _events(trainer) if e["event"] == "widen"]
    assert summary["widths"] == get_genotype("resnet8-thin").compact()


def test_scores_re_arm_each_window_and_a_group_that_stops_gaining_entries_falls_below(tmp_path, one_thread):
    trainer, controller = _trainer(tmp_path, target_macs=4e6)
    controller.attach(trainer)
    opt = as_dessilbi(trainer.optimizer)
    groups = {g.name: g for g in channel_groups(trainer.model)}

    def enter(name: str, steps: list[int]) -> None:   # each filter's entry step (-1: outside supp Γ)
        for producer in groups[name].producers:
            weight = trainer.model.get_submodule(producer).weight
            opt.state[weight]["entry_step"] = torch.tensor(steps, dtype=torch.int64)
            inside = torch.tensor(steps).ge(0).view(-1, *([1] * (weight.dim() - 1)))
            opt.state[weight]["gamma"] = torch.ones_like(weight) * inside

    enter("stage1", [5, 5, -1, -1])
    enter("stage2", [5, 5, 5, 5, -1, -1, -1, -1])
    trainer.state.step = 10
    first = controller.scores(trainer, list(groups.values()))
    assert first["stage1"] == first["stage2"] == 0.25
    controller.window_start = 10                       # a check at step 10 began the next window
    enter("stage2", [5, 5, 5, 5, 15, 15, -1, -1])      # stage 2 goes on gaining entries, stage 1 stops
    trainer.state.step = 20
    second = controller.scores(trainer, list(groups.values()))
    assert second["stage1"] == 0.5 and second["stage2"] == 0.625
    assert select_groups(second, 0.9) == ["stage2"]
    trainer.state.step = 20
    _check_now(trainer, controller)
    assert controller.window_start == 20


def test_growth_is_refused_on_a_non_finite_state(tmp_path, one_thread):
    trainer, controller = _trainer(tmp_path, target_macs=4e6)
    controller.attach(trainer)
    with torch.no_grad():
        next(trainer.model.parameters()).view(-1)[0] = float("nan")
    widths = trainer.model.genotype.compact()
    _check_now(trainer, controller)
    events = _events(trainer)
    assert events[-1]["event"] == "refused" and controller.refused == 1
    assert trainer.model.genotype.compact() == widths


def test_per_layer_lam_removes_the_fan_in_bias(tmp_path, one_thread):
    trainer, controller = _trainer(tmp_path, target_macs=4e6)
    controller.attach(trainer)
    lam = controller.lam
    assert lam is not None and len(set(lam.values())) > 1
    groups = [g for g in trainer.optimizer.param_groups if g["penalty"] == "group"]
    assert len(groups) == len(lam) and all(len(g["params"]) == 1 for g in groups)
    # BatchNorm weights and biases are not decayed on the DessiLBI path.
    for group in trainer.optimizer.param_groups:
        if any(p.dim() <= 1 for p in group["params"]):
            assert group["weight_decay"] == 0.0


@pytest.mark.slow
def test_a_starved_stage_scores_best_and_grows_most_under_default_settings(tmp_path, one_thread):
    """Stage 2 at width 2 between stages of 8 and 16, under the default settings: Γ uses it most at the
    first check, and it ends with the largest relative growth of the three stages (until the value-per-MAC
    rule this held only with weight decay 1e-4)."""
    seed = ResNetGenotype.uniform([8, 2, 16], [1, 1, 1], in_chans=1)
    cfg = GrowConfig(seed="resnet8-thin", genotype=genotype_to_dict(seed), data="sample", subset=1500,
                     budget_flops=3e11, seed_value=0, target_macs=2e6)
    summary = grow(cfg, tmp_path / "starved")
    checks = [e for e in RunStore(tmp_path / "starved").read_jsonl("growth.jsonl") if e["event"] == "check"]
    first = checks[0]
    assert "stage2" in first["selected"]
    assert first["scores"]["stage2"] > max(first["scores"][g] for g in ("stage1", "stage3"))
    final = summary["widths"]
    growth = {s: final[s][0] / w for s, w in enumerate([8, 2, 16])}
    assert growth[1] == max(growth.values()) and growth[1] >= 2


def test_growth_config_rejects_a_bad_rule():
    for bad in ({"allocation": "random"}, {"growth_steps": 0}, {"grow_until_frac": 1.0},
                {"select_frac": 0.0}, {"max_step_factor": 1.0}, {"target_macs": -1.0},
                {"optimizer": "sgd"}, {"size_exponent": -0.1}):
        with pytest.raises(ConfigError):
            GrowConfig(budget_flops=1e12, **bad).validate()


@pytest.mark.slow
def test_growth_log_is_json_lines(tmp_path, one_thread):
    trainer, _ = _trainer(tmp_path, target_macs=1.5e6)
    trainer.fit()
    lines = (trainer.store.path / "growth.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


class _Fake:
    """What ``GrowthController._plan`` reads of a trainer."""

    def __init__(self, genotype):
        self.model = type("M", (), {"genotype": genotype})()
        self.input_shape = (3, 32, 32)


def test_the_plan_gives_the_chosen_group_its_cap_before_the_others_get_the_rest():
    genotype = get_genotype("resnet8-thin")
    seed = measure_cost(genotype, (3, 32, 32)).macs
    controller = GrowthController(GrowConfig(budget_flops=1e12))
    controller.seed_macs, controller.target = seed, 3 * seed
    first = groups_of_genotype(genotype)[0]          # stage1 alone: at most x2 per step
    plan = controller._plan(_Fake(genotype), {first.name: 1.0}, 2.5 * seed)
    widened = {name: n for _, name, n in plan}
    assert widened[first.name] == first.width      # the chosen group first, to its cap (x2)
    assert len(widened) > 1                          # then the others
    grown = genotype
    for name, n in widened.items():
        group = next(g for g in groups_of_genotype(grown) if g.name == name)
        grown = resized_genotype(grown, group, torch.arange(group.width), n)
    assert 2.3 * seed < measure_cost(grown, (3, 32, 32)).macs <= 2.5 * seed


def test_grown_widths_from_16_on_are_multiples_of_8_where_tensor_cores_want_them():
    genotype = get_genotype("resnet20-thin")      # widths 4, 8, 16: only stage 3 is wide enough
    seed = measure_cost(genotype, (3, 32, 32)).macs
    assert width_multiple(GrowConfig(budget_flops=1e12), "cuda", amp=True) == 8
    assert width_multiple(GrowConfig(budget_flops=1e12), "cpu", amp=True) == 1
    assert width_multiple(GrowConfig(budget_flops=1e12, width_multiple=4), "cpu", amp=False) == 4
    for multiple in (1, 8):
        controller = GrowthController(GrowConfig(budget_flops=1e12))
        controller.seed_macs, controller.target, controller.multiple = seed, 3 * seed, multiple
        scores = {g.name: 1.0 for g in groups_of_genotype(genotype)}
        plan = controller._plan(_Fake(genotype), scores, 2.2 * seed)
        grown = genotype
        for _, name, n in plan:
            group = next(g for g in groups_of_genotype(grown) if g.name == name)
            grown = resized_genotype(grown, group, torch.arange(group.width), n)
        widths = [g.width for g in groups_of_genotype(grown)]
        assert measure_cost(grown, (3, 32, 32)).macs <= 2.2 * seed
        wide = [w for w in widths if w > 16]
        assert wide and (multiple == 1 or all(w % 8 == 0 for w in wide)), (multiple, widths)
        if multiple == 1:
            assert any(w % 8 for w in wide)   # without a multiple, widths land between tiles


def test_the_per_step_cap_follows_the_size_the_budget_asks_for():
    controller = GrowthController(GrowConfig(budget_flops=2e17))
    controller.seed_macs = 2.6e6
    controller.target = target_macs(controller.config)
    assert controller.target > 50 * controller.seed_macs    # 2e17 asks for a large network
    per_step = (controller.target / controller.seed_macs) ** (1 / 4)
    assert controller.step_factor_cap() ** 2 >= per_step      # width^2 ~ MACs: reachable in 4 steps
    small = GrowthController(GrowConfig(budget_flops=3e13))
    small.seed_macs, small.target = 2.6e6, 5e6
    assert small.step_factor_cap() == 2.0


def test_nothing_grows_at_a_check_where_no_filter_has_entered(tmp_path, one_thread):
    trainer, controller = _trainer(tmp_path, target_macs=4e6)
    controller.attach(trainer)                 # no step yet: every entry step is -1, every score 0
    widths = trainer.model.genotype.compact()
    _check_now(trainer, controller)
    last = _events(trainer)[-1]
    assert last["event"] == "check" and last["selected"] == []
    assert trainer.model.genotype.compact() == widths


def test_a_budget_that_reaches_its_checks_late_does_not_grow_then_and_reports_the_shortfall(tmp_path, one_thread):
    trainer, controller = _trainer(tmp_path, target_macs=4e6, budget_flops=1.5e9)   # about 3 steps
    summary = trainer.fit()
    events = _events(trainer)
    late = [e for e in events if e["event"] == "too_late"]
    assert late and all(e["fraction"] <= 0.45 for e in events if e["event"] == "widen")
    assert summary["target_shortfall"] > 0.10 and "short of its" in summary["notes"][0]
    assert summary["macs"] < 4e6


def test_the_calibration_of_a_long_horizon_takes_under_a_second():
    import time

    from growth.calibration import discounted_lr_sum

    class _Trainer:   # what discounted_lr_sum reads: the config, the cost per sample, the training set
        config = GrowConfig(budget_flops=2e17)
        cost = type("C", (), {"train_flops_per_sample": 3 * 2 * 2.62e6})()
        data = type("D", (), {"train_y": range(45_000)})()

    start = time.perf_counter()
    discounted = discounted_lr_sum(_Trainer(), 0.1)     # ~10M steps in the first interval
    assert time.perf_counter() - start < 5.0            # generous on a loaded CI machine; ~0.5 s alone
    assert discounted / _Trainer.config.nu == pytest.approx(1.0, abs=1e-6)   # saturated (docs/algorithms.md)


@pytest.mark.slow
def test_checks_come_when_the_plan_says_after_a_few_epochs_of_the_network(tmp_path, one_thread):
    trainer, controller = _trainer(tmp_path, target_macs=1.2e6, check_epochs=1.0)   # an epoch < 10% here
    trainer.fit()
    events = _events(trainer)
    plan = events[0]
    checks = [e for e in events if e["event"] == "check"]
    assert plan["event"] == "plan" and plan["step_fractions"][0] < 0.1            # the epoch rule binds
    assert len(checks) == len(plan["step_fractions"])
    step_share = trainer.ledger.fraction_spent / trainer.state.step                 # one step of the seed, about
    for check, planned in zip(checks, plan["step_fractions"]):
        assert planned - 1e-9 <= check["fraction"] <= planned + 2.5 * step_share


def test_the_uniform_control_allocates_the_same_whatever_gamma_says(tmp_path, one_thread):
    grown = []
    for case, entered in enumerate(("stage1", "stage3")):     # Γ points at opposite ends of the network
        trainer, controller = _trainer(tmp_path / str(case), allocation="uniform", target_macs=1.6e6)
        controller.attach(trainer)
        opt = as_dessilbi(trainer.optimizer)
        group = next(g for g in channel_groups(trainer.model) if g.name == entered)
        for producer in group.producers:
            weight = trainer.model.get_submodule(producer).weight
            opt.state[weight]["entry_step"] = torch.zeros(weight.shape[0], dtype=torch.int64)
        _check_now(trainer, controller)
        grown.append(trainer.model.genotype.compact())
    assert grown[0] == grown[1] != get_genotype("resnet8-thin").compact()


def test_a_checkpoint_without_the_reached_size_resumes_without_a_false_shortfall(tmp_path, one_thread):
    trainer, controller = _trainer(tmp_path, target_macs=4e6)
    controller.attach(trainer)
    state = controller.state_dict()
    del state["reached_macs"], state["multiple"]           # as written by the first version of this rule
    resumed = GrowthController(controller.config)
    resumed.load_state_dict(state)
    resumed.attach(trainer)
    assert resumed.reached_macs == trainer.cost.macs and resumed.multiple == 1
    old = {k: v for k, v in state.items() if k != "window_start"}   # the rule before scores were windowed
    with pytest.raises(RunError, match="older growth rule"):
        GrowthController(controller.config).load_state_dict(old)


@pytest.mark.parametrize("budget_flops", [1e12, 1e13, 2e17])
def test_the_calibration_promise_a_median_filter_enters_after_one_interval(tmp_path, one_thread, monkeypatch,
                                                                           budget_flops):
    """The calibration's promise (growth.calibration), checked against the optimizer itself: a filter of its
    layer's median initial norm, under the coupling alone (no loss gradient, no weight decay: the model λ is
    computed from), enters supp Γ at the first check's step, within 1%, on the run's own learning rates."""
    from growth import run as run_module
    from growth.calibration import penalised_convs
    from growth.dessilbi import DessiLBI
    from growth.schedule import lr_at, steps_in

    monkeypatch.setattr(run_module, "_check_inputs", lambda config, data: None)  # 2e17 on a CPU: refused
    # check_epochs 100: a first interval of hundreds of steps on this small set, for a 1% resolution
    trainer, controller = _trainer(tmp_path, budget_flops=budget_flops, check_epochs=100.0)
    controller.attach(trainer)
    cfg, horizon = trainer.config, controller.plan.events[0].at_fraction
    steps = steps_in(cfg, horizon, trainer.cost.train_flops_per_sample, len(trainer.data.train_y))
    name, weight = next(iter(penalised_convs(trainer).items()))
    norms = weight.detach().flatten(1).norm(dim=1)
    median = weight.detach()[int((norms - norms.median()).abs().argmin())].clone()
    filt = torch.nn.Parameter(median.unsqueeze(0))
    opt = DessiLBI([{"params": [filt], "penalty": "group", "lam": controller.lam[name]}], lr=cfg.lr,
                   kappa=cfg.kappa, nu=cfg.nu, momentum=cfg.momentum, weight_decay=0.0)
    for i in range(int(steps * 1.5) + 2):
        opt.param_groups[0]["lr"] = lr_at(cfg, horizon * i / steps)
        filt.grad = torch.zeros_like(filt)
        opt.step()
        if int(opt.entry_steps(filt)[0]) >= 0:
            break
    entered = int(opt.entry_steps(filt)[0])
    assert entered >= 0 and abs(entered - steps) <= 0.01 * steps + 1, (entered, steps)
