"""``grow bench`` and ``grow report``: the baselines' subcommands of the ``grow`` command line.

``grow report DIR`` rebuilds a bench's table and plots (:func:`baselines.bench.write_report`) or, given a run
directory, draws its growth timeline (:func:`growth.report.growth_report`).

The engine does not import the baselines; these commands reach ``grow`` through the entry-point
group ``growth.commands`` declared in ``pyproject.toml`` (see :mod:`growth.cli`)::

    [project.entry-points."growth.commands"]
    bench = "baselines.commands:bench"
    report = "baselines.commands:report"

This module stays light (no torch) so that ``grow bench --help`` answers at once; the bench itself
is imported when a command runs.

Example:
    >>> from growth.cli import Parser
    >>> parser = Parser(prog="grow bench", description=bench.description)
    >>> bench.add_arguments(parser)
    >>> args = parser.parse_args(["--budget", "2e13", "--seeds", "0"])
    >>> args.budget, args.methods.split(",")[0], args.frontier_mults
    (20000000000000.0, 'grow', '1,1.25,1.5,1.75,2')
"""

from __future__ import annotations

import argparse
import sys

from growth.cli import Command, UsageError, budget_arg, macs_arg, positive_int

DEFAULT_METHODS = "grow,scs,sss,slimming,dessilbi-prune,fixed:resnet20,uniform:resnet20,timm:resnet18"

__all__ = ["DEFAULT_METHODS", "bench", "cmd_bench", "cmd_report", "report"]


def add_bench_arguments(bench: argparse.ArgumentParser) -> None:
    """The options of ``grow bench``."""
    bench.add_argument("--budget", type=budget_arg, required=True, help="training FLOPs per cell")
    bench.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    bench.add_argument("--frontier-mults", default="1,1.25,1.5,1.75,2",
                       help="width multipliers that frontier:<seed> expands to (width:<seed>@<mult> cells)")
    bench.add_argument("--seeds", default="0,1,2", help="comma-separated seed values")
    bench.add_argument("--data", default="sample")
    bench.add_argument("--subset", type=positive_int)
    bench.add_argument("--val-size", type=positive_int)
    bench.add_argument("--out", help="bench directory (default runs/bench-<date>-<time>); re-run to resume")
    bench.add_argument("--target-macs", type=macs_arg, help="size target for uniform/pruning methods "
                       "(default: the grown network's MACs)")
    bench.add_argument("--target-growth", type=_growth_factor, metavar="X", help="size target of grow, grow-uniform "
                       "and uniform:<seed> cells: X times their own seed's MACs (seeds of several sizes in one bench)")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--jobs", type=positive_int, metavar="N", help="cells run at once, each in a process of "
                       "its own: on CPU one thread on a core of its own; with --devices one per device (default 1, "
                       "or the number of --devices); the results are those of a serial bench")
    bench.add_argument("--devices", metavar="LIST", help="CUDA devices for parallel cells, one cell on each at a "
                       "time, e.g. cuda:0,cuda:1")
    bench.add_argument("--quiet", action="store_true")


def _growth_factor(text: str) -> float:
    """``--target-growth``: a finite number above 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a multiple of the seed's MACs above 0 (e.g. 2), got {text!r}")
    return value


def add_report_arguments(report: argparse.ArgumentParser) -> None:
    """The arguments of ``grow report``."""
    report.add_argument("dir", help="a bench directory (bench.json): its table and plots are rebuilt; or a run "
                        "directory (config.json, metrics.jsonl): its growth timeline is drawn into growth.png")


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from growth.config import TrainConfig
    from growth.display import make_display

    from .bench import default_bench_dir, failed_cells, print_table, run_bench

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
    try:
        mults = tuple(float(m) for m in args.frontier_mults.split(",") if m.strip())
    except ValueError:
        mults = ()
    if not mults or not all(0 < m < float("inf") for m in mults):
        raise UsageError(f"--frontier-mults takes positive comma-separated numbers, got {args.frontier_mults!r}")
    devices = _devices(args.devices, args.device)
    jobs = args.jobs or (len(devices) if devices else 1)
    if devices and jobs > len(devices):
        raise UsageError(f"--jobs {jobs} with {len(devices)} --devices: one cell per device at a time")
    base = TrainConfig(data=args.data, budget_flops=args.budget, subset=args.subset,
                       val_size=args.val_size, device=args.device)
    try:
        from .registry import expand_methods, parse_method

        methods = expand_methods([m for m in args.methods.split(",") if m.strip()], mults)
        if not seeds or not methods:
            raise UsageError("--seeds and --methods must name at least one each")
        for m in methods:
            parse_method(m)
    except ValueError as err:
        raise UsageError(str(err)) from None
    record = run_bench(methods, seeds, base, Path(args.out) if args.out else default_bench_dir(),
                       target_macs=args.target_macs, target_growth=args.target_growth, jobs=jobs, devices=devices,
                       display_factory=None if args.quiet or jobs > 1 else (lambda: make_display(False)))
    print_table(record)
    failures = failed_cells(record)
    if failures:
        print(f"grow bench: {len(failures)} cell(s) failed (listed above and in bench.md); run the same "
              "command again to retry them", file=sys.stderr)
        return 1
    return 0


def _devices(text: str | None, device: str) -> list[int] | None:
    """``--devices cuda:0,cuda:1`` as device indices (each cell sees its one device as ``cuda``)."""
    if text is None:
        return None
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names or not all(n.startswith("cuda:") and n[5:].isdigit() for n in names) or len(set(names)) < len(names):
        raise UsageError(f"--devices takes distinct CUDA devices like cuda:0,cuda:1, got {text!r}")
    if device not in ("auto", "cuda"):
        raise UsageError(f"--devices with --device {device}: leave --device as auto (or cuda)")
    return [int(n[5:]) for n in names]


def cmd_report(args: argparse.Namespace) -> int:
    """A bench's table and plots (``bench.json`` there), else a run's growth timeline (growth.report)."""
    from pathlib import Path

    path = Path(args.dir)
    if not (path / "bench.json").is_file():
        from growth.report import growth_report

        print(growth_report(path).describe())  # not a run either: one line, growth.runstore.RunError
        return 0
    from .bench import print_table, write_report

    record = write_report(path)
    print_table(record)
    print(f"wrote {path / 'bench.md'} and the plots")
    return 0


bench = Command(
    description="Run every method x seed at one training-FLOP budget (resumable: finished cells are skipped).",
    add_arguments=add_bench_arguments, run=cmd_bench)
report = Command(
    description="Rebuild bench.md and the plots of a bench directory from its files, or draw a run directory's "
                "growth timeline (widths, Γ's scores, validation accuracy against training FLOPs) into growth.png.",
    add_arguments=add_report_arguments, run=cmd_report)
