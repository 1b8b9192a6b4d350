"""Progress display: a live rich panel on a terminal, plain log lines otherwise.

The trainer calls ``on_step`` at each read of its device-side loss and accuracy sums (twice a second,
and before every evaluation and checkpoint: never once per step, which would sync the device) with the
means since the previous read, and ``on_eval`` after every evaluation (any object
with these methods and ``close``: :class:`growth.trainer.Display`); a growth controller may provide
``display_rows()`` (group, width, Γ ratio) which is shown as a table.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Group

    from .trainer import Trainer


def _si(value: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale * 0.9995:  # so that 999.99G prints as 1T, not 1e+03G
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def format_duration(seconds: float) -> str:
    """``HH:MM:SS``, with days in front when there are any (a run of a year says so).

    >>> format_duration(59), format_duration(3 * 86400 + 3661), format_duration(400 * 86400)
    ('00:00:59', '3d 01:01:01', '400d 00:00:00')
    """
    seconds = max(0, int(min(seconds, 1e12)))  # 31,000 years: beyond that the figure says nothing more
    days, rest = divmod(seconds, 86400)
    clock = time.strftime("%H:%M:%S", time.gmtime(rest))
    return f"{days}d {clock}" if days else clock


def _eta(trainer: Trainer) -> str:
    flops_per_s = trainer.cost.train_flops_per_sample * max(trainer.images_per_s, 1e-9)
    return format_duration(trainer.ledger.remaining_flops / flops_per_s)


def _compiling(trainer: Trainer) -> str:
    return f"step {trainer.state.step:>6}  compiling the training step for this architecture (torch.compile)"


class PlainDisplay:
    """One line per evaluation, for logs and pipes."""

    #: Off a terminal a long run still says it is alive: a progress line at least this often (seconds).
    every_s = 60.0

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._last = time.monotonic()

    def on_step(self, trainer: Trainer, loss: float, acc: float) -> None:
        self.loss, self.acc = loss, acc
        if time.monotonic() - self._last >= self.every_s:
            ledger = trainer.ledger
            self._print(f"step {trainer.state.step:>6}  flops {_si(ledger.spent_flops)}/{_si(ledger.budget_flops)} "
                        f"({100 * ledger.fraction_spent:5.1f}%)  loss {loss:.3f}  macs {_si(trainer.cost.macs)}  "
                        f"{trainer.images_per_s:.0f} img/s  eta {_eta(trainer)}")

    def on_note(self, trainer: Trainer, text: str) -> None:
        self._print(text)

    def _print(self, line: str) -> None:
        self._last = time.monotonic()
        print(line, file=self.stream, flush=True)

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        ledger = trainer.ledger
        line = (f"step {record['step']:>6}  flops {_si(ledger.spent_flops)}/{_si(ledger.budget_flops)} "
                f"({100 * ledger.fraction_spent:5.1f}%)  loss {getattr(self, 'loss', float('nan')):.3f}  "
                f"val_acc {record['val_acc']:.4f}  macs {_si(record['macs'])}  "
                f"{record['images_per_s']:.0f} img/s  eta {_eta(trainer)}")
        rows = trainer.controller.display_rows()
        if rows:
            line += "  widths " + " ".join(f"{r['group']}={r['width']}({r['ratio']:.2f})" for r in rows
                                           if r["kind"] == "stage")
        self._print(line)

    def on_compile(self, trainer: Trainer) -> None:
        self._print(_compiling(trainer))

    def close(self) -> None:
        pass


class RichDisplay:
    """A live panel: progress bar with loss, accuracy, FLOPs, images/s, ETA, and the group table."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.live.start()
        self.loss = self.acc = float("nan")
        self.val_acc = float("nan")
        self._last = 0.0

    def on_step(self, trainer: Trainer, loss: float, acc: float) -> None:
        self.loss, self.acc = loss, acc
        now = time.monotonic()
        if now - self._last > 0.25:
            self._last = now
            self.live.update(self._render(trainer))

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.val_acc = record["val_acc"]
        self.live.update(self._render(trainer))

    def on_note(self, trainer: Trainer, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)  # above the live panel, and it stays there

    def on_compile(self, trainer: Trainer) -> None:
        from rich.console import Group
        from rich.text import Text

        # Shown for as long as the compilation takes: the panel is drawn again at the next progress read.
        self.live.update(Group(Text(_compiling(trainer)), self._render(trainer)))

    def _render(self, trainer: Trainer) -> Group:
        from rich.console import Group, RenderableType
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        ledger = trainer.ledger
        head = Text(f"{trainer.config.seed}  step {trainer.state.step}  "
                    f"loss {self.loss:.3f}  acc {self.acc:.3f}  val {self.val_acc:.4f}  "
                    f"FLOPs {_si(ledger.spent_flops)}/{_si(ledger.budget_flops)}  "
                    f"{trainer.images_per_s:.0f} img/s  ETA {_eta(trainer)}")
        parts: list[RenderableType] = [head, ProgressBar(total=1.0, completed=ledger.fraction_spent, width=60)]
        rows = trainer.controller.display_rows()
        if rows:
            table = Table("group", "width", "Γ ratio", box=None, padding=(0, 1))
            for r in rows:
                table.add_row(r["group"], str(r["width"]), f"{r['ratio']:.2f}")
            parts.append(table)
        return Group(*parts)

    def close(self) -> None:
        self.live.stop()


def make_display(quiet: bool = False) -> PlainDisplay | RichDisplay | None:
    """Rich on a terminal, plain lines when stdout is not one, nothing when ``quiet``."""
    if quiet:
        return None
    return RichDisplay() if sys.stdout.isatty() else PlainDisplay()
