"""A smoke test over every registered baseline method: one tiny bench with a cell per method, then
per method: the cell finished, its ledger ended at the budget, its summary is complete, and a
size-targeted method did not overshoot its MACs target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_grow

from baselines import list_methods
from baselines.bench import SIZE_TARGETED

BUDGET = 3e10
TARGET_MACS = 1.2e6  # the seeds below at 28x28: resnet20-thin 1.95M MACs, resnet8-thin 0.64M
# One spec per registered method; a new method without a spec here fails the first test.
SPECS = {
    "grow": "grow:resnet8-thin",
    "grow-uniform": "grow-uniform:resnet8-thin",
    "grow-price": "grow-price:resnet8-thin",
    "dessilbi": "dessilbi:resnet8-thin",
    "scratch": "scratch:resnet8-thin",
    "fixed": "fixed:resnet8-thin",
    "width": "width:resnet8-thin@2",
    "uniform": "uniform:resnet20-thin",
    "sss": "sss:resnet20-thin",
    "slimming": "slimming:resnet20-thin",
    "dessilbi-prune": "dessilbi-prune:resnet20-thin",
    "scs": "scs:resnet20-thin",
    "vt": "vt:resnet8-thin",
    "net2net": "net2net:resnet8-thin",
}
SUMMARY_KEYS = ("test_acc", "val_acc", "params", "macs", "forward_flops", "train_flops", "budget_flops", "widths",
                "epochs", "train_time_s")


def test_every_registered_method_has_a_smoke_spec() -> None:
    assert sorted(SPECS) == list_methods()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("methods") / "bench"
    run_grow("bench", "--budget", f"{BUDGET:g}", "--methods", ",".join(SPECS.values()), "--seeds", "0",
             "--data", "sample", "--subset", "300", "--target-macs", f"{TARGET_MACS:g}", "--out", str(out),
             "--quiet", check=True, timeout=900)
    record = json.loads((out / "bench.json").read_text())
    return {"out": out, "cells": record["cells"]}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SPECS))
def test_method_runs_within_budget_and_meets_its_size_target(name: str, bench: dict) -> None:
    cell = bench["cells"][f"{SPECS[name]}/seed0"]
    summary = json.loads((Path(bench["out"]) / cell["dir"] / "summary.json").read_text())
    assert set(SUMMARY_KEYS) <= set(summary)
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["params"] > 0 and summary["macs"] > 0
    # The ledger ends at the budget: no overrun, and less than one step (a batch of 128) left unspent.
    assert summary["budget_flops"] == BUDGET
    assert BUDGET - 128 * 3 * 2 * 2e6 <= summary["train_flops"] <= BUDGET
    if name in SIZE_TARGETED:
        assert summary["macs"] <= TARGET_MACS * 1.02, (summary["macs"], summary["widths"])
