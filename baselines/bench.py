"""``grow bench``: every method x seed at one training-FLOP budget, resumable, with a report.

Layout of a bench directory::

    bench.json                 the bench's settings and one entry per finished cell
    bench.md                   the table (method, widths, depth, params, MACs, test acc mean ± std, ...)
    acc_vs_macs.png            test accuracy against inference MACs, Pareto front ringed; points at the same
                               MACs side by side, a linear axis under a 2x range
    acc_vs_train_flops.png     test accuracy against training FLOPs (only where cells spent different FLOPs)
    learning_curves.png        where every cell spent the same budget instead: validation accuracy against
                               training FLOPs, one line per method, mean over seed values (metrics.jsonl)
    acc_by_method.png          where methods share a size target: test accuracy per method, mean ± std,
                               MACs in the label, best on top
    cells/<method>/seed<k>/    an ordinary run directory per cell (config, metrics, summary, ...); a growing
                               method's cell also its growth timeline, growth.png (growth.report)

A cell with a ``summary.json`` is finished and skipped; a cell with a checkpoint is resumed; so
``grow bench`` can be re-run with the same arguments after any interruption. ``grow`` cells run
first: ``uniform:<seed>`` and the pruning methods take the grown network's MACs (same seed value)
as their size target unless ``--target-macs`` is given, and ``scratch`` trains the grown genotype.

``width:<seed>@<mult>`` cells (``frontier:<seed>`` expands to several) trace the *frontier*: the seed
at fixed widths, trained with SGD at the same budget. Every row of the report carries its frontier
gap: test accuracy minus the frontier's, interpolated linearly in log MACs at the row's MACs, per
seed value (against the frontier cells of the same seed value), then mean ± std over seeds.
Settings that shape a cell (budget, data, subset, validation size, size target) must match when a
bench is continued; methods and seeds may be added.

``grow bench --jobs N`` runs N cells at once, each in a process of its own: on CPU pinned to its own core
(``os.sched_setaffinity``) with one thread; with ``--devices cuda:0,cuda:1`` one cell per GPU
(``CUDA_VISIBLE_DEVICES``). Cells are seeded and independent, so the record is the one a serial bench writes
(same entries, same order); what orders them is kept: a cell that takes its size target or genotype from
the ``grow`` cell of its seed starts after it, and a cell is compared for twins only with the cells before
it in the serial order. The table and plots are rewritten after each finished cell, in both modes.

Each method has a colour and a marker of its own in every figure (:func:`method_styles`); methods that are
the same run are drawn once, named together.

Two cells whose training is the same (same :func:`run_identity`) are run once: the later one is
recorded as ``same_as`` the earlier and its row says so. This happens where the budget rule keeps
the seed: ``grow``, ``grow-uniform`` and ``dessilbi:<seed>`` are then all DessiLBI on the seed, and
``scratch`` (the grown genotype, i.e. the seed, with SGD) is ``width:<seed>@1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from growth.config import TrainConfig
from growth.report import si
from growth.runstore import CHECKPOINT, RunError, RunStore, atomic_write_json
from search_spaces import GrowthError
from search_spaces.errors import first_line

from .grow_method import DEFAULT_SEED as GROW_SEED
from .registry import MethodOptions, MethodSpec, configure, parse_method

# What a run has written before its first checkpoint (growth.runstore): a cell holding only these starts anew.
RUN_START_FILES = {"config.json", "metrics.jsonl", "growth.jsonl"}
# Growth runs that take --target-growth as their final size (else their size rule; --target-macs sizes only the
# uniform and pruning methods); with --target-growth, ``uniform:<seed>`` too (the others keep the grown MACs).
GROWTH_TARGETED = ("grow", "grow-uniform", "grow-price")
# Methods that take their size from the grow cell of the same seed value (unless --target-macs): equal MACs.
SIZE_TARGETED = ("uniform", "slimming", "dessilbi-prune", "sss", "scs", "vt", "net2net")
# Methods whose cells grow a network: each gets its growth timeline, growth.png, when it finishes.
GROWING_METHODS = (*GROWTH_TARGETED, "vt", "net2net")
SHAPING_SETTINGS = ("budget_flops", "data", "subset", "val_size", "target_macs", "target_growth")


def cell_dir(root: Path, spec: MethodSpec, seed: int) -> Path:
    return root / "cells" / str(spec).replace(":", "-").replace("/", "-") / f"seed{seed}"


def run_identity(config: TrainConfig, controller: Any, input_shape: tuple[int, int, int], num_classes: int) -> str:
    """A hash of everything that decides a cell's training; equal hashes are the same run.

    Normalised so that equal trainings compare equal: an explicit genotype equal to the seed's is
    the seed, checkpoint cadence does not change results (resume is exact), and a growth config
    whose plan does not grow is DessiLBI on the seed whatever its allocation.
    """
    from growth.compute import measure_cost
    from growth.config import GrowConfig
    from growth.plan import plans_growth
    from search_spaces import genotype_to_dict, get_genotype

    settings = config.to_dict()
    for not_the_run in ("checkpoint_every_s", "tensorboard"):  # how a run is logged and saved, not what it does
        settings.pop(not_the_run, None)
    if settings.get("genotype") is not None and not config.seed.startswith("timm:"):
        seed = get_genotype(config.seed, num_classes=num_classes, in_chans=input_shape[0])
        if genotype_to_dict(seed) == settings["genotype"]:
            settings["genotype"] = None
    if isinstance(config, GrowConfig) and settings.get("genotype") is None:
        seed_macs = measure_cost(get_genotype(config.seed, num_classes=num_classes, in_chans=input_shape[0]),
                                 input_shape).macs
        if not plans_growth(config, seed_macs):
            settings["allocation"] = "none"
    settings["controller"] = type(controller).__name__ if controller is not None else None
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _order(specs: list[MethodSpec]) -> list[MethodSpec]:
    return sorted(specs, key=lambda s: s.name != "grow")  # stable: grow first, others as given


def run_bench(methods: list[str], seeds: list[int], base: TrainConfig, out: Path,
              target_macs: float | None = None, display_factory: Callable[[], Any] | None = None,
              log: Callable[[str], None] = print, jobs: int = 1, devices: list[int] | None = None,
              target_growth: float | None = None) -> dict:
    """Run (or resume) every cell; returns the bench record also written to bench.json.

    A cell that fails is recorded with its one-line error and the bench goes on; running the bench
    again retries it. ``target_growth``: the size target of grow, grow-uniform and uniform:<seed> cells is
    this multiple of their own seed's MACs (seeds of different sizes in one bench). ``jobs`` > 1 runs that
    many cells at once (:func:`run_parallel`): one on each CUDA
    device of ``devices`` if given, else each on a CPU core of its own.
    """
    from growth.data import load_dataset

    specs = [parse_method(m) for m in methods]
    settings = {"budget_flops": base.budget_flops, "data": base.data, "subset": base.subset,
                "val_size": base.val_size, "methods": [str(s) for s in specs], "seeds": seeds,
                "target_macs": target_macs, "target_growth": target_growth}
    data = load_dataset(base.data, val_size=base.val_size, subset=base.subset)  # bad data: nothing written
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "bench.json"
    if record_path.exists():
        record = RunStore(out).read_json("bench.json")
        old = record["settings"]
        for key in SHAPING_SETTINGS:
            if old.get(key) != settings[key]:  # a bench from before a setting existed has None for it
                raise RunError(f"{out} holds a bench with {key}={old.get(key)}; "
                               f"this one has {settings[key]}: choose another --out")
        # Continuing a bench may add methods and seeds; the table keeps the earlier ones.
        settings["methods"] = list(dict.fromkeys(old["methods"] + settings["methods"]))
        settings["seeds"] = sorted(set(old["seeds"]) | set(seeds))
        record["settings"] = settings
    elif any(out.iterdir()):
        raise RunError(f"{out} exists, is not empty and holds no bench; choose another --out")
    else:
        record = {"settings": settings, "cells": {}}
    atomic_write_json(record_path, record)  # the directory is a bench from its first moment
    c, h, w = data.train_x.shape[1:]
    shape = (int(c), int(h), int(w))
    grow_spec = next((s for s in specs if s.name == "grow"), MethodSpec("grow"))
    cells = [(spec, seed) for spec in _order(specs) for seed in seeds]
    if jobs > 1 or devices:
        run_parallel(cells, grow_spec, base, data, shape, record, out, target_macs, log, jobs, devices)
    else:
        for spec, seed in cells:
            try:
                entry = _run_cell(spec, seed, grow_spec, base, data, shape, record, out, target_macs,
                                  display_factory, log)
            except Exception as err:  # a failing cell (bad settings, out of memory) does not stop the bench
                entry = _failed(spec, seed, one_line(err), log)
            _record(record, out, f"{spec}/seed{seed}", entry)
    atomic_write_json(record_path, record)
    write_report(out)
    return record


def _failed(spec: MethodSpec, seed: int, message: str, log: Callable[[str], None]) -> dict:
    log(f"[bench] {spec}/seed{seed}: failed: {message}")
    return {"method": str(spec), "seed": seed, "failed": message}


def _record(record: dict, out: Path, key: str, entry: dict, order: list[str] | None = None) -> None:
    """Enter a cell's entry (in ``order``, the serial bench's, if given) and write bench.json; the table and
    plots too when the cell finished."""
    record["cells"][key] = entry
    if order is not None:
        record["cells"] = {k: record["cells"][k] for k in order if k in record["cells"]}
    atomic_write_json(out / "bench.json", record)
    if "failed" not in entry:
        write_report(out)


def _plan(spec: MethodSpec, seed: int, grow_spec: MethodSpec, base: TrainConfig, data: Any,
          shape: tuple[int, int, int], record: dict, out: Path, target_macs: float | None) -> tuple[Any, Any, str]:
    """A cell's config, controller and :func:`run_identity`; its size target and (``scratch``) genotype come
    from the ``grow`` cell of its seed where the bench has one."""
    target = _size_target(spec, seed, grow_spec, record, target_macs, shape, data.num_classes)
    extra: dict[str, Any] = {"input_shape": shape, "num_classes": data.num_classes, "train_size": len(data.train_y)}
    if spec.name in GROWTH_TARGETED and record["settings"].get("target_growth"):
        extra["grow"] = {"target_macs": target}  # --target-growth sizes growth too (--target-macs does not)
    grown_genotype = cell_dir(out, grow_spec, seed) / "genotype.json"
    if spec.name == "scratch" and grown_genotype.exists():
        extra["grown_genotype"] = json.loads(grown_genotype.read_text())
    options = MethodOptions(target_macs=target, extra=extra)
    config, controller = configure(spec, dataclasses.replace(base, seed_value=seed), options)
    return config, controller, run_identity(config, controller, shape, data.num_classes)


def _size_target(spec: MethodSpec, seed: int, grow_spec: MethodSpec, record: dict, target_macs: float | None,
                 shape: tuple[int, int, int], num_classes: int) -> float | None:
    growth = record["settings"].get("target_growth")
    if growth and (spec.name in GROWTH_TARGETED or (spec.name == "uniform" and spec.arg)):
        from growth.compute import measure_cost
        from search_spaces import get_genotype

        genotype = get_genotype(spec.arg or GROW_SEED, in_chans=shape[0], num_classes=num_classes)
        return growth * measure_cost(genotype, shape).macs
    grown = record["cells"].get(f"{grow_spec}/seed{seed}", {})
    return target_macs or (grown.get("macs") if spec.name in SIZE_TARGETED else None)


def _twin(record: dict, key: str, identity: str) -> str | None:
    """The cell of the record that is the same run as ``key`` (the first such), if any."""
    return next((k for k, c in record["cells"].items() if k != key and c.get("identity") == identity
                 and not c.get("same_as")), None)


def _twin_entry(record: dict, spec: MethodSpec, seed: int, twin: str, log: Callable[[str], None]) -> dict:
    log(f"[bench] {spec}/seed{seed}: the same run as {twin}, not run again")
    return {**record["cells"][twin], "method": str(spec), "seed": seed, "same_as": twin}


def _needs_grown(spec: MethodSpec, target_macs: float | None, target_growth: float | None = None) -> bool:
    """Whether a cell takes its size target or genotype from the grow cell of its seed."""
    if spec.name == "scratch":
        return True
    sized_alone = target_macs or (target_growth and spec.name == "uniform" and spec.arg)  # see _size_target
    return spec.name in SIZE_TARGETED and not sized_alone


def _run_cell(spec: MethodSpec, seed: int, grow_spec: MethodSpec, base: TrainConfig, data: Any,
              shape: tuple[int, int, int], record: dict, out: Path, target_macs: float | None,
              display_factory: Callable[[], Any] | None, log: Callable[[str], None]) -> dict:
    """Run (or resume, or recognise as finished or as another cell's twin) one cell; its bench entry."""
    from growth.run import Run

    key = f"{spec}/seed{seed}"
    directory = cell_dir(out, spec, seed)
    config, controller, identity = _plan(spec, seed, grow_spec, base, data, shape, record, out, target_macs)
    target = _size_target(spec, seed, grow_spec, record, target_macs, shape, data.num_classes)
    if (directory / "summary.json").exists():
        return _cell_entry(spec, seed, out, directory, identity)
    twin = _twin(record, key, identity)
    if twin is not None:
        return _twin_entry(record, spec, seed, twin, log)
    resume = directory if (directory / CHECKPOINT).exists() else None
    if resume is None and directory.is_dir() and {p.name for p in directory.iterdir()} <= RUN_START_FILES:
        shutil.rmtree(directory)  # a cell that stopped before its first checkpoint: nothing to resume, start anew
    log(f"[bench] {key}: {'resuming' if resume else 'starting'} (target MACs: "
        f"{f'{target / 1e6:.2f}M' if target else 'none'})")
    run = Run.open(config, None if resume else directory, resume, kind="bench")
    display = display_factory() if display_factory else None
    try:
        summary = run.fit(controller, display)
    finally:
        if display is not None:
            display.close()
    log(f"[bench] {key}: test_acc {summary['test_acc']:.4f}  MACs {summary['macs'] / 1e6:.2f}M  "
        f"train FLOPs {summary['train_flops']:.3g}")
    if spec.name in GROWING_METHODS:
        draw_growth(directory, key, log)
    return _cell_entry(spec, seed, out, directory, identity)


def draw_growth(directory: Path, key: str, log: Callable[[str], None]) -> None:
    """A finished growth cell's timeline, ``growth.png`` (growth.report); a failure to draw is logged, never the
    cell's (its results are already written)."""
    try:
        from growth.report import growth_report

        growth_report(directory)
    except Exception as err:
        log(f"[bench] {key}: growth.png not drawn ({one_line(err)}); the cell's results are kept")


def cpu_slots(jobs: int) -> list[dict[str, int]]:
    """One slot per job: a CPU core each (round robin over the cores this process may use)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [None]
    return [{"core": cores[i % len(cores)]} if cores[0] is not None else {} for i in range(jobs)]


def run_parallel(cells: list[tuple[MethodSpec, int]], grow_spec: MethodSpec, base: TrainConfig, data: Any,
                 shape: tuple[int, int, int], record: dict, out: Path, target_macs: float | None,
                 log: Callable[[str], None], jobs: int, devices: list[int] | None = None) -> None:
    """Run ``cells`` ``jobs`` at a time, each in a fresh process (:func:`_cell_process`), into ``record``.

    The cells are taken in the serial order. A cell that needs the grow cell of its seed waits for it, and
    so do the cells after it (they may be its twins); a cell whose twin is still running waits for that
    twin's entry. So every entry, and the record's order, is what a serial bench writes.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state shared with this one
    slots = [{"cuda": d} for d in devices] if devices else cpu_slots(jobs)
    free = list(range(len(slots)))[::-1]
    order = list(record["cells"]) + [k for k in (f"{spec}/seed{seed}" for spec, seed in cells)
                                     if k not in record["cells"]]
    keys = {f"{spec}/seed{seed}" for spec, seed in cells}
    pending = deque(cells)
    running: dict[Any, tuple[MethodSpec, int, Any, int, str]] = {}  # connection -> (spec, seed, process, ...)
    parked: list[tuple[MethodSpec, int]] = []  # cells whose twin is running
    done: set[str] = set()
    interrupted: list[str] = []
    while pending or running:
        while pending and free:
            spec, seed = pending[0]
            key = f"{spec}/seed{seed}"
            grow_key = f"{grow_spec}/seed{seed}"
            if (_needs_grown(spec, target_macs, record["settings"].get("target_growth")) and grow_key in keys
                    and grow_key not in done):
                break  # its size target or genotype is not there yet
            pending.popleft()
            try:
                _, _, identity = _plan(spec, seed, grow_spec, base, data, shape, record, out, target_macs)
            except Exception as err:
                _record(record, out, key, _failed(spec, seed, one_line(err), log), order)
                done.add(key)
                continue
            directory = cell_dir(out, spec, seed)
            twin = _twin(record, key, identity)
            if (directory / "summary.json").exists():
                _record(record, out, key, _cell_entry(spec, seed, out, directory, identity), order)
                done.add(key)
                continue
            if twin is not None:
                _record(record, out, key, _twin_entry(record, spec, seed, twin, log), order)
                done.add(key)
                continue
            if any(other == identity for *_, other in running.values()):
                parked.append((spec, seed))
                continue
            slot = free.pop()
            pipe, sender = context.Pipe(duplex=False)
            process = context.Process(target=_cell_process, name=f"bench {key}", daemon=True,
                                      args=(slots[slot], sender, spec, seed, grow_spec, base, shape, record, out,
                                            target_macs))
            process.start()
            sender.close()
            running[pipe] = (spec, seed, process, slot, identity)
        if not running:
            break
        for ready in wait(list(running)):
            receiver: Any = ready
            spec, seed, process, slot, _ = running.pop(receiver)
            try:
                status, value = receiver.recv()
            except EOFError:  # killed (out of memory, a signal) before it could answer
                status, value = "failed", None
            receiver.close()
            process.join()
            free.append(slot)
            key = f"{spec}/seed{seed}"
            done.add(key)
            if status == "interrupted":  # not a result: left out of the record, the next bench resumes it
                log(f"[bench] {key}: {value}")
                interrupted.append(key)
                continue
            if status == "failed":
                value = _failed(spec, seed, value or f"its process died (exit code {process.exitcode})", log)
            _record(record, out, key, value, order)
        # Parked cells are decided again (twin entry, or their own run if the twin failed), in the serial order.
        pending.extendleft(reversed(parked))
        parked.clear()
    if interrupted:
        from growth.trainer import RunInterrupted

        raise RunInterrupted(f"{len(interrupted)} cell(s) stopped by a signal after checkpointing "
                             f"({', '.join(interrupted)}): run the same grow bench command to continue")


def _cell_process(slot: dict[str, int], sender: Any, spec: MethodSpec, seed: int, grow_spec: MethodSpec,
                  base: TrainConfig, shape: tuple[int, int, int], record: dict, out: Path,
                  target_macs: float | None) -> None:
    """One cell in a process of its own: one thread, on its own core or CUDA device; sends back
    ``("ok", entry)``, ``("failed", one-line error)`` or, stopped by a signal after checkpointing,
    ``("interrupted", where it stopped)``."""
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if "cuda" in slot:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot["cuda"])  # the cell's "auto"/"cuda" is that device
    if "core" in slot:
        os.sched_setaffinity(0, {slot["core"]})
    import torch

    from growth.data import load_dataset

    torch.set_num_threads(1)
    try:
        data = load_dataset(base.data, val_size=base.val_size, subset=base.subset)
        entry = _run_cell(spec, seed, grow_spec, base, data, shape, record, out, target_macs, None,
                          lambda line: print(line, flush=True))
        sender.send(("ok", entry))
    except Exception as err:  # recorded as a failed cell, as in a serial bench
        sender.send(("failed", one_line(err)))
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the run checkpointed; the bench continues it
        sender.send(("interrupted", str(err) or "interrupted"))
    finally:
        sender.close()


def one_line(err: BaseException) -> str:
    """An error as one line: the message's first line, with the type where it is not one of ours."""
    if not str(err).strip():
        return type(err).__name__
    return first_line(err) if isinstance(err, GrowthError) else f"{type(err).__name__}: {first_line(err)}"


def finished(cells: Any) -> list[dict]:
    """The cells that ran to the end (not those recorded as failed)."""
    return [c for c in cells if "failed" not in c]


def _cell_entry(spec: MethodSpec | str, seed: int, root: Path, directory: Path, identity: str | None) -> dict:
    summary = RunStore(directory).read_json("summary.json")
    return {"method": str(spec), "seed": seed, "dir": str(directory.relative_to(root)), "identity": identity, **{
        k: summary.get(k) for k in ("test_acc", "val_acc", "params", "macs", "train_flops",
                                    "budget_flops", "train_time_s", "widths", "epochs", "start")}}


# -- report -------------------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _depth(widths: Any) -> str:
    if isinstance(widths, list) and widths and isinstance(widths[0], list):
        # ResNet compact form [stage width, inner...]: blocks = len - 1; VGG: convs per stage
        is_resnet = len(widths[0]) >= 2 and all(len(w) >= 2 for w in widths)
        return "/".join(str(len(w) - 1 if is_resnet else len(w)) for w in widths)
    return "-"


def is_frontier(method: str) -> bool:
    return method.startswith("width:")


def frontier_points(cells: list[dict]) -> list[tuple[float, float]]:
    """(MACs, mean test accuracy) of the frontier cells among ``cells``, by MACs."""
    by_method: dict[str, list[dict]] = {}
    for c in cells:
        if is_frontier(c["method"]):
            by_method.setdefault(c["method"], []).append(c)
    return sorted((_mean_std([c["macs"] for c in cs])[0], _mean_std([c["test_acc"] for c in cs])[0])
                  for cs in by_method.values())


def interpolate(points: list[tuple[float, float]], macs: float) -> float | None:
    """The frontier's accuracy at ``macs``, linear in log MACs; None outside the measured range.

    >>> interpolate([(1e6, 0.6), (4e6, 0.7)], 2e6)
    0.65
    """
    if not points or not points[0][0] * (1 - 1e-3) <= macs <= points[-1][0] * (1 + 1e-3):
        return None
    if len(points) == 1 or macs <= points[0][0]:
        return points[0][1]
    for (m0, a0), (m1, a1) in zip(points, points[1:]):
        if macs <= m1:
            t = (math.log(macs) - math.log(m0)) / (math.log(m1) - math.log(m0))
            return round(a0 + t * (a1 - a0), 12)
    return points[-1][1]


def frontier_gaps(record: dict, cells: list[dict]) -> list[float]:
    """Per cell: test accuracy minus the frontier of the same seed value (or of all seeds) at its MACs."""
    everything = finished(record["cells"].values())
    gaps = []
    for c in cells:
        same_seed = frontier_points([o for o in everything if o["seed"] == c["seed"]])
        frontier = interpolate(same_seed, c["macs"])
        if frontier is None:
            frontier = interpolate(frontier_points(everything), c["macs"])
        if frontier is not None:
            gaps.append(c["test_acc"] - frontier)
    return gaps


def grow_margins(grow_cells: list[dict], cells: list[dict]) -> list[float]:
    """Per seed value both have: ``grow``'s test accuracy minus the cell's (positive: growth wins).

    >>> grow_margins([{"seed": 0, "test_acc": 0.7}, {"seed": 1, "test_acc": 0.6}], [{"seed": 1, "test_acc": 0.5}])
    [0.1]
    """
    grow_acc = {c["seed"]: c["test_acc"] for c in grow_cells}
    return [round(grow_acc[c["seed"]] - c["test_acc"], 12) for c in cells if c["seed"] in grow_acc]


def _grow_method_of(method: str, rows: dict[str, list[dict]]) -> str:
    """The growth row a row is compared with: ``grow:<seed>`` for the rows of that seed where the bench has
    one (``grow-uniform:resnet20-flat`` against ``grow:resnet20-flat``), else ``grow``.

    >>> _grow_method_of("grow-uniform:resnet20-flat", {"grow:resnet20-flat": []}), _grow_method_of("sss", {})
    ('grow:resnet20-flat', 'grow')
    """
    arg = method.partition(":")[2]
    return f"grow:{arg}" if arg and f"grow:{arg}" in rows else "grow"


def summarise(record: dict) -> list[dict]:
    """One row per method: means (± std over seeds) of the cells' summaries, the frontier gap, and the
    margin of ``grow`` over the method (paired by seed value)."""
    rows: dict[str, list[dict]] = {}
    for cell in finished(record["cells"].values()):
        rows.setdefault(cell["method"], []).append(cell)
    table = []
    for method in record["settings"]["methods"]:
        grow_cells = rows.get(_grow_method_of(method, rows), [])
        cells = sorted(rows.get(method, []), key=lambda c: c["seed"])
        if not cells:
            continue
        acc_mean, acc_std = _mean_std([c["test_acc"] for c in cells])
        gaps = frontier_gaps(record, cells)
        gap, gap_std = _mean_std(gaps) if gaps else (None, None)
        twins = sorted({c["same_as"].rpartition("/")[0] for c in cells if c.get("same_as")})
        margins = grow_margins(grow_cells, cells) if _grow_method_of(method, rows) != method else []
        margin, margin_std = _mean_std(margins) if margins else (None, None)
        table.append({
            "method": method, "seeds": len(cells), "same_as": twins, "widths": cells[0]["widths"],
            "start": cells[0].get("start"),
            "depth": _depth(cells[0]["widths"]),
            "params": _mean_std([c["params"] for c in cells])[0],
            "macs": _mean_std([c["macs"] for c in cells])[0],
            "test_acc": acc_mean, "test_acc_std": acc_std, "frontier_gap": gap, "frontier_gap_std": gap_std,
            "grow_margin": margin, "grow_margin_std": margin_std,
            "train_flops": _mean_std([c["train_flops"] for c in cells])[0],
            "train_time_s": _mean_std([c["train_time_s"] for c in cells])[0],
        })
    return table


def pareto(rows: list[dict], cost: str) -> list[str]:
    """Methods on the front: no other method is at least as accurate for at most the cost."""
    front = []
    for r in rows:
        dominated = any(o is not r and o[cost] <= r[cost] and o["test_acc"] >= r["test_acc"]
                        and (o[cost] < r[cost] or o["test_acc"] > r["test_acc"]) for o in rows)
        if not dominated:
            front.append(r["method"])
    return front


def markdown(record: dict) -> str:
    rows = summarise(record)
    front = set(pareto(rows, "macs"))
    s = record["settings"]
    lines = [f"# Benchmark at {s['budget_flops']:.3g} training FLOPs on {s['data']}"
             + (f" (subset {s['subset']})" if s.get("subset") else ""),
             "", f"Seeds: {', '.join(map(str, s['seeds']))}. Test accuracy is mean ± std over seeds; "
             "MACs are inference MACs per image (FLOPs = 2 x MACs); * marks the accuracy-vs-MACs Pareto front. "
             "Frontier gap: test accuracy minus the fixed-width frontier (width:* rows, SGD, same budget) "
             "at the row's MACs, in points, mean ± std over seeds; '-' outside the frontier's MACs range. "
             "grow − row: grow's test accuracy (grow:<seed>'s, for the rows of that seed) minus the row's, "
             "paired by seed value, in points, mean ± std (positive: growth wins).",
             "", "| method | final widths | depth | params | MACs | test acc | frontier gap | grow − row "
             "| training FLOPs | wall time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        start = f" (pruned from {r['start']})" if r.get("start") else ""
        name = r["method"] + start + same_as_note(r) + (" *" if r["method"] in front else "")
        lines.append(f"| {name} | {r['widths']} | {r['depth']} | {r['params'] / 1e6:.3f}M | "
                     f"{r['macs'] / 1e6:.2f}M | {100 * r['test_acc']:.2f} ± {100 * r['test_acc_std']:.2f}% | "
                     f"{format_points(r, 'frontier_gap')} | {format_points(r, 'grow_margin')} | "
                     f"{r['train_flops']:.3g} | {r['train_time_s']:.0f} s |")
    failures = failed_cells(record)
    if failures:
        lines += ["", "Failed cells (run the bench again to retry them):", ""]
        lines += [f"- {key}: {message}" for key, message in failures]
    return "\n".join(lines) + "\n"


def failed_cells(record: dict) -> list[tuple[str, str]]:
    """(cell, one-line error) of every cell recorded as failed."""
    return [(key, c["failed"]) for key, c in record["cells"].items() if "failed" in c]


def same_as_note(row: dict) -> str:
    return f" (same run as {', '.join(row['same_as'])})" if row["same_as"] else ""


def format_points(row: dict, key: str) -> str:
    """``row[key]`` ± its std in points (signed), or '-' where it is undefined."""
    if row[key] is None:
        return "-"
    return f"{100 * row[key]:+.2f} ± {100 * row[key + '_std']:.2f}"


# Every method gets a colour and a marker of its own (method_styles), in the bench's method order.
# (grey comes last: it is the fixed-width frontier's line)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
          "#000000", "#800000", "#000075", "#469990", "#f032e6", "#b8860b", "#4b0082", "#7f7f7f", "#ffb000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "8", "d", "H", "1", "2", "3")
FIGURES = ("acc_vs_macs.png", "acc_vs_train_flops.png", "learning_curves.png", "acc_by_method.png")
SAME_BUDGET = 0.05   # cells whose training FLOPs differ by less than this share spent the same budget (a bench
#                      gives every cell one budget; each stops within a step of it)
SAME_SIZE = 0.05     # methods whose MACs differ by less than this share were sized to the same target


def method_styles(methods: list[str]) -> dict[str, tuple[Any, str]]:
    """(colour, marker) of every method: no two methods share either (beyond the fixed lists, colours come
    from a continuous map and markers are numbers).

    >>> styles = method_styles(["grow", "grow-uniform", "sss"])
    >>> styles["grow"], styles["grow-uniform"]
    (('#1f77b4', 'o'), ('#ff7f0e', 's'))
    """
    n = len(methods)
    colors: list[Any] = list(COLORS[:n])
    if n > len(COLORS):
        from matplotlib import colormaps

        turbo = colormaps["turbo"]
        extra = n - len(COLORS)
        colors += [tuple(turbo(0.05 + 0.9 * i / max(extra - 1, 1))) for i in range(extra)]
    markers = [MARKERS[i] if i < len(MARKERS) else f"${i + 1}$" for i in range(n)]
    return {m: (colors[i], markers[i]) for i, m in enumerate(methods)}


def same_budget(record: dict) -> bool:
    """Whether every finished cell spent the same training FLOPs (then accuracy against training FLOPs says
    nothing: the learning curves are drawn instead)."""
    spent = [c["train_flops"] for c in finished(record["cells"].values()) if c.get("train_flops")]
    return bool(spent) and max(spent) - min(spent) <= SAME_BUDGET * max(spent)


def plot_points(rows: list[dict]) -> list[tuple[dict, list[str]]]:
    """The rows to draw, each with the methods that are the same run as it (drawn once, named in its label).

    >>> rows = [{"method": "grow", "same_as": []}, {"method": "dessilbi", "same_as": ["grow"]}]
    >>> [(r["method"], twins) for r, twins in plot_points(rows)]
    [('grow', ['dessilbi'])]
    """
    by_method = {r["method"]: r for r in rows}
    twins: dict[str, list[str]] = {r["method"]: [] for r in rows}
    merged = set()
    for r in rows:
        if len(r["same_as"]) == 1 and r["same_as"][0] in by_method and not by_method[r["same_as"][0]]["same_as"]:
            twins[r["same_as"][0]].append(r["method"])
            merged.add(r["method"])
    return [(r, twins[r["method"]]) for r in rows if r["method"] not in merged]


def shares_size_target(points: list[tuple[dict, list[str]]]) -> bool:
    """Whether two of the drawn rows have (nearly) the same MACs: methods sized to one target, which the
    accuracy-vs-MACs plot can only draw side by side (then the per-method dot plot is drawn too)."""
    macs = sorted(r["macs"] for r, _ in points)
    return any(b - a <= SAME_SIZE * b for a, b in zip(macs, macs[1:]))


def bench_figures(record: dict) -> list[str]:
    """The figures :func:`plot` draws for ``record`` (see the module's docstring)."""
    rows = summarise(record)
    if not rows:
        return []
    names = ["acc_vs_macs.png", "learning_curves.png" if same_budget(record) else "acc_vs_train_flops.png"]
    if shares_size_target(plot_points(rows)):
        names.append("acc_by_method.png")
    return names


def _label(row: dict, twins: list[str], wrap: bool = True) -> str:
    return row["method"] + (f"{chr(10) if wrap else ' '}(same run: {', '.join(twins)})" if twins else "")


def plot(record: dict, out: Path) -> list[Path]:
    """Draw :func:`bench_figures` into ``out`` (atomically) and remove the other figures of :data:`FIGURES`,
    left by an earlier report of the same bench; the paths written."""
    from growth.runstore import atomic_write_bytes

    names = bench_figures(record)
    rows = summarise(record)
    methods = list(dict.fromkeys(list(record["settings"]["methods"]) + [r["method"] for r in rows]))
    styles = method_styles(sorted(methods, key=lambda m: m.partition(":")[0] != "grow"))  # grow's colour: the first
    drawers = {"acc_vs_macs.png": lambda: _acc_vs_cost(record, rows, styles, "macs"),
               "acc_vs_train_flops.png": lambda: _acc_vs_cost(record, rows, styles, "train_flops"),
               "learning_curves.png": lambda: _learning_curves(record, rows, styles, out),
               "acc_by_method.png": lambda: _acc_by_method(record, rows, styles)}
    paths = []
    for name in names:
        atomic_write_bytes(out / name, _png(drawers[name]()))
        paths.append(out / name)
    for name in FIGURES:
        if name not in names:
            (out / name).unlink(missing_ok=True)
    return paths


def _size(marker: str) -> float:
    """Marker size: the thin shapes (star, plus, cross, triangles of lines) a little larger, to weigh the same."""
    return 11.0 if marker in ("*", "P", "X", "1", "2", "3") else 8.0


def _png(fig: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15)  # the legend outside the axes too
    return buffer.getvalue()


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    return fig, fig.subplots()


def _title(record: dict) -> str:
    s = record["settings"]
    seeds = ", ".join(map(str, s["seeds"]))
    return (f"{s['budget_flops']:.3g} training FLOPs on {Path(str(s['data'])).name} "
            f"(seed value{'s' if len(s['seeds']) > 1 else ''} {seeds})")


def _legend_outside(ax: Any) -> None:
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, labelspacing=0.9)


def _acc_vs_cost(record: dict, rows: list[dict], styles: dict[str, tuple[Any, str]], cost: str) -> Any:
    """Test accuracy (mean ± std over seeds) against inference MACs or training FLOPs; the Pareto front ringed
    and joined, the fixed-width frontier as a grey line. Points at (nearly) the same cost are drawn side by side
    so that none hides another; on a range under 2x the axis is linear, with few plain tick labels."""
    points = plot_points(rows)
    fig, ax = _figure(10.5, 5.0)
    xs = _spread_axis(ax, [r[cost] for r, _ in points])
    front = set(pareto([r for r, _ in points], cost))
    spread = any(abs(x - r[cost]) > 1e-9 * r[cost] for x, (r, _) in zip(xs, points))
    for x, (r, twins) in zip(xs, points):
        color, marker = styles[r["method"]]
        ax.errorbar([x], [100 * r["test_acc"]], yerr=[100 * r["test_acc_std"]], ls="none", marker=marker, color=color,
                    ms=_size(marker), capsize=3, mec="white" if marker not in "1234" else color, mew=0.6, zorder=3,
                    label=_label(r, twins))
    ringed = [(x, 100 * r["test_acc"]) for x, (r, _) in zip(xs, points) if r["method"] in front]
    if ringed:
        ax.scatter([p[0] for p in ringed], [p[1] for p in ringed], s=260, facecolors="none", edgecolors="k",
                   lw=1.1, zorder=2, label="Pareto front (ringed)")
    path = sorted((r[cost], x, 100 * r["test_acc"]) for x, (r, _) in zip(xs, points) if r["method"] in front)
    if len(path) > 1:
        ax.step([p[1] for p in path], [p[2] for p in path], where="post", color="k", lw=0.8, ls="--", zorder=1)
    curve = sorted((r[cost], x, 100 * r["test_acc"]) for x, (r, _) in zip(xs, points) if is_frontier(r["method"]))
    if len(curve) > 1:
        ax.plot([p[1] for p in curve], [p[2] for p in curve], color="0.6", lw=1.5, zorder=1,
                label="fixed-width frontier (SGD)")
    what = "inference MACs per image" if cost == "macs" else "training FLOPs"
    ax.set_xlabel(what + (" (points at nearly equal values drawn side by side)" if spread else ""))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(_title(record), fontsize=10)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return fig


def _spread_axis(ax: Any, values: list[float]) -> list[float]:
    """Set up ``ax``'s x axis for ``values`` (linear under a 2x range, else log; a few plain tick labels) and
    return the positions to draw them at: values closer than 2.5% of the axis are spread side by side."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    lo, hi = min(values), max(values)
    log = hi >= 2 * lo > 0
    to_u = (lambda v: math.log10(v)) if log else (lambda v: v)
    from_u = (lambda u: 10 ** u) if log else (lambda u: u)
    u_lo, u_hi = to_u(lo), to_u(hi)
    span = (u_hi - u_lo) or (0.02 * abs(u_lo) if not log else 0.01) or 1.0
    pad = 0.12 * span
    axis_width = span + 2 * pad
    step = 0.025 * axis_width
    order = sorted(range(len(values)), key=lambda i: (to_u(values[i]), i))
    clusters: list[list[int]] = []
    for i in order:
        if clusters and to_u(values[i]) - to_u(values[clusters[-1][0]]) < 0.5 * step:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    u = {i: to_u(values[i]) for i in range(len(values))}
    for cluster in clusters:
        centre = sum(u[i] for i in cluster) / len(cluster)
        for j, i in enumerate(cluster):  # in the order of their values, then the methods' order
            u[i] = centre + (j - (len(cluster) - 1) / 2) * step
    half = max(pad, *(abs(u[i] - to_u(values[i])) + 0.5 * step for i in u)) if u else pad
    low, high = from_u(u_lo - half), from_u(u_hi + half)
    if log:
        ax.set_xscale("log")
        if hi < 10 * lo:
            nice = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
            ax.xaxis.set_major_locator(FixedLocator([t for t in nice if low <= t <= high]))
        else:
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
    else:
        ticks = [t for t in MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high) if low <= t <= high]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        unit, suffix = next(((s, x) for s, x in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")) if hi >= s),
                            (1.0, ""))
        tick_step = (ticks[1] - ticks[0]) / unit if len(ticks) > 1 else 1.0
        decimals = max(0, -math.floor(math.log10(tick_step) + 1e-9)) if tick_step > 0 else 0
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / unit:.{decimals}f}{suffix}"))
    ax.set_xlim(low, high)
    return [from_u(u[i]) for i in range(len(values))]


def learning_curve(directory: Path) -> list[tuple[float, float]]:
    """(training FLOPs, validation accuracy) at each evaluation of a cell's run (its ``metrics.jsonl``)."""
    return [(float(m["train_flops"]), float(m["val_acc"])) for m in RunStore(directory).read_jsonl("metrics.jsonl")
            if isinstance(m.get("val_acc"), (int, float)) and isinstance(m.get("train_flops"), (int, float))]


def mean_curve(curves: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The mean of several learning curves: point by point where they have the same evaluations, else on the
    shortest's training FLOPs (the others interpolated linearly).

    >>> mean_curve([[(1.0, 0.2), (2.0, 0.4)], [(1.0, 0.4), (2.0, 0.6)]])
    [(1.0, 0.3), (2.0, 0.5)]
    """
    curves = [c for c in curves if c]
    if not curves:
        return []
    if len({len(c) for c in curves}) == 1:
        return [(round(sum(c[i][0] for c in curves) / len(curves), 6), round(sum(c[i][1] for c in curves) /
                 len(curves), 12)) for i in range(len(curves[0]))]
    grid = [x for x, _ in min(curves, key=len)]

    def at(curve: list[tuple[float, float]], x: float) -> float:
        if x <= curve[0][0]:
            return curve[0][1]
        for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
            if x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
        return curve[-1][1]

    return [(x, sum(at(c, x) for c in curves) / len(curves)) for x in grid]


def _learning_curves(record: dict, rows: list[dict], styles: dict[str, tuple[Any, str]], out: Path) -> Any:
    """Validation accuracy against training FLOPs, one line per method (mean over its seed values): where every
    cell spent the same budget, how each got to its accuracy is what differs."""
    fig, ax = _figure(10.5, 5.0)
    cells = finished(record["cells"].values())
    curves: list[tuple[dict, list[str], list[tuple[float, float]], list[str]]] = []
    for r, twins in plot_points(rows):
        dirs = sorted({c["dir"] for c in cells if c["method"] == r["method"] and c.get("dir")})
        curve = mean_curve([learning_curve(out / d) for d in dirs if (out / d).is_dir()])
        same = next((c for c in curves if c[2] == curve), None)
        if same is not None:  # a different method that trained the very same curve (a growth rule that did not grow)
            same[3].append(r["method"])
        elif curve:
            curves.append((r, twins, curve, []))
    for r, twins, curve, identical in curves:
        color, marker = styles[r["method"]]
        note = f"\n(the same curve: {', '.join(identical)})" if identical else ""
        ax.plot([x for x, _ in curve], [100 * y for _, y in curve], marker=marker, color=color,
                ms=0.75 * _size(marker), lw=1.3, mec="white" if marker not in "1234" else color, mew=0.5,
                label=f"{_label(r, twins)}: test {100 * r['test_acc']:.2f}%{note}")
    from matplotlib.ticker import FuncFormatter

    ax.set_xlim(0, record["settings"]["budget_flops"])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
    ax.set_xlabel("training FLOPs (every cell spent the same budget)")
    ax.set_ylabel("validation accuracy (%), mean over seeds")
    ax.set_title(_title(record), fontsize=10)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return fig


def _acc_by_method(record: dict, rows: list[dict], styles: dict[str, tuple[Any, str]]) -> Any:
    """Test accuracy, mean ± std over seeds, one row per method (best on top), its MACs in its label: methods
    sized to one target compared where the accuracy-vs-MACs plot can only put them side by side."""
    points = sorted(plot_points(rows), key=lambda p: -p[0]["test_acc"])
    fig, ax = _figure(6.0, 1.3 + 0.36 * len(points))
    for y, (r, _) in enumerate(points):
        color, marker = styles[r["method"]]
        ax.errorbar([100 * r["test_acc"]], [y], xerr=[100 * r["test_acc_std"]], ls="none", marker=marker, color=color,
                    ms=_size(marker), capsize=3, mec="white" if marker not in "1234" else color, mew=0.6)
    ax.set_yticks(range(len(points)))
    ax.set_yticklabels([f"{_label(r, twins, wrap=False)}   {r['macs'] / 1e6:.2f}M MACs" for r, twins in points],
                       fontsize=7.5)
    ax.set_ylim(len(points) - 0.5, -0.5)
    seeds = len(record["settings"]["seeds"])
    ax.set_xlabel(f"test accuracy (%), mean ± std over {seeds} seed value{'s' if seeds > 1 else ''}")
    ax.set_title(_title(record), fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return fig


def write_report(out: Path) -> dict:
    """(Re)build bench.md and the plots from bench.json and the cells' summaries."""
    from growth.runstore import atomic_write_bytes

    store = RunStore(out)
    if not (out / "bench.json").is_file():
        raise RunError(f"{out} holds no bench.json")
    record = store.read_json("bench.json")
    # Refresh from the cells' own summaries, the ground truth.
    for key, cell in list(record["cells"].items()):
        if "dir" in cell and (out / cell["dir"] / "summary.json").exists():
            fresh = _cell_entry(cell["method"], cell["seed"], out, out / cell["dir"], cell.get("identity"))
            record["cells"][key] = {**fresh, **({"same_as": cell["same_as"]} if cell.get("same_as") else {})}
    atomic_write_bytes(out / "bench.md", markdown(record).encode())
    plot(record, out)
    return record


def print_table(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = summarise(record)
    front = set(pareto(rows, "macs"))
    table = Table("method", "widths", "depth", "params", "MACs", "test acc", "frontier gap", "grow − row",
                  "train FLOPs", "wall",
                  title=f"{record['settings']['budget_flops']:.3g} training FLOPs, {record['settings']['data']}")
    for r in rows:
        name = r["method"] + same_as_note(r) + (" *" if r["method"] in front else "")
        table.add_row(name, str(r["widths"]), r["depth"],
                      f"{r['params'] / 1e6:.3f}M", f"{r['macs'] / 1e6:.2f}M",
                      f"{100 * r['test_acc']:.2f} ± {100 * r['test_acc_std']:.2f}%",
                      format_points(r, "frontier_gap"), format_points(r, "grow_margin"),
                      f"{r['train_flops']:.3g}", f"{r['train_time_s']:.0f} s")
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    for key, message in failed_cells(record):
        console.print(f"[red]failed[/red] {key}: {message}", markup=True, highlight=False)


def default_bench_dir() -> Path:
    return Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"


