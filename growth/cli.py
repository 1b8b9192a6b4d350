"""The ``grow`` command line.

    grow --seed resnet20-thin --budget 2e17 --data cifar10    grow a network (DessiLBI saturation)
    grow train --seed resnet20 --budget 1e14 --data DIR       train a fixed architecture
    grow seeds                                                list seeds with params and MACs
    grow graph --seed resnet20-thin                           print the coupled channel groups
    grow bench --budget 2e13 --methods grow,slimming,... --seeds 0,1 --data DIR
                                                              growth against baselines, equal budget
    grow report DIR                                           rebuild a bench's table and plots

Every bad input ends with one line on stderr and exit code 2. torch is imported only after the
arguments are parsed, so ``grow --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

COMMANDS = ("train", "seeds", "graph", "bench", "report")
DEFAULT_METHODS = "grow,scs,sss,slimming,dessilbi-prune,fixed:resnet20,uniform:resnet20,timm:resnet18"
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the whole usage block first
        raise UsageError(f"{message} (see {self.prog} --help)")


def _budget(text: str) -> float:
    from .compute import parse_budget

    try:
        return parse_budget(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_run_args(p: argparse.ArgumentParser, defaults) -> None:
    """Options shared by ``grow`` and ``grow train``; defaults come from the config dataclass."""
    d = defaults
    p.add_argument("--seed", default=d.seed, help=f"seed architecture (default {d.seed}; see `grow seeds`)")
    p.add_argument("--budget", type=_budget, help="training FLOPs: 2e17, 2.5e16, 500T, 1P (required unless --resume)")
    p.add_argument("--data", default=d.data,
                   help="sample (shipped, offline), cifar10, cifar100, fashion-mnist, or an ImageFolder directory")
    p.add_argument("--out", help="run directory (default runs/<date>-<time>-<seed>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where it stopped")
    p.add_argument("--subset", type=_positive_int, help="use only this many training images")
    p.add_argument("--val-size", type=_positive_int, help="validation images carved from train")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=d.nesterov)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--warmup", type=float, default=d.warmup_frac, help="share of the budget spent warming up")
    p.add_argument("--schedule", choices=("cosine", "linear", "constant"), default=d.schedule)
    p.add_argument("--seed-value", type=int, help="random seed; makes a CPU run deterministic")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=d.precision,
                   help="auto: bf16 autocast on CUDA, fp32 elsewhere")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=d.channels_last)
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _add_growth_args(p: argparse.ArgumentParser, d) -> None:
    g = p.add_argument_group("growth rule (see growth/controller.py)")
    g.add_argument("--target-macs", type=_budget, default=d.target_macs,
                   help="final inference MACs (default: the best fixed width's MACs at this budget, "
                        "from the size rule below)")
    g.add_argument("--size-ref-macs", type=float, default=d.size_ref_macs,
                   help=f"size rule: best fixed MACs at --size-ref-budget (default {d.size_ref_macs:g}, "
                        "measured on CIFAR-10)")
    g.add_argument("--size-ref-budget", type=_budget, default=d.size_ref_budget)
    g.add_argument("--size-exponent", type=float, default=d.size_exponent,
                   help=f"size rule: best MACs grow like budget**exponent (default {d.size_exponent:g})")
    g.add_argument("--min-growth", type=float, default=d.min_growth,
                   help="grow only to a target at least this multiple of the seed's MACs")
    g.add_argument("--growth-steps", type=_positive_int, default=d.growth_steps,
                   help="number of widenings (geometric in MACs)")
    g.add_argument("--grow-until", type=float, default=d.grow_until_frac,
                   help="share of the budget by which growth is done; steps are evenly spaced before it")
    g.add_argument("--allocation", choices=("gamma", "uniform", "none"), default=d.allocation,
                   help="where to widen: gamma (Γ entry rate), uniform (every group), none (no growth)")
    g.add_argument("--select-frac", type=float, default=d.select_frac,
                   help="widen the groups scoring at least this share of the best score")
    g.add_argument("--max-step-factor", type=float, default=d.max_step_factor,
                   help="a group grows at most this much per step")
    g.add_argument("--max-blocks", type=_positive_int, default=d.max_blocks, help="depth cap per stage")
    g.add_argument("--deepen", action=argparse.BooleanOptionalAction, default=d.deepen,
                   help="also add blocks to selected stages")
    g.add_argument("--nu", type=float, default=d.nu, help="DessiLBI ν (coupling W-Γ)")
    g.add_argument("--kappa", type=float, default=d.kappa, help="DessiLBI κ")
    g.add_argument("--lam", default=d.lam, help="DessiLBI λ, or auto (one per layer, calibrated to the check interval)")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from .config import GrowConfig, TrainConfig

    grow = _Parser(prog="grow", description="Grow a compact network from a thin seed under a training-FLOP "
                   "budget (DessiLBI saturation adds filters and blocks). Subcommands: "
                   + ", ".join(COMMANDS) + " (grow SUBCOMMAND --help).")
    _add_run_args(grow, GrowConfig(budget_flops=1.0))
    _add_growth_args(grow, GrowConfig(budget_flops=1.0))
    subs = {}
    train = subs["train"] = _Parser(prog="grow train", description="Train a fixed architecture with SGD "
                                    "until the training-FLOP budget is spent.")
    _add_run_args(train, TrainConfig(seed="resnet20"))
    train.add_argument("--eval-every", type=float, default=TrainConfig.eval_every_frac,
                       help="evaluate every this share of the budget")
    train.add_argument("--genotype", metavar="FILE", help="train this architecture (a genotype.json, e.g. "
                       "of a growth run) instead of the seed's")
    subs["seeds"] = _Parser(prog="grow seeds", description="List the registered seeds with params and MACs.")
    subs["seeds"].add_argument("--input-size", type=_positive_int, default=32)
    graph = subs["graph"] = _Parser(prog="grow graph", description="Print a seed's coupled channel groups.")
    graph.add_argument("--seed", required=True)
    bench = subs["bench"] = _Parser(prog="grow bench", description="Run every method x seed at one "
                                    "training-FLOP budget (resumable: finished cells are skipped).")
    bench.add_argument("--budget", type=_budget, required=True, help="training FLOPs per cell")
    bench.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    bench.add_argument("--frontier-mults", default="1,1.25,1.5,1.75,2",
                       help="width multipliers that frontier:<seed> expands to (width:<seed>@<mult> cells)")
    bench.add_argument("--seeds", default="0,1,2", help="comma-separated seed values")
    bench.add_argument("--data", default="sample")
    bench.add_argument("--subset", type=_positive_int)
    bench.add_argument("--val-size", type=_positive_int)
    bench.add_argument("--out", help="bench directory (default runs/bench-<date>-<time>); re-run to resume")
    bench.add_argument("--target-macs", type=_budget, help="size target for uniform/pruning methods "
                       "(default: the grown network's MACs)")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--quiet", action="store_true")
    report = subs["report"] = _Parser(prog="grow report", description="Rebuild bench.md and the plots "
                                      "of a bench directory from its files.")
    report.add_argument("dir")
    return grow, subs


def _train_config(args: argparse.Namespace, cls, **extra):
    overrides = {
        "seed": args.seed, "data": args.data, "budget_flops": args.budget, "subset": args.subset,
        "val_size": args.val_size, "batch_size": args.batch_size, "lr": args.lr, "momentum": args.momentum,
        "nesterov": args.nesterov, "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing, "warmup_frac": args.warmup, "schedule": args.schedule,
        "seed_value": args.seed_value, "device": args.device, "precision": args.precision,
        "channels_last": args.channels_last,
    }
    if hasattr(args, "eval_every"):
        overrides["eval_every_frac"] = args.eval_every
    return cls(**overrides, **extra)


def _check_run_args(args: argparse.Namespace) -> None:
    if args.resume is None and args.budget is None:
        raise UsageError("--budget is required (e.g. --budget 2e13), unless you --resume a run")
    if args.resume is not None and args.out is not None:
        raise UsageError("give either --out (new run) or --resume DIR (existing run), not both")


def cmd_train(args: argparse.Namespace) -> int:
    _check_run_args(args)  # before the imports below (torch): a usage error answers at once
    from .config import TrainConfig
    from .trainer import Run

    genotype = _read_genotype(args.genotype) if args.genotype else None
    run = Run.open(_train_config(args, TrainConfig, genotype=genotype), args.out, args.resume, kind="train")
    return _run(args, run.store, lambda display: run.fit(display=display))


def _read_genotype(path: str) -> dict:
    """A genotype.json as a dict, checked by building its genotype; one line on anything else."""
    import json

    from search_spaces import genotype_from_dict

    try:
        data = json.loads(open(path, encoding="utf-8").read())
        genotype_from_dict(data)
    except (OSError, ValueError) as err:
        raise UsageError(f"--genotype {path}: not a readable genotype ({str(err).splitlines()[0][:120]})") from None
    return data


def cmd_grow(args: argparse.Namespace) -> int:
    _check_run_args(args)  # usage errors first, before the imports below (torch) take their time
    try:
        lam = args.lam if args.lam == "auto" else float(args.lam)
    except ValueError:
        raise UsageError(f"--lam must be a number or auto, got {args.lam!r}") from None
    from .config import GrowConfig
    from .controller import GrowthController
    from .trainer import Run

    config = _train_config(
        args, GrowConfig, target_macs=args.target_macs, size_ref_macs=args.size_ref_macs,
        size_ref_budget=args.size_ref_budget, size_exponent=args.size_exponent, min_growth=args.min_growth,
        growth_steps=args.growth_steps, grow_until_frac=args.grow_until, allocation=args.allocation,
        select_frac=args.select_frac, max_step_factor=args.max_step_factor, max_blocks=args.max_blocks,
        deepen=args.deepen, nu=args.nu, kappa=args.kappa, lam=lam)
    run = Run.open(config, args.out, args.resume, kind="grow")
    return _run(args, run.store, lambda display: run.fit(GrowthController(run.config), display))


def _run(args: argparse.Namespace, store, fit) -> int:
    """Run ``fit(display)`` with the progress display, then print the summary."""
    from .display import make_display

    display = make_display(args.quiet)
    try:
        summary = fit(display)
    finally:
        if display is not None:
            display.close()
    _print_summary(summary, store.path)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from baselines.bench import default_bench_dir, print_table, run_bench

    from .config import TrainConfig
    from .display import make_display

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
    base = TrainConfig(data=args.data, budget_flops=args.budget, subset=args.subset,
                       val_size=args.val_size, device=args.device)
    try:
        from baselines import expand_methods, parse_method

        methods = expand_methods([m for m in args.methods.split(",") if m.strip()], mults)
        if not seeds or not methods:
            raise UsageError("--seeds and --methods must name at least one each")
        for m in methods:
            parse_method(m)
    except ValueError as err:
        raise UsageError(str(err)) from None
    record = run_bench(methods, seeds, base, Path(args.out) if args.out else default_bench_dir(),
                       target_macs=args.target_macs,
                       display_factory=None if args.quiet else (lambda: make_display(False)))
    print_table(record)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from baselines.bench import print_table, write_report

    record = write_report(Path(args.dir))
    print_table(record)
    print(f"wrote {Path(args.dir) / 'bench.md'} and the plots")
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    import search_spaces

    from .compute import measure_cost

    rows = []
    for name in search_spaces.list_seeds():
        model = search_spaces.create_model(name)
        cost = measure_cost(model, (3, args.input_size, args.input_size))
        rows.append((name, f"{cost.params / 1e6:.3f}M", f"{cost.macs / 1e6:.2f}M",
                     str(model.genotype.compact())))
    _print_table(["seed", "params", f"MACs ({args.input_size}x{args.input_size})", "widths"], rows)
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    import search_spaces

    from .graph import groups_of_genotype

    genotype = search_spaces.get_genotype(args.seed)
    rows = [(g.name, str(g.width), " ".join(g.producers), " ".join(g.consumers))
            for g in groups_of_genotype(genotype)]
    _print_table(["group", "width", "producers (out channels)", "consumers (in channels)"], rows)
    return 0


def _print_table(header: list[str], rows: list[tuple]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*header, show_lines=False)
    for row in rows:
        table.add_row(*row)
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


def _print_summary(summary: dict, path) -> None:
    keys = ["seed", "data", "test_acc", "val_acc", "params", "macs", "train_flops", "budget_flops",
            "epochs", "train_time_s", "images_per_s", "widths"]
    rows = [(k, f"{summary[k]:.4f}" if k.endswith("acc") else f"{summary[k]:.4g}"
             if isinstance(summary[k], float) else str(summary[k])) for k in keys if k in summary]
    rows.append(("run directory", str(path)))
    _print_table(["summary", ""], rows)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        grow, subs = build_parser()
        if argv and argv[0] in subs:
            name, args = argv[0], subs[argv[0]].parse_args(argv[1:])
        else:
            name, args = "grow", grow.parse_args(argv)
        handler = {"grow": cmd_grow, "train": cmd_train, "seeds": cmd_seeds, "graph": cmd_graph,
                   "bench": cmd_bench, "report": cmd_report}[name]
        return handler(args)
    except UsageError as err:
        print(f"grow: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("grow: interrupted; continue with --resume RUN_DIR", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - bad input raised deep inside becomes one line
        from search_spaces import UnknownSeedError

        from .data import DataError
        from .runstore import RunError
        from .trainer import ConfigError

        if isinstance(err, (DataError, RunError, UnknownSeedError, ConfigError)):
            print(f"grow: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
