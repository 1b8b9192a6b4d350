"""Tests for growth.trainer and growth.run: the budget ledger stops training exactly, run files,
and resume after SIGKILL ending bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import run_grow, snapshot, start_grow, tensorboard_events, train_in_process

from growth.compute import measure_cost
from growth.config import TrainConfig
from growth.data import load_dataset, normalize
from growth.run import train
from search_spaces import build_model, create_model, genotype_from_dict

REPO = Path(__file__).resolve().parents[1]

# resnet8-thin on the shipped sample (1x28x28): the training cost of one sample
SAMPLE_SHAPE = (1, 28, 28)


def _sample_cost() -> int:
    return measure_cost(create_model("resnet8-thin", in_chans=1), SAMPLE_SHAPE).train_flops_per_sample


# --------------------------------------------------------------------------- budget and run files


def _check_budget(summary: dict, per_sample: int) -> None:
    assert summary["train_flops"] <= summary["budget_flops"]
    assert summary["budget_flops"] - summary["train_flops"] < per_sample
    assert summary["train_flops"] == summary["samples"] * per_sample


@pytest.mark.slow
def test_ledger_stops_at_the_budget(tmp_path: Path, one_thread: None) -> None:
    per_sample = _sample_cost()
    budget = 6 * 600 * per_sample + 0.37 * per_sample  # ~6 epochs of 600 images, not a whole sample
    config = TrainConfig(seed="resnet8-thin", data="sample", subset=600, budget_flops=budget,
                         seed_value=0, eval_every_frac=0.5)
    out = tmp_path / "run"
    returned = train(config, out=out)

    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(returned))
    assert summary["budget_flops"] == budget
    _check_budget(summary, per_sample)
    assert summary["samples"] == 3600 and summary["epochs"] == pytest.approx(6.0)
    assert summary["steps"] == -(-3600 // config.batch_size)
    assert summary["forward_flops"] * 3 == per_sample
    assert summary["macs"] * 2 == summary["forward_flops"]
    assert 0.0 <= summary["test_acc"] <= 1.0 and 0.0 <= summary["val_acc"] <= 1.0
    assert summary["eval_flops"] > 0  # recorded, not charged

    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) >= 2
    steps = [m["step"] for m in metrics]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert metrics[-1]["step"] == summary["steps"]
    assert metrics[-1]["train_flops"] == summary["train_flops"]
    assert all(m["train_flops"] <= budget for m in metrics)
    assert metrics[-1]["val_acc"] == summary["val_acc"]

    config_json = json.loads((out / "config.json").read_text())
    assert config_json["kind"] == "train"
    assert config_json["config"]["seed"] == "resnet8-thin"
    assert config_json["config"]["budget_flops"] == budget
    assert TrainConfig.from_dict(config_json["config"]) == config
    assert "versions" in config_json and "torch" in config_json["versions"]
    assert "git_commit" in config_json
    if config_json["git_commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", config_json["git_commit"])

    genotype = genotype_from_dict(json.loads((out / "genotype.json").read_text()))
    assert genotype.compact() == summary["widths"]
    model = build_model(genotype)
    state = torch.load(out / "weights.pt", weights_only=True)
    model.load_state_dict(state)  # strict: every key, every shape

    # the saved weights reproduce the reported test accuracy
    data = load_dataset("sample", subset=600)
    model.eval()
    with torch.no_grad():
        logits = model(normalize(data.test_x, data.mean, data.std))
    accuracy = float((logits.argmax(1) == data.test_y).float().mean())
    assert accuracy == pytest.approx(summary["test_acc"], abs=3 / len(data.test_y))

    assert (out / "checkpoint.pt").is_file()
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_ledger_never_leaves_a_whole_sample(tmp_path: Path, one_thread: None) -> None:
    """The awkward budget: one batch plus one sample. A last batch of one sample cannot be trained
    (BatchNorm), but the ledger must still end within one sample's cost of the budget."""
    per_sample = _sample_cost()
    budget = (8 + 1 + 0.5) * per_sample
    config = TrainConfig(seed="resnet8-thin", data="sample", subset=64, batch_size=8,
                         budget_flops=budget, seed_value=0, eval_every_frac=1.0)
    summary = train(config, out=tmp_path / "run")
    _check_budget(summary, per_sample)
    assert summary["samples"] == 9


def test_batch_never_exceeds_the_training_set(tmp_path: Path, one_thread: None) -> None:
    """A training set smaller than the batch: every step trains (and is charged) at most all of it."""
    per_sample = _sample_cost()
    config = TrainConfig(seed="resnet8-thin", data="sample", subset=20, batch_size=128,
                         budget_flops=50.5 * per_sample, seed_value=0, eval_every_frac=1.0)
    summary = train(config, out=tmp_path / "run")
    _check_budget(summary, per_sample)
    assert summary["samples"] == 50
    assert summary["steps"] == 3  # 20 + 20 + 10, not one "batch" of 50 drawn from 20 images


# --------------------------------------------------------------------------- resume after SIGKILL

# ~11k samples of resnet8-thin on 1,000 sample images: ~5 s of training on one core (~10 s a run)
RESUME_BUDGET = "4e10"
RESUME_ARGS = ["train", "--seed", "resnet8-thin", "--data", "sample", "--subset", "1000",
               "--budget", RESUME_BUDGET, "--seed-value", "0", "--eval-every", "0.1", "--quiet"]


def _metric_lines(run: Path) -> int:
    try:
        return len((run / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "A"
    result = run_grow(*RESUME_ARGS, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def _assert_same_run(a: Path, b: Path) -> None:
    wa = torch.load(a / "weights.pt", weights_only=True)
    wb = torch.load(b / "weights.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{key} differs after resume"
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    assert sa["train_flops"] == sb["train_flops"]
    for key in ("samples", "steps", "val_acc", "test_acc", "widths", "epochs"):
        assert sa[key] == sb[key], key
    ma = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    drop = ("images_per_s", "time_s")  # wall-clock fields
    assert [{k: v for k, v in m.items() if k not in drop} for m in ma] == \
        [{k: v for k, v in m.items() if k not in drop} for m in mb]
    # TensorBoard reads the same points from both (the resumed run's: its rewound files and its new one)
    ta, tb = tensorboard_events(a), tensorboard_events(b)
    assert "val/accuracy" in ta and "train/loss" in ta
    assert {k: v for k, v in ta.items() if k != "images_per_s"} == {k: v for k, v in tb.items() if k != "images_per_s"}


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(full_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "B"
    proc = start_grow(*RESUME_ARGS, "--out", str(out))
    try:
        deadline = time.monotonic() + 240
        while _metric_lines(out) < 3:
            assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "run too slow to reach 3 evaluations"
            time.sleep(0.02)
    finally:
        _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists(), "killed too late: the run had already finished"

    result = run_grow("train", "--resume", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    _assert_same_run(full_run, out)
    assert json.loads((out / "config.json").read_text()) == json.loads((full_run / "config.json").read_text())


@pytest.mark.slow
def test_resume_after_sigkill_at_a_random_moment(full_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "B"
    delay = random.uniform(0.0, 8.0)
    proc = start_grow(*RESUME_ARGS, "--out", str(out))
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.pt").exists():  # resumable from here on
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        _kill(proc)

    result = run_grow("train", "--resume", str(out), "--quiet")
    assert result.returncode == 0, f"delay {delay:.3f}s: {result.stderr}"
    _assert_same_run(full_run, out)


@pytest.mark.slow
def test_resume_twice_after_two_kills(full_run: Path, tmp_path: Path) -> None:
    """Kill, resume, kill the resumed run, resume again: still the uninterrupted result."""
    out = tmp_path / "B"
    proc = start_grow(*RESUME_ARGS, "--out", str(out))
    try:
        deadline = time.monotonic() + 240
        while _metric_lines(out) < 2:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        _kill(proc)
    proc = start_grow("train", "--resume", str(out), "--quiet")
    try:
        deadline = time.monotonic() + 240
        while _metric_lines(out) < 6:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        _kill(proc)
    assert not (out / "summary.json").exists()
    result = run_grow("train", "--resume", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    _assert_same_run(full_run, out)


@pytest.mark.slow
def test_resume_of_a_finished_run_changes_nothing(full_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "done"
    shutil.copytree(full_run, run)
    before = snapshot(run)
    result = run_grow("train", "--resume", str(run), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "is finished" in result.stdout
    assert snapshot(run) == before  # no file written, not even again with the same bytes
    _assert_same_run(full_run, run)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished training run of a few steps, trained in this process (about a second)."""
    config = TrainConfig(seed="resnet8-thin", data="sample", subset=64, val_size=32, budget_flops=2e8, seed_value=0)
    return train_in_process(config, tmp_path_factory.mktemp("tiny") / "run")


def test_resume_of_a_finished_run_says_so_in_one_line_and_touches_nothing(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It used to train zero steps and write checkpoint.pt, weights.pt, genotype.json and summary.json again.
    from growth.cli import main
    from growth.run import Run

    run = tmp_path / "done"
    shutil.copytree(tiny_run, run)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines() == [f"{run} is finished (its budget is spent): nothing to resume, nothing "
                                        f"changed; its results are in {run / 'summary.json'}"] and err == ""
    assert snapshot(run) == before  # names, sizes, modification times and bytes
    resumed = Run.open(TrainConfig(), resume=run)  # the library's way: the saved summary, nothing written
    assert resumed.finished and resumed.fit() == json.loads((run / "summary.json").read_text())
    assert snapshot(run) == before


def test_a_config_file_with_a_key_grow_does_not_write_is_refused_on_resume(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from growth.cli import main
    from growth.run import CONFIG_FILE_KEYS

    saved = json.loads((tiny_run / "config.json").read_text())
    assert set(saved) <= set(CONFIG_FILE_KEYS)  # what a run writes is accepted
    run = tmp_path / "edited"
    shutil.copytree(tiny_run, run)
    (run / "summary.json").unlink()  # unfinished: a resume would train
    (run / "config.json").write_text(json.dumps({**saved, "lr": 0.05}))  # meant: saved["config"]["lr"]
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("grow: error: ")
    assert "config.json" in err and "unknown key 'lr'" in err, err
    assert snapshot(run) == before


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_and_keeps_only_finite_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "diverged"
    result = run_grow("train", "--seed", "resnet8-thin", "--budget", "2e10", "--data", "sample", "--subset", "300",
                      "--lr", "1e4", "--seed-value", "0", "--quiet", "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "diverged" in lines[0] and "Traceback" not in result.stderr
    assert not (out / "summary.json").exists()
    if (out / "checkpoint.pt").exists():
        state = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.slow
def test_sigterm_checkpoints_stops_cleanly_and_resumes_identically(full_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "B"
    proc = start_grow(*RESUME_ARGS, "--out", str(out))
    deadline = time.monotonic() + 240
    while _metric_lines(out) < 2:
        assert proc.poll() is None, f"run ended before it could be stopped: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "run too slow to reach 2 evaluations"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "SIGTERM" in lines[0] and f"--resume {out}" in lines[0], stderr
    assert not (out / "summary.json").exists(), "stopped too late: the run had already finished"
    result = run_grow("train", "--resume", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    _assert_same_run(full_run, out)


# --------------------------------------------------------------------------- speed: no syncs, compile


def _trainer(tmp_path: Path, display=None, **settings):
    from growth.run import Run

    config = TrainConfig(**{"seed": "resnet8-thin", "data": "sample", "subset": 256, "val_size": 100,
                            "batch_size": 32, "budget_flops": 1e12, "seed_value": 0, **settings})
    return Run.open(config, out=tmp_path / "run").trainer(display=display)


class _HostReads:
    """Counts the values a block reads back from tensors (item/float/int/bool, tolist): on a GPU each
    is a host-device synchronisation."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        self.n = 0
        reads = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func.overloadpacket.__name__ == "_local_scalar_dense":
                    reads.n += 1
                return func(*args, **(kwargs or {}))

        tolist = torch.Tensor.tolist

        def counted_tolist(tensor: torch.Tensor):
            reads.n += 1
            return tolist(tensor)

        monkeypatch.setattr(torch.Tensor, "tolist", counted_tolist)
        self.mode = Mode()

    def __enter__(self) -> _HostReads:
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mode.__exit__(*exc)


@pytest.mark.parametrize("optimizer", ["sgd", "dessilbi"])
def test_a_training_step_reads_nothing_back_from_the_device(tmp_path: Path, one_thread: None,
                                                            monkeypatch: pytest.MonkeyPatch, optimizer: str) -> None:
    """No value of the step leaves the device (no per-step sync on a GPU) and the architecture's cost is
    measured once, not per step; the progress read is one read for any number of steps."""
    import growth.trainer

    trainer = _trainer(tmp_path, optimizer=optimizer)
    measured = []
    real = growth.trainer.measure_cost
    monkeypatch.setattr(growth.trainer, "measure_cost", lambda *a: measured.append(a) or real(*a))
    trainer.train_step(32)  # the first step may set up (cost, permutation on the device)
    with _HostReads(monkeypatch) as reads:
        for _ in range(4):
            trainer.train_step(32)
            trainer.state.step += 1
    assert reads.n == 0
    assert len(measured) <= 1 and trainer._permutation_on_device is not None
    assert trainer._permutation_on_device.device == trainer.device
    with _HostReads(monkeypatch) as reads:
        trainer.report_progress()
    assert reads.n == 1


def test_a_blown_up_loss_stops_the_run_at_the_next_read_and_no_checkpoint_keeps_it(tmp_path: Path,
                                                                                    one_thread: None) -> None:
    from growth.runstore import CHECKPOINT, RunError

    trainer = _trainer(tmp_path)
    for _ in range(2):
        trainer.train_step(32)
        trainer.state.step += 1
    trainer.save_checkpoint()
    good = (trainer.store.path / CHECKPOINT).read_bytes()
    with torch.no_grad():
        trainer.model.fc.weight.mul_(1e5)  # logits, and so the loss, blow up
    trainer.train_step(32)  # no read inside the step: it does not notice yet
    trainer.state.step += 1
    with pytest.raises(RunError, match="diverged at step 3 .the loss is .* at step 3"):
        trainer.save_checkpoint()  # the read before writing does
    assert (trainer.store.path / CHECKPOINT).read_bytes() == good

    trainer = _trainer(tmp_path / "nan")
    with torch.no_grad():
        trainer.model.fc.bias.fill_(float("nan"))
    for _ in range(3):
        trainer.train_step(32)
        trainer.state.step += 1
    with pytest.raises(RunError, match="the loss is nan at one of steps 1-3"):
        trainer.evaluate_and_log()  # nothing is evaluated (or grown) from a diverged state


def test_the_display_gets_the_mean_loss_and_accuracy_at_each_read(tmp_path: Path, one_thread: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from growth.trainer import Trainer

    calls: list[tuple[str, int, float, float]] = []

    class Recorder:
        def on_step(self, trainer, loss: float, acc: float) -> None:
            calls.append(("step", trainer.state.step, loss, acc))

        def on_eval(self, trainer, record) -> None:
            calls.append(("eval", trainer.state.step, record["val_acc"], 0.0))

        def close(self) -> None:
            pass

    monkeypatch.setattr(Trainer, "report_every_s", 0.0)  # a read after every step
    per_sample = measure_cost(create_model("resnet8-thin", in_chans=1), SAMPLE_SHAPE).train_flops_per_sample
    trainer = _trainer(tmp_path, display=Recorder())
    trainer.config.eval_every_frac = trainer.state.next_eval_frac = 0.5
    trainer.ledger.budget_flops = 4 * 32 * per_sample
    trainer.fit()
    steps = [c for c in calls if c[0] == "step"]
    assert [c[1] for c in steps] == [1, 2, 3, 4]
    assert all(0 < loss < 10 and 0 <= acc <= 1 for _, _, loss, acc in steps)
    assert [c[0] for c in calls] == ["step", "step", "eval", "step", "step", "eval"]


def test_compile_recompiles_after_every_architecture_change(tmp_path: Path, one_thread: None,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            low_recompile_limit: int) -> None:
    """--compile: each architecture is compiled once, explicitly (Dynamo reset, a fresh compile), so
    more growth events than Dynamo's recompile limit never fall back to eager; odd batches run eagerly;
    compile time is counted apart from training time."""
    from torch._dynamo.backends.registry import lookup_backend

    from growth.operators import widen
    from growth.trainer import Trainer

    graphs: list[int] = []
    aot_eager = lookup_backend("aot_eager")

    def counting_backend(gm, example_inputs):
        graphs.append(len(gm.graph.nodes))
        return aot_eager(gm, example_inputs)

    class CompileNotices:  # a display: told before every step that compiles
        notices = 0

        def on_step(self, *args) -> None:
            pass

        on_eval = close = on_step

        def on_compile(self, trainer) -> None:
            self.notices += 1

    monkeypatch.setattr(Trainer, "compile_backend", staticmethod(counting_backend))
    display = CompileNotices()
    trainer = _trainer(tmp_path, compile=True, display=display)
    eager = _trainer(tmp_path / "eager")
    loss, _ = trainer.train_step(32)
    eager_loss, _ = eager.train_step(32)
    assert torch.allclose(loss, eager_loss, rtol=1e-5)  # the same step, compiled
    assert trainer.state.compiles == 1 and graphs
    changes = low_recompile_limit + 2  # more growth events than the limit
    for i in range(changes):
        widen(trainer.model, "stage1" if i % 2 else "stage2", 1, trainer.optimizer)
        before = len(graphs)
        trainer.train_step(32)
        assert trainer._compiling and len(graphs) > before  # compiled for the new architecture
        trainer.train_step(32)
        assert not trainer._compiling
    compiled = len(graphs)
    trainer.train_step(17)  # an odd batch (the budget's last): eager, no recompile
    assert len(graphs) == compiled and trainer.state.compiles == changes + 1
    assert display.notices == changes + 1  # the display said so before each compiling step
    summary = trainer.finish()
    assert summary["compile"] is True and summary["compiles"] == changes + 1


def test_precision_setting_decides_bf16_autocast() -> None:
    from growth.device import uses_bf16

    cpu = torch.device("cpu")
    assert uses_bf16("bf16", cpu) and not uses_bf16("fp32", cpu)
    assert not uses_bf16("fp32", torch.device("cuda"))      # asked for fp32: never autocast


def test_compile_unset_is_decided_once_where_it_pays_and_kept_on_resume(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """compile unset (auto): a CPU with 2 threads and a budget of 4,000+ steps compiles, one thread or a short
    budget does not; the decision is made at the first step and checkpointed, so a resumed run keeps it
    whatever its threads."""
    from torch._dynamo.backends.registry import lookup_backend

    from growth.device import AUTO_COMPILE_MIN_STEPS
    from growth.run import Run
    from growth.trainer import Trainer

    monkeypatch.setattr(Trainer, "compile_backend", staticmethod(lookup_backend("aot_eager")))
    per_step = 32 * measure_cost(create_model("resnet8-thin", in_chans=1), SAMPLE_SHAPE).train_flops_per_sample
    long, short = 1.01 * AUTO_COMPILE_MIN_STEPS * per_step, 0.99 * AUTO_COMPILE_MIN_STEPS * per_step
    threads = [2]
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads[0])
    assert TrainConfig().compile is None
    assert _trainer(tmp_path / "short", budget_flops=short).compiled is False
    threads[0] = 1
    assert _trainer(tmp_path / "one-thread", budget_flops=long).compiled is False
    assert _trainer(tmp_path / "asked", budget_flops=short, compile=True).compiled is True
    assert _trainer(tmp_path / "declined", budget_flops=long, compile=False).compiled is False
    threads[0] = 2
    trainer = _trainer(tmp_path / "long", budget_flops=long)
    trainer.train_step(32)
    assert trainer.compiled is True and trainer.state.compiles == 1
    trainer.save_checkpoint()
    threads[0] = 1
    config = TrainConfig(seed="resnet8-thin", data="sample", budget_flops=long)
    resumed = Run.open(config, resume=tmp_path / "long" / "run").trainer()
    assert resumed.compiled is True  # the first session's decision, not this one's thread count


def test_compile_unset_stays_eager_where_inductor_has_no_cpp_compiler(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from growth import trainer as trainer_module
    from growth.device import AUTO_COMPILE_MIN_STEPS

    per_step = 32 * measure_cost(create_model("resnet8-thin", in_chans=1), SAMPLE_SHAPE).train_flops_per_sample
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(trainer_module, "compiler_missing", lambda device: "no compiler")
    assert _trainer(tmp_path, budget_flops=2 * AUTO_COMPILE_MIN_STEPS * per_step).compiled is False
