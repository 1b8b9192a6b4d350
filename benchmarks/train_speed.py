"""Speed of the engine's training step against a bare PyTorch loop, side by side in one process.

For every cell (model x eager/compiled x fp32/bf16 autocast) the engine (a :class:`growth.trainer.Trainer`
stepping as its loop does: batch size from the ledger, data order, augmentation, schedule, optimizer,
ledger, device-side progress sums and their periodic read) and a bare loop (the same model, data on
the device, the same augmentation function, ``torch.optim.SGD``, nothing else) train their own copy of
the same network. After a warm-up (which, compiled, compiles) their timed blocks are interleaved,
alternating which goes first, and the median time per step is reported as images/s; ``engine/bare``
is the engine's overhead (1.00: none), ``vs eager fp32`` what precision and compilation buy.

On a GPU the blocks end with a synchronisation (and larger batches are the default); the engine's
blocks also run under ``torch.cuda.set_sync_debug_mode("warn")``, which counts any host-device
synchronisation inside its steps (expected: 0 per step, apart from the periodic progress read).

Compile times are the wall time of the first step (the engine compiles first; the bare loop's graph
is the same one, so it often finds inductor's caches warm). On a machine busy with other processes
run with ``--threads 1``: OpenMP threads that wait for each other on a contended CPU slow compiled
and multi-threaded steps far more than the work itself.

Examples:
    python benchmarks/train_speed.py                                  # CPU, both models, all four steps
    python benchmarks/train_speed.py --models resnet20-thin --modes eager --steps 10
    python benchmarks/train_speed.py --device cuda --batch 512        # a GPU (also: --device all)
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from growth.config import TrainConfig
from growth.data import Dataset, augment, normalize
from growth.runstore import RunStore
from growth.schedule import next_batch_size
from growth.trainer import Trainer

Step = Callable[[], None]


@dataclass
class Cell:
    model: str
    mode: str        # eager | compiled
    precision: str   # fp32 | bf16
    engine: float = 0.0          # images/s
    bare: float = 0.0
    engine_compile_s: float = 0.0
    bare_compile_s: float = 0.0
    syncs_per_step: float | None = None


def synthetic_data(n: int, size: int = 32, classes: int = 10, seed: int = 0) -> Dataset:
    """CIFAR-shaped uint8 images and labels (random: speed does not depend on the pixels)."""
    gen = torch.Generator().manual_seed(seed)

    def images(k: int) -> torch.Tensor:
        return torch.randint(0, 256, (k, 3, size, size), dtype=torch.uint8, generator=gen)

    def labels(k: int) -> torch.Tensor:
        return torch.randint(0, classes, (k,), generator=gen)

    return Dataset(name="synthetic", classes=[str(c) for c in range(classes)], train_x=images(n),
                   train_y=labels(n), val_x=images(256), val_y=labels(256), test_x=images(256),
                   test_y=labels(256), mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))


def make_model(name: str) -> nn.Module:
    import search_spaces

    return search_spaces.create_model(name, num_classes=10, in_chans=3)


def engine_step(config: TrainConfig, data: Dataset, model: nn.Module, device: torch.device,
                root: Path) -> tuple[Step, Trainer]:
    """One iteration of ``Trainer._loop`` (without evaluations and checkpoints, which are not steps)."""
    store = RunStore.create(root / f"engine-{time.monotonic_ns()}", {"kind": "benchmark", "config": config.to_dict()})
    trainer = Trainer(config, data, model, store, device)
    trainer.controller.attach(trainer)

    def step() -> None:
        batch = next_batch_size(config.batch_size, trainer.ledger.affordable_samples(
            trainer.cost.train_flops_per_sample), len(trainer.permutation))
        trainer.train_step(batch)
        trainer.state.step += 1
        if time.monotonic() - trainer._last_report >= trainer.report_every_s:
            trainer.report_progress()

    return step, trainer


def bare_step(config: TrainConfig, data: Dataset, model: nn.Module, device: torch.device,
              compiled: bool) -> Step:
    """What one writes by hand: data on the device, a random batch, the same augmentation, forward,
    cross-entropy, backward, SGD."""
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=0.05,
                          momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    mean = torch.tensor(data.mean, device=device).view(-1, 1, 1)
    std = torch.tensor(data.std, device=device).view(-1, 1, 1)
    gen = torch.Generator(device=device).manual_seed(1)
    amp = config.precision == "bf16"
    channels_last = config.channels_last

    def forward(x_uint8: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = normalize(x_uint8, mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)

    fwd = torch.compile(forward, dynamic=False) if compiled else forward
    batch = config.batch_size
    perm = torch.randperm(len(train_y), device=device, generator=gen)
    pos = [0]

    def step() -> None:
        nonlocal perm
        if pos[0] + batch > len(perm):
            perm, pos[0] = torch.randperm(len(train_y), device=device, generator=gen), 0
        index = perm[pos[0]:pos[0] + batch]
        pos[0] += batch
        loss = fwd(augment(train_x[index], gen), train_y[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_block(step: Step, n: int, device: torch.device, count_syncs: bool) -> tuple[float, int]:
    """Seconds per step over a block of ``n`` steps (device work included); syncs seen inside it."""
    _sync(device)
    t0 = time.perf_counter()
    syncs = 0
    if count_syncs:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(n):
                    step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message).lower() for w in seen)
    else:
        for _ in range(n):
            step()
    _sync(device)
    return (time.perf_counter() - t0) / n, syncs


def run_cell(cell: Cell, args: argparse.Namespace, device: torch.device, batch: int, data: Dataset,
             root: Path) -> Cell:
    config = TrainConfig(seed=cell.model, data="synthetic", budget_flops=1e30, batch_size=batch, seed_value=0,
                         optimizer=args.optimizer, lam=1.0, precision=cell.precision, device=str(device),
                         compile=cell.mode == "compiled", channels_last=not args.no_channels_last)
    torch.manual_seed(0)
    base = make_model(cell.model)
    engine, trainer = engine_step(config, data, copy.deepcopy(base), device, root)
    # The engine first: its first compiled step resets Dynamo (a new architecture), which must not
    # throw away the bare loop's compiled graph.
    t0 = time.perf_counter()
    engine()  # compiled: this step compiles (the engine's loop books it as compile time)
    _sync(device)
    cell.engine_compile_s = time.perf_counter() - t0 if cell.mode == "compiled" else 0.0
    for _ in range(args.warmup - 1):
        engine()
    bare = bare_step(config, data, copy.deepcopy(base), device, cell.mode == "compiled")
    t0 = time.perf_counter()
    bare()
    _sync(device)
    cell.bare_compile_s = time.perf_counter() - t0 if cell.mode == "compiled" else 0.0
    for _ in range(args.warmup - 1):
        bare()
    times: dict[str, list[float]] = {"engine": [], "bare": []}
    syncs = 0
    count = device.type == "cuda"
    for r in range(args.rounds):
        for name in (("engine", "bare") if r % 2 == 0 else ("bare", "engine")):
            per_step, seen = _timed_block(engine if name == "engine" else bare, args.block, device,
                                          count and name == "engine")
            times[name].append(per_step)
            syncs += seen
    cell.engine = batch / statistics.median(times["engine"])
    cell.bare = batch / statistics.median(times["bare"])
    if count:
        cell.syncs_per_step = syncs / (args.rounds * args.block)
    return cell


def main(argv: list[str] | None = None) -> list[Cell]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet20-thin,resnet20", help="comma-separated seeds")
    ap.add_argument("--modes", default="eager,compiled", help="eager, compiled or both")
    ap.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16 (autocast) or both")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, or all (cpu, then cuda when present)")
    ap.add_argument("--batch", type=int, default=0, help="images per step (default 128 on CPU, 512 on a GPU)")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per loop and cell")
    ap.add_argument("--block", type=int, default=0, help="steps per timed block (default 2 on CPU, 20 on a GPU)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per loop first (>= 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "dessilbi"), help="the engine's optimizer "
                    "(the bare loop always runs SGD)")
    ap.add_argument("--no-channels-last", action="store_true")
    args = ap.parse_args(argv)
    args.warmup = max(1, args.warmup)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "all":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    models = [m for m in args.models.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    precisions = [p for p in args.precisions.split(",") if p]
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        for device in devices:
            gpu = device.type == "cuda"
            batch = args.batch or (512 if gpu else 128)
            block = args.block or (20 if gpu else 2)
            args.rounds = max(2, -(-args.steps // block))
            args.block = block
            data = synthetic_data(max(4 * batch, 2048))
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            name = torch.cuda.get_device_name(device) if gpu else f"{os.cpu_count()} cores"
            print(f"device {device} ({name})  threads {torch.get_num_threads()}  batch {batch}  "
                  f"optimizer {args.optimizer}  channels_last {not args.no_channels_last}  "
                  f"steps {args.rounds * block} per loop and cell  load {load:.2f}  torch {torch.__version__}",
                  flush=True)
            print(f"{'model':<15} {'step':<16} {'engine img/s':>12} {'bare img/s':>11} {'engine/bare':>11} "
                  f"{'vs eager fp32':>13} {'compile s (engine/bare)':>24}" + ("  syncs/step" if gpu else ""),
                  flush=True)
            for model in models:
                reference = None
                for mode in modes:
                    for precision in precisions:
                        cell = run_cell(Cell(model, mode, precision), args, device, batch, data, Path(tmp))
                        cells.append(cell)
                        if mode == "eager" and precision == "fp32":
                            reference = cell.engine
                        vs = f"{cell.engine / reference:.2f}x" if reference else "-"
                        compile_s = (f"{cell.engine_compile_s:.1f} / {cell.bare_compile_s:.1f}"
                                     if mode == "compiled" else "-")
                        syncs = f"  {cell.syncs_per_step:10.2f}" if cell.syncs_per_step is not None else ""
                        print(f"{model:<15} {mode + ' ' + precision:<16} {cell.engine:12.0f} {cell.bare:11.0f} "
                              f"{cell.engine / cell.bare:11.2f} {vs:>13} {compile_s:>24}{syncs}", flush=True)
            if hasattr(os, "getloadavg"):
                print(f"load at the end {os.getloadavg()[0]:.2f}", flush=True)
    return cells


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
