"""One run on two processes: ``torchrun --nproc-per-node 2`` (gloo on CPU) against one process.

The two-process run trains with DistributedDataParallel on the two halves of every global batch. Its
BatchNorm layers normalise with the statistics of their half (plain BatchNorm per rank: SyncBatchNorm
runs on GPUs only), so its weights are not those of one process, and neither is Γ: with
``--allocation gamma`` a group near the selection threshold may be chosen in one run and not in the
other (seen on this very test at 1.5e11). So the comparison with one process uses ``--allocation
uniform``, where when and how much grows depends on the budget alone: the growth events, the ledger
and the final genotype must then be the same, the accuracy close. Γ is still computed; every rank
must have the same Γ scores and plan at every check (``ranks_agree`` in growth.jsonl).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_grow, subprocess_env

import growth.distributed as distributed

ARGS = ["--seed", "resnet8-thin", "--data", "sample", "--subset", "800", "--budget", "1.5e11", "--seed-value", "0",
        "--target-macs", "1.5e6", "--allocation", "uniform", "--quiet"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
            "-m", "growth.cli"]


def _torchrun(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*TORCHRUN, *args], cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _events(run: Path) -> list[tuple]:
    """The growth events of a run: what grew, when, from which width to which."""
    records = [json.loads(line) for line in (run / "growth.jsonl").read_text().splitlines()]
    return [(r["event"], r["step"], r.get("group"), r.get("old_width"), r.get("new_width"), r.get("selected"))
            for r in records if r["event"] in ("check", "widen", "deepen")]


def _copy_mid_run(run: Path, copy: Path, proc: subprocess.Popen) -> None:
    """Copy ``run`` while it trains, once it has grown (the checkpoint first: the logs it holds are
    then at least as new as it, and a resume drops what is newer)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        log = run / "growth.jsonl"
        if log.exists() and '"widen"' in log.read_text():
            copy.mkdir(exist_ok=True)
            shutil.copy(run / "checkpoint.pt", copy)
            if torch.load(copy / "checkpoint.pt", weights_only=True)["loop"]["step"] > 0:
                for name in ("config.json", "metrics.jsonl", "growth.jsonl"):
                    shutil.copy(run / name, copy)
                return
        time.sleep(0.02)
    pytest.fail("the run ended before it grew; raise its budget")


@pytest.mark.slow
def test_torchrun_grows_as_one_process_does_and_resumes(tmp_path):
    single, ddp, resumed = tmp_path / "single", tmp_path / "ddp", tmp_path / "resumed"
    work = tmp_path / "work"  # torchrun's working directory: it must hold only the run it was given
    work.mkdir()
    proc = _torchrun(*ARGS, "--out", str(ddp), cwd=work)
    _copy_mid_run(ddp, resumed, proc)
    run_grow(*ARGS, "--out", str(single), check=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert out.count("run directory") == 1  # the summary is printed once, by rank 0

    # The same growth, step for step, and the same ledger as one process with the same global batch.
    assert _events(ddp) == _events(single) and any(e[0] == "widen" for e in _events(ddp))
    a, b = (json.loads((run / "summary.json").read_text()) for run in (single, ddp))
    assert (a["widths"], a["train_flops"], a["samples"], a["steps"]) == (b["widths"], b["train_flops"],
                                                                         b["samples"], b["steps"])
    assert (single / "genotype.json").read_text() == (ddp / "genotype.json").read_text()
    records = [json.loads(line) for line in (ddp / "growth.jsonl").read_text().splitlines()]
    assert all(r["ranks_agree"] for r in records if r["event"] == "check")
    # Per-rank BatchNorm normalises each half of a batch with its own statistics, so the weights differ
    # from one process's by more than rounding; a few points of accuracy on 1,000 test images cover it.
    assert abs(a["test_acc"] - b["test_acc"]) <= 0.05
    # Rank 0 alone wrote, and only where it was told to.
    assert list(work.iterdir()) == []
    assert len((ddp / "metrics.jsonl").read_text().splitlines()) == len(
        (single / "metrics.jsonl").read_text().splitlines())

    # A run copied mid-way resumes under torchrun (every rank loads the checkpoint) and ends as the
    # uninterrupted two-process run did.
    step = torch.load(resumed / "checkpoint.pt", weights_only=True)["loop"]["step"]
    assert 0 < step < b["steps"]
    proc = _torchrun("--resume", str(resumed), "--quiet", cwd=work)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert (resumed / "growth.jsonl").read_text() == (ddp / "growth.jsonl").read_text()
    w1, w2 = (torch.load(run / "weights.pt", weights_only=True) for run in (ddp, resumed))
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)


def test_batch_size_must_split_evenly(monkeypatch):
    from growth.config import ConfigError, TrainConfig
    from growth.run import _check_settings

    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ConfigError, match="divisible by the number of processes"):
        _check_settings(TrainConfig(seed="resnet8-thin", data="sample", budget_flops=1e11, batch_size=128))
    _check_settings(TrainConfig(seed="resnet8-thin", data="sample", budget_flops=1e11, batch_size=129))


def test_one_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    distributed.setup()
    assert not distributed.active() and distributed.is_main() and distributed.world_size() == 1
    assert distributed.from_main(5) == 5 and distributed.gather("x") == ["x"] and distributed.shard(7) == (0, 7)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model
