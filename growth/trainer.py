"""The budgeted training loop: train until the training-FLOP budget is spent, exactly.

All settings live in :class:`TrainConfig`. The learning rate is a function of the fraction of the
budget spent (linear warm-up, then cosine or linear decay to zero), so the schedule ends when the
budget does, however the architecture's cost changes along the way. The last step's batch is cut to
what the budget still affords, so the ledger ends within one sample's cost of the budget.

The data sit on the training device as uint8 tensors; each batch is gathered, augmented (random crop
with padding, horizontal flip) and normalised there. Every random stream (init, data order,
augmentation, growth) is seeded and checkpointed, so a resumed run ends identical to an
uninterrupted one.

The hot loop never waits for the device: the epoch's permutation is copied there once per epoch,
mean and std are device tensors made once, and the loss (its sum and its maximum) and the count of
correct predictions are accumulated on the device and read (one sync) only every ``report_every_s``
seconds, before every evaluation and before every checkpoint. That read is also the divergence
check: a non-finite or exploded loss at any step since the last read stops the run
(:class:`RunError`) before anything else is evaluated, grown or written, so every checkpoint on disk
comes from steps whose losses were all finite and below the limit (and whose weights are finite:
:meth:`Trainer.save_checkpoint` checks them too). The architecture's cost is measured once per
architecture (``model.genotype`` is replaced at every growth event), not per step.

With ``config.compile`` (unset: where it pays, :func:`growth.device.compile_pays`) the step's forward and
loss (and so, through AOTAutograd, its backward) run under ``torch.compile``, specialised to the
architecture and the batch size: after every change of architecture Dynamo's caches are reset and the
step compiled afresh, so growth never runs into Dynamo's recompile limit (hitting it anyway is an error,
never a silent fallback to eager). The step that compiles is timed as compile time (``summary.json``:
``compile_time_s``), not training time.

The run's set-up (directory, data, seed model, resume) is :mod:`growth.run`; the schedule is
:mod:`growth.schedule`, the optimizer :mod:`growth.optim`.

Example:
    >>> from growth.run import train
    >>> cfg = TrainConfig(seed="resnet8-thin", data="sample", budget_flops=2e11, subset=512)
    >>> summary = train(cfg, out="/tmp/doc-run", display=None)    # doctest: +SKIP
"""

from __future__ import annotations

import gc
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, NoReturn, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import genotype_of

from . import distributed
from .compute import Ledger, ModelCost, measure_cost
from .config import ConfigError, TrainConfig
from .data import Dataset, augment, normalize
from .device import compile_pays, compiler_missing, uses_bf16
from .optim import make_optimizer
from .runstore import CHECKPOINT, RunError, RunStore
from .schedule import lr_at, next_batch_size, steps_in


class Controller:
    """What a growth controller or a baseline method plugs into the loop: every method a no-op here.

    Subclasses override what they need; the trainer calls each at one place in :meth:`Trainer.fit`
    (in this order within a step: ``extra_loss``, backward, ``after_backward``, optimizer step,
    ``after_step``, ``step_train_flops_per_sample``). Whatever ``state_dict`` returns is checkpointed
    and handed back to ``load_state_dict`` on resume.
    """

    def attach(self, trainer: Trainer) -> None:
        """Once before the first step of a session (also after a resume): hooks, calibration."""

    def extra_loss(self, trainer: Trainer) -> torch.Tensor | None:
        """A penalty added to the loss of this step."""
        return None

    def after_backward(self, trainer: Trainer) -> None:
        """Gradients are ready; the optimizer has not stepped."""

    def after_step(self, trainer: Trainer) -> None:
        """The optimizer has stepped."""

    def step_train_flops_per_sample(self, trainer: Trainer) -> int | None:
        """This step's training FLOPs per sample when less than the whole model's (sampled sub-networks)."""
        return None

    def on_eval(self, trainer: Trainer, val_acc: float) -> None:
        """After each evaluation on the validation split (growth checks, pruning points)."""

    def next_eval_frac(self, trainer: Trainer, scheduled: float) -> float:
        """The share of the budget at which to evaluate next, given the regular cadence's ``scheduled``
        (a controller may ask for an earlier one: growth checks planned in epochs)."""
        return scheduled

    def display_rows(self) -> list[dict[str, Any]]:
        """Rows for the progress display (group, kind, width, ratio)."""
        return []

    def summary(self) -> dict[str, Any]:
        """Fields added to summary.json."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Display(Protocol):
    """What the trainer reports progress to (``growth.display`` has a terminal panel and log lines)."""

    def on_step(self, trainer: Trainer, loss: float, acc: float) -> None:
        """At each progress read (every ``Trainer.report_every_s`` seconds, and before every evaluation):
        the mean loss and the training accuracy of the steps since the previous call."""

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After every evaluation, with the record written to ``metrics.jsonl``."""

    def on_compile(self, trainer: Trainer) -> None:
        """Before a step that compiles the architecture (tens of seconds on a CPU, once per architecture)."""

    def on_note(self, trainer: Trainer, text: str) -> None:
        """A line for the user (a growth plan before the first step)."""

    def close(self) -> None:
        """At the end of the run (also when it fails)."""


class Recorder:
    """What keeps a record of the run beside ``metrics.jsonl`` and ``growth.jsonl`` (TensorBoard event files:
    :class:`growth.tensorboard_log.TensorBoardLog`): every method a no-op here. The trainer calls them only
    where the loop already waits for the device (evaluations, growth events, checkpoints), never per step.
    """

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After each evaluation and the controller's turn (a growth check has grown by now), with the record
        written to ``metrics.jsonl``."""

    def on_event(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Each record appended to ``growth.jsonl`` (:meth:`Trainer.log_event`)."""

    def on_finish(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """The run's summary, after the test evaluation and before ``summary.json`` is written."""

    def flush(self) -> None:
        """Before every checkpoint: everything recorded so far is on disk (a resume keeps it)."""

    def rewind(self, step: int) -> None:
        """On resume from the checkpoint of ``step``: forget what was recorded after it."""

    def close(self) -> None:
        """At the end of the run, also when it fails (so it raises nothing)."""


class RunInterrupted(KeyboardInterrupt):
    """The run stopped on SIGINT/SIGTERM after checkpointing; ``--resume`` continues it exactly."""


class StopRequest:
    """While training, SIGINT and SIGTERM ask the loop to finish its step, checkpoint and stop
    (:class:`RunInterrupted`); a second signal stops at once (the last checkpoint still resumes).
    Handlers are installed only in the main thread, and the previous ones are restored on exit."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt  # the second signal: stop now
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class LoopState:
    """Position of the loop; everything here is checkpointed."""

    step: int = 0
    epoch: int = 0
    position: int = 0                    # index into the current epoch's permutation
    next_eval_frac: float = 0.0
    best_val_acc: float = 0.0
    last_eval_step: int = -1
    last_val_acc: float = 0.0
    train_time_s: float = 0.0            # wall time spent in training steps, summed over sessions
    compile_time_s: float = 0.0          # wall time of the steps that compiled (torch.compile), summed
    compiles: int = 0                    # architectures compiled (again after each growth event and resume)
    compiled: bool | None = None         # compile unset: its decision, made at the first step (Trainer.compiled)
    extra: dict[str, Any] = field(default_factory=dict)
    # The training loss and accuracy since the last evaluation (metrics.jsonl's train_loss, train_acc), as of
    # the last progress read: the sum of the steps' losses (the device's float32 sum), steps, correct, images.
    loss_since_eval: float = 0.0
    steps_since_eval: int = 0
    correct_since_eval: int = 0
    images_since_eval: int = 0


class Trainer:
    """Owns model, optimizer, data, ledger and run store for one run. Read :meth:`fit` top-down."""

    #: Seconds between progress reads (one device sync each: display, divergence check).
    report_every_s = 0.5
    #: The ``torch.compile`` backend of ``config.compile`` (a name or a callable; tests use cheaper ones).
    compile_backend: str | Callable[..., Any] = "inductor"

    def __init__(self, config: TrainConfig, data: Dataset, model: nn.Module,
                 store: RunStore, device: torch.device, controller: Controller | None = None,
                 display: Display | None = None, recorders: Sequence[Recorder] = ()) -> None:
        if config.seed_value is None:
            raise ConfigError("the trainer needs config.seed_value (Run.open draws one when it is not given)")
        self.config, self.store, self.device = config, store, device
        self.controller: Controller = controller if controller is not None else Controller()
        self.display = display
        self.recorders = list(recorders)
        self.data = data.to(device)
        self.channels_last = config.channels_last and device.type != "mps"
        self.model = self.place(model)
        self.optimizer = make_optimizer(config, self.model)
        self.ledger = Ledger(config.budget_flops)
        self.state = LoopState(next_eval_frac=config.eval_every_frac)
        # Separate, checkpointed random streams: data order (CPU) and augmentation (device).
        self.order_gen = torch.Generator().manual_seed(config.seed_value)
        self.aug_gen = torch.Generator(device=device).manual_seed(config.seed_value + 1)
        self.permutation = torch.randperm(len(self.data.train_y), generator=self.order_gen)
        channels, height, width = self.data.train_x.shape[1:]
        self.input_shape: tuple[int, int, int] = (channels, height, width)  # (C, H, W) of one sample
        self.amp = uses_bf16(config.precision, device)
        self._last_checkpoint = time.monotonic()
        self.images_per_s = 0.0
        # Made once on the device, not per batch (a tensor built from Python floats is a host copy).
        self._mean = torch.tensor(self.data.mean, dtype=torch.float32, device=device).view(-1, 1, 1)
        self._std = torch.tensor(self.data.std, dtype=torch.float32, device=device).view(-1, 1, 1)
        self._permutation_on_device: torch.Tensor | None = None   # self.permutation, copied once an epoch
        # Progress accumulated on the device since the last read (report_progress); the loss since the last
        # evaluation (its sum at the last read: state.loss_since_eval).
        self._loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self._loss_max = torch.zeros((), dtype=torch.float32, device=device)
        self._loss_prev = torch.full((), math.inf, dtype=torch.float32, device=device)
        self._loss_blew_up = torch.zeros((), dtype=torch.bool, device=device)
        self._correct_sum = torch.zeros((), dtype=torch.int64, device=device)
        self._unread_steps = self._unread_images = 0
        self._last_report = time.monotonic()
        # Per architecture: the cost, and the step's forward (compiled when Trainer.compiled).
        self._cost: tuple[nn.Module, Any, ModelCost] | None = None
        self._step_arch: tuple[nn.Module, Any] | None = None
        self._forward: _Forward | None = None
        self._compiled: _Forward | None = None
        self._compile_pending = False   # the next compiled call compiles
        self._compiling = False         # this step compiled
        # A loss above this limit (a fresh network's is about ln(classes)) that more than doubled in one
        # step is blowing up: the run stops before a checkpoint keeps the wrecked weights, so the last
        # one stays worth resuming (with a lower rate; its first loss may be high, only growth counts).
        self.loss_limit = max(20.0, 10 * math.log(max(2, data.num_classes)))

    # -- the loop -------------------------------------------------------------------------------------

    @property
    def cost(self) -> ModelCost:
        """The model's size and cost, measured once per architecture (growth replaces ``model.genotype``)."""
        genotype = getattr(self.model, "genotype", None)
        cached = self._cost
        if cached is None or cached[0] is not self.model or cached[1] is not genotype:
            cached = self._cost = (self.model, genotype, measure_cost(self.model, self.input_shape))
        return cached[2]

    @property
    def compiled(self) -> bool:
        """Whether the steps run under ``torch.compile``: ``config.compile`` when set; unset (auto), where it
        pays (:func:`growth.device.compile_pays`; not under torchrun, not measured there), decided once at
        the run's first step from the starting network's cost and checkpointed, so that a resumed run (even
        with other threads) decides the same. Auto stays eager where inductor has no C++ compiler."""
        if self.config.compile is not None:
            return self.config.compile
        if self.state.compiled is None:
            steps = steps_in(self.config, 1.0, self.cost.train_flops_per_sample, len(self.data.train_y))
            self.state.compiled = (not distributed.active()
                                   and compile_pays(self.device, steps, torch.get_num_threads())
                                   and (self.compile_backend != "inductor" or compiler_missing(self.device) is None))
        return self.state.compiled

    def fit(self) -> dict[str, Any]:
        """Train until the budget is spent; evaluate, checkpoint and let the controller act on the way."""
        try:
            self.controller.attach(self)
            with StopRequest() as stop:
                self._loop(stop)
            if self.state.last_eval_step != self.state.step:
                self.evaluate_and_log()
            self.save_checkpoint()
            return self.finish()
        finally:
            for recorder in self.recorders:
                recorder.close()

    def _loop(self, stop: StopRequest) -> None:
        """Steps until the budget is spent (or a stop is requested)."""
        config, ledger = self.config, self.ledger
        tick = time.monotonic()
        while True:
            batch = next_batch_size(config.batch_size, ledger.affordable_samples(self.cost.train_flops_per_sample),
                                    len(self.permutation))
            if batch < max(2, distributed.world_size()):
                break  # the budget is spent (to within one sample's cost; one per process under torchrun)
            self.train_step(batch)
            self.state.step += 1
            if time.monotonic() - self._last_report >= self.report_every_s:
                self.report_progress()  # the one sync: divergence check and display
            now = time.monotonic()
            if self._compiling:
                self.state.compile_time_s += now - tick
            else:
                self.state.train_time_s += now - tick
                self.images_per_s = 0.9 * self.images_per_s + 0.1 * batch / max(now - tick, 1e-9)
            tick = now
            if ledger.fraction_spent >= self.state.next_eval_frac - 1e-12:
                self.evaluate_and_log()
                self.state.next_eval_frac = self.controller.next_eval_frac(
                    self, self.state.next_eval_frac + config.eval_every_frac)
                self.save_checkpoint()
            elif now - self._last_checkpoint > config.checkpoint_every_s:
                self.save_checkpoint()
            if stop.signal_name is not None:
                self.save_checkpoint()
                raise RunInterrupted(f"stopped by {stop.signal_name} at step {self.state.step}; checkpoint saved: "
                                     f"continue with --resume {self.store.path}")
            tick = time.monotonic()  # evaluation and checkpoints are not training time

    def train_step(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the next ``batch`` images of the epoch; (loss, correct predictions) as
        device tensors. Nothing here waits for the device: the loss and the count are accumulated on
        the device for :meth:`report_progress` to read.

        Under torchrun every rank draws the same global batch and trains on its shard of it
        (:mod:`growth.distributed`); the loss and the count are then the shard's."""
        config, data = self.config, self.data
        if self.state.position + batch > len(self.permutation):
            self.state.epoch += 1
            self.state.position = 0
            self.permutation = torch.randperm(len(data.train_y), generator=self.order_gen)
            self._permutation_on_device = None
        if self._permutation_on_device is None:
            self._permutation_on_device = _to_device(self.permutation, self.device)
        index = self._permutation_on_device[self.state.position:self.state.position + batch]
        self.state.position += batch
        x = augment(data.train_x[index], self.aug_gen)
        y = data.train_y[index]
        if distributed.active():  # this rank's shard of the global batch (augmented whole: one random stream)
            start, stop = distributed.shard(batch)
            x, y = x[start:stop], y[start:stop]
        fraction = self.ledger.fraction_spent
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(config, fraction)
        self.model.train()
        forward = self._step_forward(batch)
        if self._compiling and self.display is not None:
            self.display.on_compile(self)  # the step about to run compiles (tens of seconds on a CPU)
        loss, correct = forward(x, y)
        penalty = self.controller.extra_loss(self)
        self.optimizer.zero_grad(set_to_none=True)
        # DDP averages the ranks' gradients: a shard's loss counts by its share of the batch, so that the
        # gradient is the global batch's mean also when the batch does not split evenly (the budget's last).
        scaled = loss * (len(y) * distributed.world_size() / batch) if distributed.active() else loss
        (scaled if penalty is None else scaled + penalty).backward()
        self.controller.after_backward(self)
        self.optimizer.step()
        self.controller.after_step(self)
        per_sample = self.controller.step_train_flops_per_sample(self) or self.cost.train_flops_per_sample
        self.ledger.charge(batch * per_sample, batch)
        loss = loss.detach()
        self._loss_sum.add_(loss)  # a non-finite loss makes the sum non-finite
        torch.maximum(self._loss_max, loss, out=self._loss_max)
        # Blowing up: above loss_limit and more than doubled since the step before.
        self._loss_blew_up.logical_or_(loss > (2 * self._loss_prev).clamp_min_(self.loss_limit))
        self._loss_prev.copy_(loss)
        self._correct_sum.add_(correct)
        self._unread_steps += 1
        self._unread_images += len(y)
        return loss, correct

    def report_progress(self) -> None:
        """Read what the steps since the last read accumulated on the device (one sync): a non-finite
        loss among them, or one above ``loss_limit`` that more than doubled in one step, stops the run
        (:class:`RunError`); else the display gets their mean loss and training accuracy."""
        self._last_report = time.monotonic()
        if self._unread_steps == 0:
            return
        # The loss is summed on the device from one evaluation to the next (in step order, so a resumed run's
        # train_loss is bit-identical): the window's is the difference to the previous read.
        loss_total, loss_max, blew_up, correct = torch.stack(
            [self._loss_sum, self._loss_max, self._loss_blew_up.to(self._loss_sum.dtype),
             self._correct_sum.to(self._loss_sum.dtype)]).tolist()
        steps, images, first = self._unread_steps, self._unread_images, self.state.step - self._unread_steps + 1
        loss_window = loss_total - self.state.loss_since_eval
        self.state.loss_since_eval = loss_total
        self.state.steps_since_eval += steps
        self.state.correct_since_eval += int(correct)
        self.state.images_since_eval += images
        self._loss_max.zero_()
        self._loss_blew_up.zero_()
        self._correct_sum.zero_()
        self._unread_steps = self._unread_images = 0
        if not math.isfinite(loss_total) or blew_up:
            bad = loss_total if not math.isfinite(loss_total) else loss_max
            self._diverged(f"the loss is {bad:.4g}" + (f" at step {first}" if steps == 1 else
                                                          f" at one of steps {first}-{self.state.step}"))
        if self.display is not None:
            self.display.on_step(self, loss_window / steps, correct / images)

    def _step_forward(self, batch: int) -> _Forward:
        """The step's forward for the current architecture: uint8 batch and labels -> (loss, correct).

        Made again whenever the architecture changes (another model, or a new ``model.genotype``);
        when :attr:`compiled` that also resets Dynamo and compiles afresh. The compiled forward is
        specialised to the regular batch size; an odd batch (the budget's last) runs eagerly.
        """
        self._compiling = False
        arch = (self.model, getattr(self.model, "genotype", None))
        if self._forward is None or self._step_arch is None or any(a is not b for a, b in zip(arch, self._step_arch)):
            if distributed.active():  # the old DDP goes first: it holds the parameters' old-shaped gradient slots
                self._forward = self._compiled = None
                gc.collect()
            self._step_arch, self._forward, self._compiled = arch, self._make_forward(), None
            if self.compiled:
                import torch._dynamo

                torch._dynamo.reset()  # the old architecture's graphs go; the recompile count starts again
                self._compiled = torch.compile(self._forward, backend=self.compile_backend, dynamic=False)
                self._compile_pending = True
                self.state.compiles += 1
        if self._compiled is None or batch != min(self.config.batch_size, len(self.permutation)):
            return self._forward
        self._compiling, self._compile_pending = self._compile_pending, False
        return self._run_compiled

    def _run_compiled(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch._dynamo

        assert self._compiled is not None
        try:
            with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
                return self._compiled(x, y)
        except torch._dynamo.exc.FailOnRecompileLimitHit:
            raise RunError(f"torch.compile recompiled the step of one architecture more than "
                           f"{torch._dynamo.config.recompile_limit} times (at step {self.state.step}; e.g. a "
                           "controller's forward hook reads a Python number that changes every step): run "
                           "without --compile") from None

    def _make_forward(self) -> _Forward:
        # Under torchrun the step runs through DDP, wrapped afresh around every architecture.
        model, mean, std = distributed.wrap(self.model, self.device), self._mean, self._std
        channels_last, amp, device_type = self.channels_last, self.amp, self.device.type
        smoothing = self.config.label_smoothing

        def forward(x_uint8: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = normalize(x_uint8, mean, std)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
            return loss, (logits.argmax(1) == y).sum()

        return forward

    def place(self, model: nn.Module) -> nn.Module:
        """The model on the training device, in the memory layout the inputs use."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def model_input(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 images on the device -> normalised float batch in the model's memory layout."""
        x = normalize(x_uint8, self._mean, self._std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def probe_batch(self, n: int = 256) -> torch.Tensor:
        """Up to ``n`` validation images (training images when there is no validation split), used
        to measure how much an edit of the architecture changes the network's output."""
        images = self.data.val_x if len(self.data.val_x) else self.data.train_x
        return self.model_input(images[:n])

    @torch.no_grad()
    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's float logits on ``x`` in eval mode."""
        self.model.eval()
        return self.model(x).float()

    def output_change(self, probe: torch.Tensor, before: torch.Tensor) -> float:
        """Relative change of the eval-mode logits on ``probe`` since ``before`` (0: an exact edit)."""
        return float((self.eval_logits(probe) - before).norm() / before.norm().clamp_min(1e-12))

    def note(self, text: str) -> None:
        """Tell the user ``text`` through the display (a line in logs, above the live panel on a terminal)."""
        note = getattr(self.display, "on_note", None)  # a display written before notes existed has none
        if note is not None:
            note(self, text)

    def log_event(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one record to ``growth.jsonl``: the event, where the run stands, and ``fields``."""
        record = {"event": event, "step": self.state.step, "train_flops": self.ledger.spent_flops,
                  "fraction": round(self.ledger.fraction_spent, 5), **fields}
        self.store.append_jsonl("growth.jsonl", record)
        for recorder in self.recorders:
            recorder.on_event(self, record)
        return record

    @torch.no_grad()
    def accuracy(self, x_all: torch.Tensor, y_all: torch.Tensor, batch: int = 1000) -> float:
        """Top-1 accuracy in eval mode, no augmentation. Charged to the ledger's eval account only."""
        self.model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, len(y_all), batch):
            x = self.model_input(x_all[start:start + batch])
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                correct += (self.model(x).argmax(1) == y_all[start:start + batch]).sum()
        self.ledger.record_eval(len(y_all) * self.cost.forward_flops)
        return int(correct) / max(1, len(y_all))  # one sync per evaluation

    def evaluate_and_log(self) -> float:
        """Validation accuracy, logged to ``metrics.jsonl`` (with the training loss and accuracy since the last
        evaluation) and the display, then the controller's turn, then the recorders'."""
        self.report_progress()  # a diverged run stops here, before it is evaluated or grown
        val_acc = self.accuracy(self.data.val_x, self.data.val_y)
        state = self.state
        state.best_val_acc = max(state.best_val_acc, val_acc)
        state.last_eval_step, state.last_val_acc = state.step, val_acc
        steps, images = state.steps_since_eval, state.images_since_eval
        record = {"step": state.step, "epoch": round(self.ledger.samples / len(self.data.train_y), 3),
                  "train_flops": self.ledger.spent_flops, "fraction": round(self.ledger.fraction_spent, 5),
                  "lr": self.optimizer.param_groups[0]["lr"],
                  "train_loss": state.loss_since_eval / steps if steps else None,
                  "train_acc": state.correct_since_eval / images if images else None,
                  "val_acc": val_acc, "params": self.cost.params, "macs": self.cost.macs,
                  "images_per_s": round(self.images_per_s, 1), "time_s": round(state.train_time_s, 2)}
        self._loss_sum.zero_()
        state.loss_since_eval, state.steps_since_eval, state.correct_since_eval, state.images_since_eval = 0.0, 0, 0, 0
        self.store.append_jsonl("metrics.jsonl", record)
        if self.display is not None:
            self.display.on_eval(self, record)
        self.controller.on_eval(self, val_acc)
        for recorder in self.recorders:
            recorder.on_eval(self, record)
        return val_acc

    def finish(self) -> dict[str, Any]:
        """Final test evaluation, weights, genotype and summary."""
        from search_spaces import genotype_to_dict

        test_acc = self.accuracy(self.data.test_x, self.data.test_y)
        val_acc = self.state.last_val_acc
        genotype = genotype_of(self.model)
        cost = self.cost
        self.store.write_json("genotype.json", genotype_to_dict(genotype))
        self.store.save_torch("weights.pt", {k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        summary = {
            "seed": self.config.seed, "data": self.data.name, "val_acc": val_acc, "test_acc": test_acc,
            "params": cost.params, "macs": cost.macs, "forward_flops": cost.forward_flops,
            "train_flops": self.ledger.spent_flops, "budget_flops": self.ledger.budget_flops,
            "eval_flops": self.ledger.eval_flops, "samples": self.ledger.samples,
            "epochs": round(self.ledger.samples / len(self.data.train_y), 3), "steps": self.state.step,
            "train_time_s": round(self.state.train_time_s, 2),
            "images_per_s": round(self.ledger.samples / max(self.state.train_time_s, 1e-9), 1),
            "compile": self.compiled, "compile_time_s": round(self.state.compile_time_s, 2),
            "compiles": self.state.compiles,
            "widths": genotype.compact(), "device": str(self.device),
            "precision": "bf16" if self.amp else "fp32",
        }
        summary.update(self.controller.summary())
        for recorder in self.recorders:
            recorder.on_finish(self, summary)
            recorder.flush()
        self.store.write_json("summary.json", summary)
        return summary

    # -- checkpoints ----------------------------------------------------------------------------------

    def _diverged(self, what: str) -> NoReturn:
        raise RunError(f"training diverged at step {self.state.step} ({what}; learning rate too high?): stopped, "
                       f"the last good checkpoint in {self.store.path} is kept; continue it with a lower rate: "
                       f"--resume {self.store.path} --override lr=...")

    def save_checkpoint(self) -> None:
        """Everything needed to resume (see :mod:`growth.runstore`), written atomically; never a
        diverged state: the losses since the last progress read and every weight and statistic must
        be finite (two device syncs per checkpoint)."""
        from search_spaces import genotype_to_dict

        if not distributed.is_main():  # under torchrun rank 0 writes the run directory
            return
        self.report_progress()
        tensors = [t.detach() for t in self.model.state_dict().values() if t.is_floating_point()]
        if not bool(torch.stack([t.isfinite().all() for t in tensors]).all()):
            self._diverged("a weight or BatchNorm statistic is not finite")

        names = {p: n for n, p in self.model.named_parameters()}
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        state = {
            "format": 1,
            "genotype": genotype_to_dict(genotype_of(self.model)),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # Names of the optimizer's params per group: growth appends params, so on resume the
            # groups are rebuilt in the same order rather than from a fresh assignment.
            "optimizer_params": [[names[p] for p in g["params"]] for g in self.optimizer.param_groups],
            "ledger": self.ledger.state_dict(),
            "loop": asdict(self.state),
            "permutation": self.permutation,
            "order_gen": self.order_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda_rng,
            "controller": self.controller.state_dict(),
        }
        for recorder in self.recorders:  # what they recorded up to this step is on disk before the checkpoint
            recorder.flush()
        self.store.save_torch(CHECKPOINT, state)
        self._last_checkpoint = time.monotonic()

    def load_checkpoint(self) -> None:
        """Restore the run from its checkpoint; ``RunError`` if it does not fit this run."""
        from search_spaces import build_model, genotype_from_dict

        state = self.store.load_torch(CHECKPOINT)
        try:
            model = build_model(genotype_from_dict(state["genotype"]))
            model.load_state_dict(state["model"])
            self.model = self.place(model)
            self.optimizer = make_optimizer(self.config, self.model)
            params = dict(self.model.named_parameters())
            for group, group_names in zip(self.optimizer.param_groups, state["optimizer_params"]):
                group["params"] = [params[n] for n in group_names]
            while len(self.optimizer.param_groups) < len(state["optimizer_params"]):
                names = state["optimizer_params"][len(self.optimizer.param_groups)]
                self.optimizer.add_param_group({"params": [params[n] for n in names]})
            self.optimizer.load_state_dict(state["optimizer"])
            self.ledger = Ledger.from_state_dict(state["ledger"])
            self.state = LoopState(**state["loop"])
            self.permutation = state["permutation"]
            self._permutation_on_device = None
            self.order_gen.set_state(state["order_gen"])
            self.aug_gen.set_state(state["aug_gen"])
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            if state["controller"]:
                self.controller.load_state_dict(state["controller"])
        except (KeyError, ValueError, RuntimeError, TypeError) as err:
            raise RunError(f"checkpoint {self.store.path / CHECKPOINT} does not fit this run: "
                           f"{str(err).splitlines()[0][:160]}") from None
        self._loss_sum.fill_(self.state.loss_since_eval)  # the float32 sum as it was: train_loss stays exact
        step = self.state.step
        self.store.rewind_jsonl("metrics.jsonl", lambda r: r.get("step", 0) <= step)
        self.store.rewind_jsonl("growth.jsonl", lambda r: r.get("step", 0) <= step)
        for recorder in self.recorders:
            recorder.rewind(step)


#: The step's forward: (uint8 images, labels) on the device -> (mean loss, correct predictions).
_Forward = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device`` without blocking the host (from pinned memory on CUDA)."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
