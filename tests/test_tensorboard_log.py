"""Tests for growth.tensorboard_log: a run's TensorBoard event files, read back with TensorBoard's own reader,
hold what metrics.jsonl and growth.jsonl hold; a resumed log keeps no event twice."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import tensorboard_events, train_in_process

from growth.config import TrainConfig
from growth.run import train
from growth.runstore import RunError, RunStore
from growth.tensorboard_log import SCALARS, TensorBoardLog, event_files
from search_spaces import create_model

TEXT = "growth/text_summary"  # how torch's SummaryWriter.add_text names the text tag "growth"


def _config(**settings: object) -> TrainConfig:
    # resnet8-thin on 64 sample images, 16 a step: about 20 steps, an evaluation every quarter of the budget
    return TrainConfig(**{"seed": "resnet8-thin", "data": "sample", "subset": 64, "val_size": 32, "batch_size": 16,
                          "budget_flops": 1e9, "eval_every_frac": 0.25, "seed_value": 0, **settings})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_in_process(_config(), tmp_path_factory.mktemp("tensorboard") / "run")


def _record(step: int, val_acc: float) -> dict:
    return {"step": step, "epoch": 1.0, "train_flops": 1e9 * step, "fraction": step / 10, "lr": 0.1,
            "train_loss": 2.0 / step, "train_acc": 0.5, "val_acc": val_acc, "params": 1000, "macs": 5e5,
            "images_per_s": 100.0, "time_s": 1.0}


def _trainer() -> SimpleNamespace:
    """What the log reads from a trainer: the model (its channel groups) and the loop's step."""
    return SimpleNamespace(model=create_model("resnet8-thin", in_chans=1), state=SimpleNamespace(step=0))


def test_a_run_writes_event_files_whose_scalars_match_its_metrics(tiny_run: Path) -> None:
    metrics = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert len(metrics) >= 3 and len(event_files(tiny_run)) == 1
    events = tensorboard_events(tiny_run)
    assert set(SCALARS.values()) | {"test/accuracy", "width/stage1", "width/stage3"} <= set(events)
    for field, tag in SCALARS.items():
        assert [step for step, _ in events[tag]] == [m["step"] for m in metrics], tag
        assert [value for _, value in events[tag]] == pytest.approx([m[field] for m in metrics], rel=1e-6), tag
    assert all(m["train_loss"] > 0 and 0 <= m["train_acc"] <= 1 for m in metrics)
    assert events["test/accuracy"] == [(summary["steps"], pytest.approx(summary["test_acc"]))]
    widths = summary["widths"]  # [[stage width, inner widths...], ...]: fixed, at every evaluation
    assert [value for _, value in events["width/stage1"]] == [widths[0][0]] * len(metrics)
    assert TEXT not in events  # a fixed architecture: no growth events


def test_a_run_without_tensorboard_writes_no_event_file(tmp_path: Path, one_thread: None) -> None:
    train(_config(budget_flops=2e8, tensorboard=False), out=tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").is_file() and event_files(tmp_path / "run") == []


def test_growth_checks_give_gamma_scores_widths_and_one_text_entry_per_step(tmp_path: Path) -> None:
    log, trainer = TensorBoardLog(RunStore(tmp_path)), _trainer()
    log.flush()  # a checkpoint before anything was recorded (a run's first): no event file yet
    assert event_files(tmp_path) == []
    log.on_event(trainer, {"event": "plan", "step": 0, "fraction": 0.0, "target_macs": 1e6})
    log.on_event(trainer, {"event": "check", "step": 5, "fraction": 0.1, "scores": {"stage1": 0.25, "stage2": 1.0},
                           "selected": ["stage2"]})
    log.on_event(trainer, {"event": "widen", "step": 5, "fraction": 0.1, "group": "stage2", "old_width": 8,
                           "new_width": 12})
    log.on_eval(trainer, _record(5, 0.5))
    log.close()
    events = tensorboard_events(tmp_path)
    assert events["gamma/stage1"] == [(5, 0.25)] and events["gamma/stage2"] == [(5, 1.0)]
    assert events["width/stage2"] == [(5, 8.0)] and events["val/accuracy"] == [(5, 0.5)]
    (plan_step, plan), (check_step, check) = events[TEXT]
    assert plan_step == 0 and "**plan**" in plan
    assert check_step == 5 and check.splitlines() == [
        '- **check** at 10.0% of the budget: `scores={"stage1":0.25,"stage2":1.0}` `selected=["stage2"]`',
        "- **widen** at 10.0% of the budget: `group=stage2` `old_width=8` `new_width=12`"]


def test_a_resumed_log_drops_what_came_after_the_checkpoint_and_a_torn_record(tmp_path: Path) -> None:
    log, trainer = TensorBoardLog(RunStore(tmp_path)), _trainer()
    for step in (1, 2, 3, 4):  # the checkpoint is at step 2: 3 and 4 were written, then the run was killed
        log.on_eval(trainer, _record(step, step / 10))
    log.on_finish(trainer, {"test_acc": 0.5, "steps": 2})  # recorded after the last checkpoint, at its step
    log.close()
    [first] = event_files(tmp_path)
    with open(first, "ab") as handle:
        handle.write(first.read_bytes()[:20])  # a record cut short by the kill: its header and part of its event
    resumed = TensorBoardLog(RunStore(tmp_path))
    resumed.rewind(2)
    for step in (3, 4):
        resumed.on_eval(trainer, _record(step, 0.9))  # what the resumed run measures there
    resumed.close()
    assert len(event_files(tmp_path)) == 2 and event_files(tmp_path)[0] == first
    events = tensorboard_events(tmp_path)
    assert events["val/accuracy"] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, pytest.approx(0.9)),
                                      (4, pytest.approx(0.9))]
    assert "test/accuracy" not in events  # the resumed run records it when it ends
    before = first.read_bytes()
    TensorBoardLog(RunStore(tmp_path)).rewind(4)  # nothing after step 4: the files are left as they are
    assert first.read_bytes() == before


def test_rewound_to_the_first_checkpoint_a_log_keeps_nothing_not_even_the_plan_at_step_0(tmp_path: Path) -> None:
    """The first checkpoint comes before a growth run records its plan (at step 0), which a run resumed from
    there records again."""
    log, trainer = TensorBoardLog(RunStore(tmp_path)), _trainer()
    log.on_event(trainer, {"event": "plan", "step": 0, "fraction": 0.0, "target_macs": 1e6})
    log.on_eval(trainer, _record(1, 0.1))
    log.close()
    TensorBoardLog(RunStore(tmp_path)).rewind(0)
    assert tensorboard_events(tmp_path) == {} and len(event_files(tmp_path)) == 1


def test_an_event_file_that_cannot_be_written_stops_the_run_in_one_line(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    log, trainer = TensorBoardLog(RunStore(tmp_path)), _trainer()
    log.on_eval(trainer, _record(1, 0.1))

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    assert log._writer is not None
    monkeypatch.setattr(log._writer, "flush", full)
    with pytest.raises(RunError) as failed:
        log.flush()
    message = str(failed.value)
    assert "\n" not in message and "No space left on device" in message and "events.out.tfevents" in message
    log.close()  # the run is ending on that failure: closing raises nothing more


def test_without_the_tensorboard_package_a_run_is_refused_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from growth.config import ConfigError
    from growth.run import Run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "tensorboard" else
                        real(name, *args))
    with pytest.raises(ConfigError, match="tensorboard package is not installed.*--no-tensorboard"):
        Run.open(_config(), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert not Run.open(_config(tensorboard=False), out=tmp_path / "run").resuming  # it runs without events
