"""Every way a method changes its network trains through torch.compile (a file of its own: pytest-xdist
runs it beside tests/test_methods.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_methods import BUDGET, SPECS, TARGET_MACS

# One method per way of changing the network mid-run; the others train as one of these does (grow-uniform,
# grow-price and dessilbi as grow, which also trains a fixed network between its events, as fixed, width,
# uniform and scratch do; dessilbi-prune as slimming: prune, then train the smaller network; net2net as vt;
# scs: tests/test_baselines_scs.py).
COMPILED = ("grow", "sss", "slimming", "vt")


@pytest.mark.slow
def test_each_kind_of_method_runs_compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """With compile on (the default on a multi-threaded CPU for long budgets) each kind of method trains through
    torch.compile (its every architecture compiled afresh), none failing (e.g. a forward hook that makes
    Dynamo recompile every step); AOTAutograd without inductor, for speed: the same graphs are captured."""
    from torch._dynamo.backends.registry import lookup_backend

    from baselines.bench import run_bench
    from growth.config import TrainConfig
    from growth.trainer import Trainer

    monkeypatch.setattr(Trainer, "compile_backend", staticmethod(lookup_backend("aot_eager")))
    base = TrainConfig(data="sample", budget_flops=BUDGET, subset=300, compile=True)
    specs = [SPECS[name] for name in COMPILED]
    record = run_bench(specs, [0], base, tmp_path / "bench", target_macs=TARGET_MACS,
                       log=lambda line: None)
    for key, cell in record["cells"].items():
        assert "failed" not in cell, (key, cell["failed"])
        summary = json.loads((tmp_path / "bench" / cell["dir"] / "summary.json").read_text())
        assert summary["compile"] is True and summary["compiles"] >= 1, key
