"""The progress display (growth.display): what a user sees off a terminal, and durations in days."""

from __future__ import annotations

import io
from types import SimpleNamespace

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
