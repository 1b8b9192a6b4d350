"""The fault suite: bad inputs and faults tried through the real ``grow`` command (a fresh interpreter
each), as a new user would meet them. Every one must end with one clear line on stderr (``grow:
error: ...``), a non-zero exit, no traceback, and nothing already written lost or corrupted: a command
that fails before its run starts leaves the working directory byte for byte as it was; one that fails
while running keeps its last checkpoint resumable.

The table :data:`FAULTS` is the suite: options (non-finite, negative, zero, huge, unknown), data (image
folders with an empty class, a corrupt image, one class, ...), the run store (resume of a missing,
truncated, damaged or foreign run; --out on a file or a finished run) and divergence. Faults that need
more than one command (a read-only or full disk, two processes on one directory, a resume with changed
settings, a second Ctrl-C) have a test each below it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
import torch
from conftest import GROW, one_line_error, run_grow, snapshot, start_grow, subprocess_env

# Each case starts grow in a fresh interpreter (seconds each): the slow lane, like tests/test_cli.py.
pytestmark = pytest.mark.slow

SMALL = ("--seed", "resnet8-thin", "--data", "sample", "--subset", "256", "--seed-value", "0", "--quiet")
TRAIN = ("train", *SMALL, "--budget", "2e9", "--out", "new")  # a small run in ws/new; the bad option follows
TREE = ("train", "--seed", "resnet8-thin", "--budget", "1e8", "--seed-value", "0", "--quiet", "--out", "new",
        "--data", "tree")  # an image folder ws/tree that the case's set-up spoils


def grow(ws: Path, *args: str, cache: Path, prefix: tuple[str, ...] = (),
         preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """``grow ARGS`` run in ``ws`` (optionally under a wrapper command or with a pre-exec hook)."""
    return subprocess.run([*prefix, *GROW, *args], cwd=ws, capture_output=True, text=True, timeout=300,
                          env=subprocess_env(GROWTH_DATA_DIR=str(cache)), preexec_fn=preexec)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """An empty working directory; the data cache lives beside it, so a snapshot of ws sees only what a
    command wrote there."""
    (tmp_path / "ws").mkdir()
    return tmp_path / "ws"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished training run, copied by the cases that need a run."""
    out = tmp_path_factory.mktemp("faults") / "finished"
    run_grow(*TRAIN[:-2], "--out", str(out), check=True)
    return out


@pytest.fixture(scope="module")
def diverged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """``grow train --lr 1e4`` (evaluating, hence checkpointing, every step or so) and what it printed."""
    out = tmp_path_factory.mktemp("faults") / "diverged"
    result = run_grow("train", *SMALL, "--budget", "4e9", "--lr", "1e4", "--out", str(out))
    return out, result


# --------------------------------------------------------------------------- set-ups of the table


def image_tree(root: Path, classes: tuple[str, ...] = ("cat", "dog", "owl"), n_train: int = 6,
               n_test: int = 2) -> Path:
    """``root/{train,test}/<class>/*.png``: small distinct RGB images, all with the same blue (a channel
    whose std is 0: the data's normalisation must not divide by it)."""
    from PIL import Image

    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (40 * c, 20 * i, 200)).save(root / split / name / f"{i}.png")
    return root


def empty_train_class(ws: Path, run: Path) -> None:
    image_tree(ws / "tree")
    for f in (ws / "tree" / "train" / "dog").iterdir():
        f.unlink()


def empty_test_class(ws: Path, run: Path) -> None:
    image_tree(ws / "tree")
    shutil.rmtree(ws / "tree" / "test" / "owl")
    (ws / "tree" / "test" / "owl").mkdir()


def corrupt_image(ws: Path, run: Path) -> None:
    image_tree(ws / "tree")
    (ws / "tree" / "train" / "dog" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not the rest of a png" * 8)


def empty_image_file(ws: Path, run: Path) -> None:
    image_tree(ws / "tree")
    (ws / "tree" / "test" / "cat" / "0.png").write_bytes(b"")


def class_of_non_images(ws: Path, run: Path) -> None:
    image_tree(ws / "tree")
    for f in (ws / "tree" / "train" / "owl").iterdir():
        f.unlink()
    (ws / "tree" / "train" / "owl" / "notes.txt").write_text("these are owls\n")


def one_class(ws: Path, run: Path) -> None:
    image_tree(ws / "tree", classes=("cat",))


def mismatched_classes(ws: Path, run: Path) -> None:
    image_tree(ws / "tree")
    (ws / "tree" / "test" / "owl").rename(ws / "tree" / "test" / "bat")


def train_split_is_a_file(ws: Path, run: Path) -> None:
    image_tree(ws / "tree")
    shutil.rmtree(ws / "tree" / "train")
    (ws / "tree" / "train").write_text("images were here\n")


def no_class_folders(ws: Path, run: Path) -> None:
    (ws / "tree" / "train").mkdir(parents=True)
    (ws / "tree" / "test").mkdir()


def a_file(ws: Path, run: Path) -> None:
    (ws / "file.txt").write_text("not a directory\n")


def copy_run(ws: Path, run: Path) -> None:
    shutil.copytree(run, ws / "run")


def truncated_checkpoint(ws: Path, run: Path) -> None:
    copy_run(ws, run)
    data = (ws / "run" / "checkpoint.pt").read_bytes()
    (ws / "run" / "checkpoint.pt").write_bytes(data[: len(data) // 2])


def empty_checkpoint(ws: Path, run: Path) -> None:
    copy_run(ws, run)
    (ws / "run" / "checkpoint.pt").write_bytes(b"")


def truncated_config(ws: Path, run: Path) -> None:
    copy_run(ws, run)
    text = (ws / "run" / "config.json").read_text()
    (ws / "run" / "config.json").write_text(text[: len(text) // 2])


def edit_config(change: Callable[[dict], object]) -> Callable[[Path, Path], None]:
    def setup(ws: Path, run: Path) -> None:
        copy_run(ws, run)
        saved = json.loads((ws / "run" / "config.json").read_text())
        change(saved)
        (ws / "run" / "config.json").write_text(json.dumps(saved))
    return setup


def edit_checkpoint(change: Callable[[dict], object]) -> Callable[[Path, Path], None]:
    def setup(ws: Path, run: Path) -> None:
        copy_run(ws, run)
        state = torch.load(ws / "run" / "checkpoint.pt", weights_only=True)
        change(state)
        torch.save(state, ws / "run" / "checkpoint.pt")
    return setup


def other_seed(state: dict) -> None:
    state["order_gen"] = torch.Generator().manual_seed(7).get_state()  # as a run with --seed-value 7 has


# (id, set-up, arguments after `grow`, what the one line must say). Every case: exit 2, one line, no
# traceback, and ws (with what the set-up put there) unchanged byte for byte.
FAULTS: list = [
    # -- options: refused at parse time, before anything is imported or written
    ("lr-nan", None, (*TRAIN, "--lr", "nan"), ("--lr", "finite")),
    ("lr-inf", None, (*TRAIN, "--lr", "inf"), ("--lr", "finite")),
    ("lr-negative", None, (*TRAIN, "--lr", "-0.1"), ("--lr",)),
    ("lr-zero", None, (*TRAIN, "--lr", "0"), ("--lr",)),
    ("lr-huge", None, (*TRAIN, "--lr", "1e300"), ("--lr",)),
    ("budget-nan", None, (*TRAIN, "--budget", "nan"), ("budget",)),
    ("budget-negative", None, (*TRAIN, "--budget", "-2e9"), ("--budget", "is negative")),
    ("budget-huge", None, (*TRAIN, "--budget", "1e400"), ("--budget", "is infinite")),
    ("target-macs-negative", None, ("--target-macs", "-5", *TRAIN[1:]), ("--target-macs", "is negative", "MACs")),
    ("batch-zero", None, (*TRAIN, "--batch-size", "0"), ("--batch-size",)),
    ("batch-one", None, (*TRAIN, "--batch-size", "1"), ("--batch-size",)),
    ("batch-huge", None, (*TRAIN, "--batch-size", "1" + "0" * 30), ("--batch-size",)),
    ("momentum-negative", None, (*TRAIN, "--momentum", "-0.5"), ("--momentum",)),
    ("momentum-one", None, (*TRAIN, "--momentum", "1"), ("--momentum",)),
    ("weight-decay-negative", None, (*TRAIN, "--weight-decay", "-1e-4"), ("--weight-decay",)),
    ("label-smoothing-2", None, (*TRAIN, "--label-smoothing", "2"), ("--label-smoothing",)),
    ("decay-start-2", None, (*TRAIN, "--decay-start", "2"), ("--decay-start",)),
    ("checkpoint-every-negative", None, (*TRAIN, "--checkpoint-every", "-1"), ("--checkpoint-every",)),
    ("seed-value-negative", None, (*TRAIN, "--seed-value", "-1"), ("--seed-value",)),
    ("seed-value-huge", None, (*TRAIN, "--seed-value", "9" * 30), ("--seed-value",)),
    ("subset-zero", None, (*TRAIN, "--subset", "0"), ("--subset",)),
    ("precision-bad", None, (*TRAIN, "--precision", "fp64"), ("--precision", "fp64")),
    ("nu-zero", None, ("--nu", "0", *TRAIN[1:]), ("--nu",)),
    ("kappa-negative", None, ("--kappa", "-1", *TRAIN[1:]), ("--kappa",)),
    ("override-without-resume", None, (*TRAIN, "--override", "lr=0.05"), ("--override", "--resume")),
    # -- options refused once the run is set up (still before anything is written)
    ("device-unknown", None, (*TRAIN, "--device", "tpu"), ("tpu",)),
    ("seed-unknown", None, (*TRAIN, "--seed", "resnet21"), ("resnet21",)),
    ("nesterov-without-momentum", None, (*TRAIN, "--momentum", "0"), ("--no-nesterov",)),
    ("val-size-too-large", None, (*TRAIN, "--val-size", "100000"), ("val_size",)),
    ("subset-too-large", None, (*TRAIN, "--subset", "100000"), ("subset=100000", "5400 training images")),
    # -- data
    ("data-missing", None, (*TRAIN, "--data", "./nowhere"), ("nowhere", "does not exist")),
    ("data-is-a-file", a_file, (*TRAIN, "--data", "file.txt"), ("file.txt", "is a file")),
    ("data-empty-train-class", empty_train_class, TREE, ("dog", "no image files")),
    ("data-empty-test-class", empty_test_class, TREE, ("owl", "test", "no image files")),
    ("data-corrupt-image", corrupt_image, TREE, ("3.png", "cannot decode")),
    ("data-empty-image-file", empty_image_file, TREE, ("0.png", "cannot decode")),
    ("data-class-of-non-images", class_of_non_images, TREE, ("owl", "no image files")),
    ("data-one-class", one_class, TREE, ("one class", "two")),
    ("data-mismatched-classes", mismatched_classes, TREE, ("differ", "owl", "bat")),
    ("data-train-is-a-file", train_split_is_a_file, TREE, ("train/",)),
    ("data-no-class-folders", no_class_folders, TREE, ("no class subdirectories",)),
    # -- run store
    ("resume-missing", None, ("train", "--resume", "gone", "--quiet"), ("no run directory", "gone")),
    ("resume-a-file", a_file, ("train", "--resume", "file.txt"), ("file.txt", "is a file")),
    ("resume-truncated-checkpoint", truncated_checkpoint, ("train", "--resume", "run"), ("checkpoint.pt",)),
    ("resume-empty-checkpoint", empty_checkpoint, ("train", "--resume", "run"), ("checkpoint.pt",)),
    ("resume-truncated-config", truncated_config, ("train", "--resume", "run"), ("config.json",)),
    ("resume-config-without-config-key", edit_config(lambda s: s.pop("config")), ("train", "--resume", "run"),
     ("config.json", "'config'")),
    ("resume-config-not-a-dict", edit_config(lambda s: s.update(config=[1, 2])), ("train", "--resume", "run"),
     ("config.json",)),
    ("resume-config-wrong-type", edit_config(lambda s: s["config"].update(lr="fast")),
     ("train", "--resume", "run"), ("config.json",)),
    ("resume-config-nan-lr", edit_config(lambda s: s["config"].update(lr=float("nan"))),
     ("train", "--resume", "run"), ("config.json", "lr")),
    ("resume-config-unknown-top-level-key", edit_config(lambda s: s.update(lr=0.05)), ("train", "--resume", "run"),
     ("config.json", "unknown key 'lr'")),
    ("resume-checkpoint-of-another-seed", edit_checkpoint(other_seed), ("train", "--resume", "run"),
     ("another run's checkpoint", "random seed 7")),
    ("resume-checkpoint-of-another-version", edit_checkpoint(lambda s: s.update(format=99)),
     ("train", "--resume", "run"), ("another version", "format 99")),
    ("resume-train-run-as-growth", copy_run, ("--resume", "run"), ("train run",)),
    ("out-is-a-file", a_file, (*TRAIN[:-2], "--out", "file.txt"), ("file.txt", "is a file")),
    ("out-is-a-finished-run", copy_run, (*TRAIN[:-2], "--out", "run"), ("already holds a run", "--resume run")),
    # -- resuming with changed settings: only those that keep the steps' meaning
    ("override-seed", copy_run, ("train", "--resume", "run", "--override", "seed=resnet20"), ("keeps its seed",)),
    ("override-budget", copy_run, ("train", "--resume", "run", "--override", "budget=4e9"), ("keeps its budget",)),
    ("override-unknown", copy_run, ("train", "--resume", "run", "--override", "tau=1"), ("no such setting",)),
    ("override-nan", copy_run, ("train", "--resume", "run", "--override", "lr=nan"), ("lr", "finite")),
    ("override-no-value", copy_run, ("train", "--resume", "run", "--override", "lr"), ("KEY=VALUE",)),
    ("override-a-finished-run", copy_run, ("train", "--resume", "run", "--override", "lr=0.05"), ("finished",)),
    ("override-bad-batch", copy_run, ("train", "--resume", "run", "--override", "batch-size=1"),
     ("--override batch-size",)),
    # -- divergence (the run stops at once; a checkpoint is written only in a run that got going)
    ("grow-lr-1e4", None, ("--lr", "1e4", *TRAIN[1:-2], "--budget", "4e9", "--out", "new"), ("diverged",)),
]


@pytest.mark.parametrize("setup, args, needles", [pytest.param(*case[1:], id=case[0]) for case in FAULTS])
def test_fault(ws: Path, cache: Path, finished: Path, setup: Callable[[Path, Path], None] | None,
               args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    if setup is not None:
        setup(ws, finished)
    before = snapshot(ws)
    result = grow(ws, *args, cache=cache)
    one_line_error(result, *needles)
    after = snapshot(ws)
    if "diverged" in needles:  # it trained: its directory holds what it had got to, nothing else changed
        assert not (ws / "new" / "summary.json").exists()
        assert {k: v for k, v in after.items() if not k.startswith("new")} == before
    else:
        assert after == before, "a failed command changed files on disk"


def test_the_suite_tries_at_least_twenty_faults() -> None:
    assert len({case[0] for case in FAULTS}) == len(FAULTS) >= 20


# --------------------------------------------------------------------------- divergence and --override


def test_a_diverging_run_stops_and_its_last_checkpoint_resumes_with_a_lower_lr(
        diverged: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> None:
    out, result = diverged
    message = one_line_error(result, "diverged", f"--resume {out} --override lr=")
    assert not (out / "summary.json").exists(), message  # it did not train to the end at 10%
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(bool(v.isfinite().all()) for v in state["model"].values() if v.is_floating_point())

    run = tmp_path / "run"
    shutil.copytree(out, run)
    saved_before = json.loads((run / "config.json").read_text())
    result = run_grow("train", "--resume", str(run), "--override", "lr=0.05", "--override", "warmup=0.1",
                      "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_flops"] <= 4e9 and summary["budget_flops"] == 4e9
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["lr"] == 0.05 and saved["config"]["warmup_frac"] == 0.1
    assert {k: v for k, v in saved["config"].items() if k not in ("lr", "warmup_frac")} == \
        {k: v for k, v in saved_before["config"].items() if k not in ("lr", "warmup_frac")}
    [record] = saved["overrides"]  # the run stays auditable: what changed, from what, at which step
    assert record["settings"] == {"lr": {"from": 10000.0, "to": 0.05}, "warmup_frac": {"from": 0.05, "to": 0.1}}
    assert record["step"] == state["loop"]["step"] and record["time"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == sorted({m["step"] for m in metrics})  # rewound, then continued
    assert max(m["lr"] for m in metrics if m["step"] > record["step"]) <= 0.05


# --------------------------------------------------------------------------- faults of the disk


def _fsize_limit(limit: int) -> Callable[[], None]:
    """A pre-exec hook: files the command writes cannot grow past ``limit`` bytes, as on a disk that
    fills up part-way through a write (Python ignores SIGXFSZ, so the write fails with an OSError)."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(
        diverged: tuple[Path, subprocess.CompletedProcess], ws: Path, cache: Path) -> None:
    """A resumed run that cannot write its next checkpoint stops in one line; the checkpoint on disk is
    the previous one, whole, and resumes once there is room."""
    shutil.copytree(diverged[0], ws / "run")
    checkpoint = (ws / "run" / "checkpoint.pt").read_bytes()
    assert len(checkpoint) > 40_000  # larger than the limit below: its next version cannot be written
    result = grow(ws, "train", "--resume", "run", "--override", "lr=0.05", "--quiet", cache=cache,
                  preexec=_fsize_limit(40_000))
    one_line_error(result, "cannot write", "checkpoint.pt", "--resume run")
    assert (ws / "run" / "checkpoint.pt").read_bytes() == checkpoint
    names = sorted(p.name for p in (ws / "run").iterdir() if not p.name.startswith("events.out.tfevents."))
    assert names == ["checkpoint.pt", "config.json", "metrics.jsonl"]  # no temporary file left (TensorBoard's aside)
    result = grow(ws, "train", "--resume", "run", "--quiet", cache=cache)  # the override was recorded
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((ws / "run" / "summary.json").read_text())["budget_flops"] == 4e9


def _read_only(directory: Path) -> tuple[str, ...]:
    """A command prefix under which ``directory`` is read-only, even for root (a read-only bind mount in
    a private mount namespace); skips the test where user namespaces are not available."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("needs unshare (user namespaces) to make a directory read-only for root")
        directory.chmod(0o555)
        return ()
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return (unshare, "-rm", "sh", "-c", script, str(directory))


def test_a_read_only_output_directory(ws: Path, cache: Path) -> None:
    (ws / "out").mkdir()
    prefix = _read_only(ws / "out")
    result = grow(ws, *TRAIN[:-2], "--out", "out", cache=cache, prefix=prefix)
    os.chmod(ws / "out", 0o755)
    one_line_error(result, "cannot write", "out", "Read-only file system" if prefix else "Permission denied")
    assert list((ws / "out").iterdir()) == []


def test_a_read_only_run_resumed(ws: Path, cache: Path, finished: Path) -> None:
    """A run that cannot be written stops in one line (here at its first checkpoint), nothing changed."""
    shutil.copytree(finished, ws / "run")
    (ws / "run" / "summary.json").unlink()  # unfinished: it has a checkpoint to write
    before = snapshot(ws)
    result = grow(ws, "train", "--resume", "run", "--quiet", cache=cache, prefix=_read_only(ws / "run"))
    os.chmod(ws / "run", 0o755)
    one_line_error(result, "cannot write", "run/")
    assert snapshot(ws) == before


def test_compile_without_a_cpp_compiler(ws: Path, cache: Path, finished: Path) -> None:
    """torch.compile builds CPU kernels with a C++ compiler: asked for without one (PATH holds only Python),
    a new run and a resumed one stop in one line before writing anything; the resume can drop it."""
    import sys

    no_compiler = {"PATH": str(Path(sys.executable).parent)}
    result = subprocess.run([*GROW, *TRAIN, "--compile"], cwd=ws, capture_output=True, text=True, timeout=300,
                            env=subprocess_env(GROWTH_DATA_DIR=str(cache), **no_compiler))
    one_line_error(result, "--compile", "C++ compiler", "--no-compile")
    assert snapshot(ws) == {}
    shutil.copytree(finished, ws / "run")
    (ws / "run" / "summary.json").unlink()
    config = json.loads((ws / "run" / "config.json").read_text())
    config["config"]["compile"] = True
    (ws / "run" / "config.json").write_text(json.dumps(config))
    before = snapshot(ws)
    resume = ("train", "--resume", "run", "--quiet")
    result = subprocess.run([*GROW, *resume], cwd=ws, capture_output=True, text=True, timeout=300,
                            env=subprocess_env(GROWTH_DATA_DIR=str(cache), **no_compiler))
    one_line_error(result, "C++ compiler", "--override compile=false")
    assert snapshot(ws) == before
    result = subprocess.run([*GROW, *resume, "--override", "compile=false"], cwd=ws, capture_output=True,
                            text=True, timeout=300, env=subprocess_env(GROWTH_DATA_DIR=str(cache), **no_compiler))
    assert result.returncode == 0, result.stderr
    assert json.loads((ws / "run" / "summary.json").read_text())["compile"] is False


# --------------------------------------------------------------------------- one directory, one process


def test_two_processes_on_one_run_directory(tmp_path: Path, cache: Path) -> None:
    """While a run is going, a second grow given its directory (as --out or --resume) is refused; the
    first is not disturbed."""
    out = tmp_path / "run"
    first = start_grow("train", *SMALL, "--budget", "3e10", "--out", str(out))
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)  # holds its directory while the others try (and costs no CPU)
        before = snapshot(out)
        for args in (("--out", str(out), *TRAIN[1:-2]), ("--resume", str(out))):
            result = run_grow("train", *args, "--quiet", GROWTH_DATA_DIR=str(cache))
            one_line_error(result, "in use by another grow process")
        assert snapshot(out) == before
    finally:
        first.send_signal(signal.SIGCONT)
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode in (0, 130), stderr  # stopped cleanly (or had just finished)
    assert "Traceback" not in stderr
    assert json.loads((out / "config.json").read_text())["config"]["budget_flops"] == 3e10


# --------------------------------------------------------------------------- faults that do not stop a run


def test_non_image_files_are_skipped_and_a_corrupt_cache_is_decoded_again(ws: Path, cache: Path) -> None:
    image_tree(ws / "tree")
    (ws / "tree" / "train" / "cat" / "notes.txt").write_text("not an image\n")
    (ws / "tree" / "README").write_text("train/ and test/\n")
    result = grow(ws, *TREE, cache=cache)
    assert result.returncode == 0, result.stderr[-3000:]
    [cached] = (cache / "imagefolder").glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:100])  # a decoded-image cache torn by a crash
    shutil.rmtree(ws / "new")
    result = grow(ws, *TREE, cache=cache)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ignoring unreadable data cache" in lines[0], result.stderr
    assert len(cached.read_bytes()) > 1000  # written again, whole
    assert json.loads((ws / "new" / "summary.json").read_text())["data"].startswith("imagefolder:")


def test_a_torn_metrics_line_is_dropped_on_resume(ws: Path, cache: Path, finished: Path) -> None:
    shutil.copytree(finished, ws / "run")
    (ws / "run" / "summary.json").unlink()  # killed mid-line, before the summary (a finished run is not resumed)
    lines = (ws / "run" / "metrics.jsonl").read_text().splitlines(keepends=True)
    (ws / "run" / "metrics.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    result = grow(ws, "train", "--resume", "run", "--quiet", cache=cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (ws / "run" / "metrics.jsonl").read_text() == "".join(lines[:-1])  # every whole line kept


# --------------------------------------------------------------------------- signals


def test_a_second_interrupt_stops_at_once() -> None:
    """The first SIGINT asks the loop to checkpoint and stop after its step; a second one does not wait."""
    from growth.trainer import StopRequest

    previous = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs in the main thread between bytecodes
        assert stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # a handler that only recorded the signal would let this sleep run out
    assert signal.getsignal(signal.SIGINT) is previous  # the previous handler is back
