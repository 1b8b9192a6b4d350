"""The progress display (growth.display): what a user sees off a terminal, and durations in days."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest
from conftest import GROW, subprocess_env

from growth.compute import Ledger
from growth.display import PlainDisplay, format_duration


def _fake_trainer(spent: float, budget: float) -> SimpleNamespace:
    ledger = Ledger(budget)
    ledger.charge(spent)
    return SimpleNamespace(ledger=ledger, state=SimpleNamespace(step=12), images_per_s=100.0,
                           cost=SimpleNamespace(macs=2.6e6, train_flops_per_sample=1.56e7))


def test_off_a_terminal_a_long_run_prints_a_progress_line_at_least_every_minute():
    out = io.StringIO()
    display = PlainDisplay(out)
    trainer = _fake_trainer(1e12, 2e17)
    display.on_step(trainer, 2.0, 0.1)
    assert out.getvalue() == ""                         # not yet a minute since it started
    display.every_s = 0.0                               # as if a minute had passed
    display.on_step(trainer, 2.0, 0.1)
    line = out.getvalue()
    assert "step     12" in line and "loss 2.000" in line and "eta" in line and "d " in line.split("eta")[1]


def test_a_note_is_a_line_of_its_own():
    out = io.StringIO()
    PlainDisplay(out).on_note(_fake_trainer(0, 1e12), "plan: grow 2.6M -> 4.8M MACs")
    assert out.getvalue() == "plan: grow 2.6M -> 4.8M MACs\n"


def test_durations_count_days_instead_of_wrapping_at_100_hours():
    assert format_duration(99 * 3600 + 59 * 60 + 59) == "4d 03:59:59"
    assert format_duration(365 * 86400) == "365d 00:00:00"


@pytest.mark.slow
def test_the_live_panel_in_a_terminal_shows_the_plan_an_eta_in_days_and_ctrl_c_says_how_to_resume(tmp_path):
    """The headline kind of run (days long) started in a pseudo-terminal, as a user's shell would: rich draws its
    live panel, the plan line is above it, the ETA counts days; Ctrl-C (SIGINT from the terminal) checkpoints
    and ends with the resume line. 2e16 rather than 2e17: on a slow shared CPU 2e17 may be refused as longer
    than a year, which is tested elsewhere."""
    out = tmp_path / "run"
    main, child = pty.openpty()
    env = subprocess_env(TERM="xterm-256color", LINES="40")
    worker = subprocess.Popen([*GROW, "--seed", "resnet20-thin", "--budget", "2e16", "--data", "sample",
                               "--no-compile", "--no-tensorboard", "--out", str(out)],
                              stdin=child, stdout=child, stderr=child, env=env, cwd=tmp_path, start_new_session=True)
    os.close(child)
    screen = b""

    def read_until(pattern: bytes, timeout_s: float) -> bytes:
        nonlocal screen
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not re.search(pattern, screen):
            ready, _, _ = select.select([main], [], [], 1.0)
            if ready:
                try:
                    screen += os.read(main, 65536)
                except OSError:  # the child closed the terminal
                    break
        match = re.search(pattern, screen)
        assert match, f"no {pattern!r} on the screen:\n{screen.decode(errors='replace')[-3000:]}"
        return match.group(0)

    try:
        eta = read_until(rb"ETA \d+d \d\d:\d\d:\d\d", 300)
        text = screen.decode(errors="replace")
        assert "plan:" in text and "\x1b[" in text                    # the plan line, drawn by rich (escapes)
        assert int(eta.split()[1][:-1]) >= 1
        os.killpg(worker.pid, signal.SIGINT)                             # what Ctrl-C in the terminal sends
        read_until(rb"--resume \S+", 120)
        assert worker.wait(timeout=60) != 0
    finally:
        if worker.poll() is None:
            worker.kill()
        os.close(main)
    assert (out / "checkpoint.pt").exists()
