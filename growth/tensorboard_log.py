"""TensorBoard event files in the run directory, so that ``tensorboard --logdir runs`` shows every run.

:class:`TensorBoardLog` is a :class:`growth.trainer.Recorder`: the trainer hands it what it writes to
``metrics.jsonl`` and ``growth.jsonl``, where the loop already waits for the device (evaluations, growth checks,
checkpoints), so it adds no device sync to the loop. Its tags, against the training step:

=====================================  =========================================================================
``train/loss``, ``train/accuracy``     mean over the steps since the previous evaluation (metrics.jsonl's
                                       ``train_loss``, ``train_acc``)
``val/accuracy``, ``test/accuracy``    at every evaluation; the test split once, at the end
``lr``, ``macs``, ``params``,          as in metrics.jsonl (``fraction``: share of the training-FLOP budget
``images_per_s``, ``budget/fraction``  spent)
``width/<group>``                      every channel group's width at each evaluation, after the controller's
                                       turn (a growth check's widening included)
``gamma/<group>``                      Γ's occupancy of each group at each growth check (the check's ``scores``)
``growth`` (text)                      the growth events of each step (plan, check, widen, deepen, ...), one
                                       entry per step
=====================================  =========================================================================

Events go through ``torch.utils.tensorboard.SummaryWriter`` (the ``tensorboard`` package, imported only here
and only when a run writes events), opened at the first write, so a run that stops before its first evaluation
leaves no event file. Every checkpoint flushes them first. A resumed run writes a new event file beside the old
ones after rewinding those to the checkpoint's step, as ``metrics.jsonl`` is rewound: events of later steps (a
run killed between an evaluation and its checkpoint) and a record torn by the kill are dropped, each file
replaced atomically, so no step appears twice whichever reader reads the directory. A write that fails (a full
disk) stops the run in one line, as every other file of the run does.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .runstore import RunError, RunStore, atomic_write_bytes
from .trainer import Recorder

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from .trainer import Trainer

#: How every event file's name starts (TensorBoard reads the files of a directory in name order).
EVENT_FILE_PREFIX = "events.out.tfevents."
#: The text tag of growth events.
GROWTH_TAG = "growth"
#: metrics.jsonl's fields and their scalar tags.
SCALARS = {"train_loss": "train/loss", "train_acc": "train/accuracy", "val_acc": "val/accuracy", "lr": "lr",
           "macs": "macs", "params": "params", "images_per_s": "images_per_s", "fraction": "budget/fraction"}
#: Tags recorded when the run ends, after its last checkpoint.
AT_THE_END = ("test/accuracy",)
# Where a growth.jsonl record stands: said once per entry, not per field.
_POSITION = ("event", "step", "train_flops", "fraction")


def tensorboard_missing() -> str | None:
    """Why this installation cannot write TensorBoard events (the package is missing), or None."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return "the tensorboard package is not installed (pip install tensorboard)"
    return None


def event_files(directory: Path) -> list[Path]:
    """The TensorBoard event files of a run directory, in the order TensorBoard reads them."""
    return sorted(p for p in Path(directory).glob(EVENT_FILE_PREFIX + "*") if p.is_file())


def describe_event(record: dict[str, Any]) -> str:
    """One growth.jsonl record as a line of Markdown (TensorBoard's text dashboard).

    >>> describe_event({"event": "widen", "step": 12, "train_flops": 1e9, "fraction": 0.1, "group": "stage2",
    ...                 "old_width": 8, "new_width": 13, "output_change": 2.1e-07})
    '- **widen** at 10.0% of the budget: `group=stage2` `old_width=8` `new_width=13` `output_change=2.1e-07`'
    """
    def shown(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, separators=(",", ":"), default=str)
        return str(value)

    fields = " ".join(f"`{key}={shown(value)}`" for key, value in record.items() if key not in _POSITION)
    where = f" at {100 * float(record['fraction']):.1f}% of the budget" if "fraction" in record else ""
    return f"- **{record.get('event', '?')}**{where}: {fields}".rstrip(": ")


def rewind_event_file(path: Path, step: int) -> bool:
    """Keep only the events of steps up to ``step`` in event file ``path`` (and none after a torn or damaged
    record), replacing the file atomically; False when it held nothing else and was left as it was.

    A run's first checkpoint (step 0) comes before anything is recorded, even what is recorded at step 0 (a growth
    run's plan, which a resumed run records again): rewound to step 0, a file keeps only its header. The test
    accuracy is recorded after the last checkpoint, when the run ends (a resumed run had not ended, and records it
    again): it is never kept."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    kept = io.BytesIO()
    writer = RecordWriter(kept)
    for raw in RawEventFileLoader(str(path)).Load():  # stops at a torn last record
        try:
            event = event_pb2.Event.FromString(raw)
        except Exception:  # protobuf's DecodeError: a damaged record; nothing after it is trusted
            break
        if event.WhichOneof("what") == "summary" and any(v.tag in AT_THE_END for v in event.summary.value):
            continue
        if event.WhichOneof("what") == "file_version" or (step > 0 and event.step <= step):
            writer.write(raw)
    data = kept.getvalue()
    if data == path.read_bytes():
        return False
    atomic_write_bytes(path, data)
    return True


def _widths(trainer: Trainer) -> list[tuple[str, int]]:
    """(group, width) of every channel group of the trainer's model, in network order; none for a model
    whose family has no channel groups (a timm reference)."""
    from search_spaces import FamilyError

    from .graph import channel_groups

    try:
        return [(group.name, group.width) for group in channel_groups(trainer.model)]
    except (FamilyError, TypeError):
        return []


class TensorBoardLog(Recorder):
    """Writes a run's metrics and growth events as TensorBoard events into its directory (see the module)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._writer: SummaryWriter | None = None
        self._scalars: list[tuple[str, float, int]] = []   # (tag, value, step) not yet handed to the writer
        self._texts: dict[int, list[str]] = {}              # step -> growth event lines not yet written

    # -- what the trainer hands over ------------------------------------------------------------------

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        step = int(record["step"])
        for field, tag in SCALARS.items():
            if record.get(field) is not None:
                self._scalars.append((tag, float(record[field]), step))
        self._scalars += [(f"width/{name}", float(width), step) for name, width in _widths(trainer)]
        self._write()

    def on_event(self, trainer: Trainer, record: dict[str, Any]) -> None:
        step = int(record.get("step", trainer.state.step))
        scores = record.get("scores")
        if record.get("event") in ("check", "refused") and isinstance(scores, dict):
            self._scalars += [(f"gamma/{name}", float(score), step) for name, score in scores.items()]
        self._texts.setdefault(step, []).append(describe_event(record))

    def on_finish(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        self._scalars.append((AT_THE_END[0], float(summary["test_acc"]), int(summary["steps"])))
        self._write()

    def flush(self) -> None:
        self._write()
        if self._writer is not None:
            self._guard(self._writer.flush)

    def rewind(self, step: int) -> None:
        for path in event_files(self.store.path):
            self._guard(lambda: rewind_event_file(path, step), path.name)

    def close(self) -> None:
        """Write what is pending and close the file; a failure here (the run is ending, perhaps on that very
        failure) is not raised again."""
        try:
            self.flush()
        except RunError:
            pass
        finally:
            writer, self._writer = self._writer, None
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # the writer's thread raises again what failed there
                    pass

    # -- writing --------------------------------------------------------------------------------------

    def _write(self) -> None:
        """Hand what is pending to the writer (opened at the first write); its thread writes the file."""
        if not self._scalars and not self._texts:
            return
        scalars, texts = self._scalars, self._texts
        self._scalars, self._texts = [], {}

        def write() -> None:
            writer = self._open()
            for tag, value, step in scalars:
                writer.add_scalar(tag, value, step)
            for step in sorted(texts):  # one entry per step: a reader keeps one value per tag and step
                writer.add_text(GROWTH_TAG, "\n".join(texts[step]), step)

        self._guard(write)

    def _open(self) -> SummaryWriter:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.store.path))
        return self._writer

    def _guard(self, action: Callable[[], Any], name: str = EVENT_FILE_PREFIX + "*") -> None:
        """``action()``; a write that fails (here or in the writer's thread, which raises it at the next call)
        is the run store's one-line error."""
        try:
            action()
        except OSError as err:
            raise self.store.write_failed(name, err) from None
