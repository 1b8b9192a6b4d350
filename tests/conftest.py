"""Shared test helpers: one way to run the ``grow`` command, one subprocess environment, one
network guard. Test modules import the helpers (``from conftest import run_grow``) and use the
fixtures by name.

End-to-end tests that train for more than a few seconds are marked ``slow``; ``make test-fast``
leaves them out (``pytest -m "not slow"``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

GROW = [sys.executable, "-m", "growth.cli"]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a ``grow`` subprocess: one thread (reproducible, no oversubscription on a
    small busy CPU), unbuffered output, a wide console for rich tables, plus ``extra``."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="200", **extra)
    return env


def run_grow(*args: str, cwd: Path | None = None, timeout: float = 600, check: bool = False,
             **env: str) -> subprocess.CompletedProcess:
    """``grow ARGS`` in a fresh interpreter; text output captured."""
    result = subprocess.run([*GROW, *args], capture_output=True, text=True, cwd=cwd, env=subprocess_env(**env),
                            timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def start_grow(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    """``grow ARGS`` started in the background (stderr kept, for a test that interrupts it)."""
    return subprocess.Popen([*GROW, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=subprocess_env())


@pytest.fixture
def one_thread():
    """Run a test on one thread: reproducible timings-free results and no oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test; data sets must not download."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests\nsecond line")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import growth.data.torchvision_sets as tv

    monkeypatch.setattr(tv, "_download", lambda name, root: refuse())
    monkeypatch.delenv("GROWTH_OFFLINE", raising=False)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size, mtime and content hash: equal snapshots before and
    after a command mean it wrote, removed and changed nothing there."""
    import hashlib

    state = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        state[str(path.relative_to(root))] = (path.is_dir(), st.st_size, st.st_mtime_ns, digest)
    return state


def one_line_error(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """Assert that ``grow`` failed as a user should see it: exit ``code``, no traceback, one line on
    stderr (``grow: error: ...``) holding every needle; returns that line."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("grow: error:") or lines[0].startswith("grow: interrupted:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def kill_after_first_evaluation(worker: subprocess.Popen, run_dir: Path, timeout_s: float = 300) -> None:
    """SIGKILL ``worker`` once its run in ``run_dir`` has written one evaluation (mid-training)."""
    import signal
    import time

    deadline = time.monotonic() + timeout_s
    metrics = run_dir / "metrics.jsonl"
    while not metrics.is_file() or not metrics.read_text():
        assert worker.poll() is None, worker.communicate()[1]  # still training: one evaluation written
        assert time.monotonic() < deadline
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()


@pytest.fixture
def low_recompile_limit() -> Iterator[int]:
    """Dynamo's recompile limit at 2 for one test, through Dynamo's own config API (monkeypatching the
    config module's attribute removes it for the tests after)."""
    import torch._dynamo

    with torch._dynamo.config.patch(recompile_limit=2):
        yield 2


def tensorboard_events(run_dir: Path) -> dict[str, list[tuple[int, Any]]]:
    """What TensorBoard's own reader finds in the event files of ``run_dir``: for every scalar tag its
    (step, value) points, for every text tag its (step, text) entries, in the order read."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})  # 0: keep every point
    reader.Reload()
    found: dict[str, list[tuple[int, Any]]] = {
        tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}
    for tag in reader.Tags()["tensors"]:
        found[tag] = [(e.step, b"".join(e.tensor_proto.string_val).decode()) for e in reader.Tensors(tag)]
    return found


def train_in_process(config: Any, out: Path) -> Path:
    """A (tiny) training run of ``config`` in this process on one thread, leaving torch's thread count as it
    was; its run directory."""
    from growth.run import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, out=out)
    finally:
        torch.set_num_threads(threads)
    return out
