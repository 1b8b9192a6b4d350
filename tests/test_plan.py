"""The growth plan (growth.plan): size and schedule at every budget from 1e11 to 2e17."""

from __future__ import annotations

import pytest

from growth.config import SIZE_ANCHOR_BUDGET, SIZE_ANCHOR_MACS, SIZE_FIT_MAX_BUDGET, GrowConfig
from growth.plan import fitted_macs, plan_growth, size_rule, target_macs

SEED_MACS = 2.62e6        # resnet20-thin at 32x32
TRAIN = 45_000            # CIFAR-10's training images less the validation split
BUDGETS = [1e11, 3e11, 1e12, 3e12, 1e13, 3e13, 1e14, 3e14, 1e15, 3e15, 1e16, 3e16, 1e17, 2e17]


def test_the_size_rule_is_the_fit_in_its_measured_range_and_joins_the_published_point_above():
    for budget in (3e12, 1e13, 3e13):
        assert target_macs(GrowConfig(budget_flops=budget)) == pytest.approx(fitted_macs(GrowConfig(), budget))
    top = GrowConfig(budget_flops=SIZE_FIT_MAX_BUDGET)
    just_above = GrowConfig(budget_flops=SIZE_FIT_MAX_BUDGET * 1.0001)
    assert target_macs(just_above) == pytest.approx(target_macs(top), rel=1e-3)      # continuous at the join
    assert target_macs(GrowConfig(budget_flops=SIZE_ANCHOR_BUDGET)) == pytest.approx(SIZE_ANCHOR_MACS)
    targets = [target_macs(GrowConfig(budget_flops=b)) for b in BUDGETS]
    assert targets == sorted(targets)
    assert "measured" in size_rule(GrowConfig(budget_flops=1e13))
    assert "above" in size_rule(GrowConfig(budget_flops=2e17))
    assert size_rule(GrowConfig(budget_flops=2e17, target_macs=1e8)) == "--target-macs"


@pytest.mark.parametrize("budget", BUDGETS)
def test_every_budget_plans_a_sane_run(budget):
    plan = plan_growth(GrowConfig(budget_flops=budget), SEED_MACS, TRAIN)
    final_epochs = plan.final_epochs
    if not plan.grows:
        assert budget <= 1e13 and plan.final_share == 1.0   # the seed suffices: it trains on the whole budget
        return
    events = plan.events
    assert events[-1].goal_macs == pytest.approx(plan.target_macs)                 # the target is met
    assert all(b.goal_macs / a.goal_macs <= 2.0 + 1e-9 for a, b in zip(events, events[1:]))
    assert plan.seed_epochs <= 5.0 + 1e-9                                          # a few epochs, not thousands
    assert events[-1].at_fraction <= 0.4 + 1e-9                                    # growth ends by --grow-until
    assert plan.final_share >= 0.6 and final_epochs >= 10                          # the final network trains most
    assert final_epochs <= 250                                                     # epochs saturate (§8)


def test_at_the_measured_budgets_the_checks_stay_at_10_20_30_40_percent():
    plan = plan_growth(GrowConfig(budget_flops=3e13), SEED_MACS, TRAIN)
    assert [e.at_fraction for e in plan.events] == [0.1, 0.2, 0.1 + 0.1 + 0.1, 0.4]   # as the trainer summed them


def test_the_headline_budget_grows_in_more_events_after_a_few_epochs_each():
    plan = plan_growth(GrowConfig(budget_flops=2e17), SEED_MACS, TRAIN)
    assert len(plan.events) > 4
    assert all(e.epochs_before == pytest.approx(5.0) for e in plan.events)
    assert plan.final_share > 0.95 and 100 < plan.final_epochs < 250


def test_grow_plan_prints_the_events_and_an_eta_in_days_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from growth.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--seed", "resnet8-thin", "--budget", "1e16", "--data", "sample", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "above the measured range" in out and "event 1" in out and "final network" in out
    assert "d " in out.split("eta")[1].split("\n")[0]          # a run of days says so
    assert list(tmp_path.iterdir()) == []


def test_grow_plan_says_when_the_seed_suffices(tmp_path, monkeypatch, capsys):
    from growth.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--budget", "1e12", "--data", "sample", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "does not grow" in out and "event 1" not in out
