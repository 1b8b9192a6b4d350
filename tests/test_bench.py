"""grow bench / grow report: equal-budget cells, resumability, the table and the plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import search_spaces
from baselines import parse_method
from baselines.bench import pareto
from baselines.fixed import match_macs, uniform_genotype
from growth.compute import measure_cost

BUDGET = "6e10"


def _bench(out, methods="grow,fixed:resnet8-thin,uniform:resnet8-thin"):
    return subprocess.run(
        [sys.executable, "-m", "growth.cli", "bench", "--budget", BUDGET, "--methods", methods,
         "--seeds", "0,1", "--data", "sample", "--subset", "600", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_bench_runs_every_cell_at_one_budget_and_resumes(tmp_path):
    out = tmp_path / "bench"
    first = _bench(out)
    assert first.returncode == 0, first.stderr
    record = json.loads((out / "bench.json").read_text())
    assert sorted(record["cells"]) == sorted(
        f"{m}/seed{s}" for m in ("grow", "fixed:resnet8-thin", "uniform:resnet8-thin") for s in (0, 1))
    for cell in record["cells"].values():
        assert 0 < cell["train_flops"] <= float(BUDGET)
    # uniform is scaled to the grown network's MACs (same seed), from below
    for seed in (0, 1):
        grown = record["cells"][f"grow/seed{seed}"]["macs"]
        uniform = record["cells"][f"uniform:resnet8-thin/seed{seed}"]["macs"]
        assert uniform <= grown
    table = (out / "bench.md").read_text()
    assert "| grow" in table and "±" in table
    for name in ("acc_vs_macs.png", "acc_vs_train_flops.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Re-running skips finished cells: no summary is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*/summary.json")}
    second = _bench(out)
    assert second.returncode == 0, second.stderr
    assert "starting" not in second.stdout and "resuming" not in second.stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*/summary.json")}

    # grow report rebuilds the table from the files.
    (out / "bench.md").unlink()
    report = subprocess.run([sys.executable, "-m", "growth.cli", "report", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert (out / "bench.md").read_text() == table


def test_bench_rejects_unknown_method_and_foreign_dir(tmp_path):
    bad = _bench(tmp_path / "b", methods="grow,nonsense")
    assert bad.returncode == 2 and bad.stderr.startswith("grow: error: unknown method")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    res = _bench(foreign, methods="fixed:resnet8-thin")
    assert res.returncode == 2 and "no bench" in res.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_parse_method():
    assert str(parse_method("fixed:resnet20")) == "fixed:resnet20"
    assert str(parse_method("timm:resnet18")) == "fixed:timm:resnet18"
    with pytest.raises(ValueError):
        parse_method("uniform")


def test_uniform_scaling_matches_macs_from_below():
    genotype = search_spaces.get_genotype("resnet20")
    half = uniform_genotype(genotype, 0.5)
    assert half.compact()[0] == [8, 8, 8, 8] and half.stages[1].shortcut_src == list(range(8))
    target = 12e6
    scaled = match_macs(genotype, target, (3, 32, 32))
    macs = measure_cost(scaled, (3, 32, 32)).macs
    assert macs <= target
    bigger = uniform_genotype(scaled, 1.05)
    assert measure_cost(bigger, (3, 32, 32)).macs > macs


def test_pareto_front():
    rows = [{"method": "a", "macs": 1, "test_acc": 0.5}, {"method": "b", "macs": 2, "test_acc": 0.6},
            {"method": "c", "macs": 3, "test_acc": 0.55}, {"method": "d", "macs": 1, "test_acc": 0.4}]
    assert pareto(rows, "macs") == ["a", "b"]
