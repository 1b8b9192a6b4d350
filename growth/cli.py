"""The ``grow`` command line.

    grow --seed resnet20-thin --budget 2e17 --data cifar10    grow a network (DessiLBI saturation)
    grow train --seed resnet20 --budget 1e14 --data DIR       train a fixed architecture
    grow --resume DIR [--override lr=0.05]                    continue a run where it stopped (changing
                                                              only its lr schedule, batch size, ...)
    grow plan --seed resnet20-thin --budget 2e17 --data cifar10
                                                              what that run would do, and its ETA; writes nothing
    grow seeds                                                list seeds with params and MACs
    grow graph --seed resnet20-thin                           print the coupled channel groups
    grow search --seed resnet8-thin --budget-per-trial 3e10 --trials 20 --data sample --out runs/s
                                                              search the growth settings (Optuna)
    grow search --show --out runs/s                           its Pareto front (table, pareto.png)
    grow bench --budget 2e13 --methods grow,slimming,... --seeds 0,1 --data DIR
                                                              growth against baselines, equal budget
    grow report DIR                                           rebuild a bench's table and plots, or draw
                                                              a run's growth timeline (DIR/growth.png)
    grow --version                                            the installed version

Every bad input ends with one line on stderr and exit code 2: every error raised on purpose derives
from :class:`~search_spaces.errors.GrowthError`, the one thing :func:`main` catches. torch is imported
only after the arguments are parsed, so ``grow --help`` answers at once.

Subcommands from other packages. The engine does not know its baselines (imports point one way:
``baselines`` -> ``growth`` -> ``search_spaces``), yet ``grow bench`` and ``grow report`` live in
``baselines``. They reach the command line through the entry-point group ``growth.commands``
(:data:`ENTRY_POINT_GROUP`), the way pytest and Optuna find their plugins; ``pyproject.toml`` declares::

    [project.entry-points."growth.commands"]
    bench = "baselines.commands:bench"
    report = "baselines.commands:report"

Each entry point names a :class:`Command`: a description, a function adding its arguments to a
:class:`Parser`, and a function running it (``args -> exit code``). We chose entry points over moving
the console script out of the engine because ``grow`` stays one command, and any installed package
(a new baseline, a search) can add a subcommand without the engine importing it. Discovery is lazy:
``grow --help`` reads only the entry points' names (package metadata, no import); a command's module
is imported only when that command runs or its parser is asked for (``grow bench --help``). Built-in
commands win over an entry point of the same name. The entry points exist once the project is
installed (``pip install -e .``). Commands may raise :class:`UsageError` and use :func:`budget_arg`,
:func:`macs_arg` and :func:`positive_int` as argument types.

Example:
    >>> grow, subs = build_parser()
    >>> list(subs)[:3]
    ['train', 'plan', 'seeds']
    >>> subs["train"].parse_args(["--budget", "1e9"]).budget_flops
    1000000000.0
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from search_spaces.errors import GrowthError

from .config import Bounds, GrowConfig, TrainConfig, flag_of, option_metadata

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint
    from pathlib import Path

    from search_spaces import Genotype

    from .runstore import RunStore

ENTRY_POINT_GROUP = "growth.commands"
DISTRIBUTION = "growth-automl"  # the project's name in pyproject.toml: the installed package grow reports
BUILTIN_COMMANDS = ("train", "plan", "seeds", "graph", "search")
EXIT_USAGE = 2


class UsageError(GrowthError):
    """Bad input from the user: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`UsageError` (one line), not argparse's usage block.

    Every value that starts like a negative number is a value (``--budget -2e9``, ``--target-macs -5M``,
    ``--lr -inf``), for its option's type to say what is wrong with it; argparse takes only ``-2`` and ``-.5``
    for numbers and the rest for unknown options ("expected one argument"). No option of grow looks like one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(?:\d|\.\d|inf|nan)", re.IGNORECASE)

    def error(self, message: str) -> NoReturn:  # argparse would print the whole usage block first
        raise UsageError(f"{message} (see {self.prog} --help)")


@dataclass(frozen=True)
class Command:
    """A ``grow`` subcommand that a package registers in the ``growth.commands`` entry-point group.

    ``add_arguments(parser)`` declares its options on a :class:`Parser` (``prog`` is ``grow <name>``);
    ``run(args)`` does the work and returns the exit code.
    """

    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def budget_arg(text: str) -> float:
    """A number of FLOPs (``2e17``, ``500T``); the message says what is wrong (unreadable, negative, zero,
    infinite), argparse names the option."""
    from .compute import parse_amount

    try:
        return parse_amount(text, "FLOPs")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def macs_arg(text: str) -> float:
    """A number of MACs (``4e6``, ``2.5M``), checked as :func:`budget_arg` checks FLOPs."""
    from .compute import parse_amount

    try:
        return parse_amount(text, "MACs")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A float option: NaN and infinities are refused here, ranges by the config's ``validate``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def lam_arg(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return finite_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


_PARSERS: dict[str, Callable[[str], Any]] = {"budget": budget_arg, "macs": macs_arg, "count": positive_int,
                                             "lam": lam_arg}
_TYPES: dict[str, Callable[[str], Any]] = {"float": finite_float, "int": int, "str": str}

def _in_bounds(parse: Callable[[str], Any], bounds: Bounds) -> Callable[[str], Any]:
    """``parse`` followed by the option's bounds (numbers only; ``auto`` passes)."""
    def parse_in_bounds(text: str) -> Any:
        value = parse(text)
        if isinstance(value, (int, float)) and value not in bounds:
            raise argparse.ArgumentTypeError(f"expected a number {bounds}, got {text!r}")
        return value

    return parse_in_bounds


def option_type(f: dataclasses.Field, meta: dict) -> Callable[[str], Any]:
    """How the option of config field ``f`` parses its text (its type, or ``meta["parse"]``, and range)."""
    base_type = str(f.type).replace(" | None", "")
    if meta["choices"]:
        choices = tuple(meta["choices"])

        def choice(text: str) -> str:
            if text not in choices:
                raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
            return text
        return choice
    if base_type == "bool":
        def boolean(text: str) -> bool:
            if text.lower() in ("true", "yes", "on", "1"):
                return True
            if text.lower() in ("false", "no", "off", "0"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        return boolean
    parse = _PARSERS[meta["parse"]] if meta["parse"] else _TYPES[base_type]
    return _in_bounds(parse, meta["bounds"]) if meta.get("bounds") else parse


def config_options(cls: type) -> list[tuple[dataclasses.Field, dict]]:
    """The fields of config class ``cls`` that are command-line options, with their option metadata."""
    meta_of = option_metadata(cls)
    return [(f, meta_of[f.name]) for f in dataclasses.fields(cls) if meta_of[f.name].get("cli", False)]


def add_config_options(parser: argparse.ArgumentParser, cls: type, defaults: Any, exclude: tuple[str, ...] = ()
                       ) -> None:
    """One option per field of the config dataclass ``cls`` (growth.config.option), ``dest`` = the field.

    Defaults come from the instance ``defaults``; the budget has none (required unless --resume).
    """
    groups: dict[str, Any] = {}
    for f, meta in config_options(cls):
        if f.name in exclude:
            continue
        group = meta["group"]
        target = parser if group is None else groups.setdefault(group, parser.add_argument_group(group))
        flag = flag_of(f.name, meta)
        default = None if f.name == "budget_flops" else getattr(defaults, f.name)
        shown = "" if default is None else f" (default {default:g})" if isinstance(default, float) else \
            f" (default {default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": meta["help"] + shown,
                                  "metavar": flag[2:].upper().replace("-", "_")}
        base_type = str(f.type).replace(" | None", "")
        if base_type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["help"] = meta["help"]
            del kwargs["metavar"]
        elif meta["choices"]:
            kwargs["choices"] = meta["choices"]
            del kwargs["metavar"]
        else:
            kwargs["type"] = option_type(f, meta)
        target.add_argument(flag, **kwargs)


def _add_run_args(p: argparse.ArgumentParser, cls: type) -> None:
    """Options of ``grow`` and ``grow train`` (config class ``cls``) that are not config fields."""
    p.add_argument("--out", help="run directory (default runs/<date>-<time>-<seed>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where it stopped")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="with --resume: continue with this setting changed (repeatable), e.g. lr=0.05 after "
                   "the run diverged; recorded in the run's config.json. KEY is the option's name (batch-size) "
                   f"or the setting's (batch_size). Only {', '.join(_resume_options(cls))} can change: the rest "
                   "would change what the steps already trained mean")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--genotype", metavar="FILE", help="start from this architecture (a genotype.json, e.g. of a "
                   "growth run) instead of the seed's widths")


def package_version() -> str:
    """The installed version of the ``growth-automl`` distribution (package metadata; no import of torch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed: pip install -e .)"


def build_parser() -> tuple[argparse.ArgumentParser, Subcommands]:
    """The ``grow`` parser and the subcommands' parsers (built-in ones at once, entry points when asked)."""
    plugins = _entry_point_commands()
    grow = Parser(prog="grow", description="Grow a compact network from a thin seed under a training-FLOP "
                  "budget (DessiLBI saturation adds filters and blocks). Subcommands: "
                  + ", ".join([*BUILTIN_COMMANDS, *plugins]) + " (grow SUBCOMMAND --help).")
    grow.add_argument("--version", action="version", version=f"grow ({DISTRIBUTION}) {package_version()}",
                      help="print the version of grow and exit")
    add_config_options(grow, GrowConfig, GrowConfig(budget_flops=1.0))
    _add_run_args(grow, GrowConfig)
    subs: dict[str, argparse.ArgumentParser] = {}
    train = subs["train"] = Parser(prog="grow train", description="Train a fixed architecture with SGD "
                                   "until the training-FLOP budget is spent.")
    add_config_options(train, TrainConfig, TrainConfig(seed="resnet20"), exclude=("kappa", "nu", "lam"))
    _add_run_args(train, TrainConfig)
    plan = subs["plan"] = Parser(prog="grow plan", description="Show what `grow` with these options would do: the "
                                 "size target and how it was derived, every growth event, the final network's "
                                 "epochs, and an ETA from a few timed steps on the device. Writes nothing.")
    add_config_options(plan, GrowConfig, GrowConfig(budget_flops=1.0))
    subs["seeds"] = Parser(prog="grow seeds", description="List the registered seeds with params and MACs.")
    subs["seeds"].add_argument("--input-size", type=positive_int, default=32)
    graph = subs["graph"] = Parser(prog="grow graph", description="Print the coupled channel groups of an "
                                  "architecture, in network order: a seed's, a saved genotype's, or a run's.")
    graph.add_argument("run", nargs="?", metavar="RUN_DIR", help="a run directory: its final architecture "
                       "(genotype.json), or where an unfinished run stands (its checkpoint)")
    graph.add_argument("--seed", help="a registered seed (see `grow seeds`)")
    graph.add_argument("--genotype", metavar="FILE", help="a genotype.json (e.g. a growth run's)")
    search = subs["search"] = Parser(prog="grow search", description="Search the growth settings with a "
                                     "multi-objective Optuna study (max validation accuracy, min MACs); each trial "
                                     "is a growth run in <out>/trials/<number>. --show prints the Pareto front.")
    _add_search_args(search)
    return grow, Subcommands(subs, plugins)


def _entry_point_commands() -> dict[str, EntryPoint]:
    """The ``growth.commands`` entry points by name (not loaded), built-in names left out, first one wins."""
    from importlib.metadata import entry_points

    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN_COMMANDS and ep.name not in found:
            found[ep.name] = ep
    return found


class Subcommands(Mapping[str, argparse.ArgumentParser]):
    """Subcommand name -> parser; an entry point's module is imported when its parser is first asked for."""

    def __init__(self, builtin: dict[str, argparse.ArgumentParser], plugins: dict[str, EntryPoint]) -> None:
        self._parsers = dict(builtin)
        self._plugins = plugins
        self._commands: dict[str, Command] = {}

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        if name not in self._parsers:
            command = self.command(name)
            parser = Parser(prog=f"grow {name}", description=command.description)
            command.add_arguments(parser)
            self._parsers[name] = parser
        return self._parsers[name]

    def __contains__(self, name: object) -> bool:  # names only: imports nothing
        return name in self._parsers or name in self._plugins

    def __iter__(self) -> Iterator[str]:
        yield from self._parsers
        yield from (name for name in self._plugins if name not in self._parsers)

    def __len__(self) -> int:
        return len(set(self._parsers) | set(self._plugins))

    def command(self, name: str) -> Command:
        """The :class:`Command` an entry point names, loaded (imported) on first use."""
        if name not in self._commands:
            if name not in self._plugins:
                raise KeyError(name)
            command = self._plugins[name].load()
            if not isinstance(command, Command):
                raise TypeError(f"entry point {self._plugins[name].value!r} ({ENTRY_POINT_GROUP}) is not a "
                                f"growth.cli.Command: {command!r}")
            self._commands[name] = command
        return self._commands[name]

    def handler(self, name: str) -> Callable[[argparse.Namespace], int]:
        """What runs subcommand ``name``."""
        builtin = {"train": cmd_train, "plan": cmd_plan, "seeds": cmd_seeds, "graph": cmd_graph,
                   "search": cmd_search}
        return builtin[name] if name in builtin else self.command(name).run


def _config(args: argparse.Namespace, cls: type, **extra: Any) -> Any:
    """The config ``cls`` from the parsed options (one per field, see :func:`add_config_options`)."""
    return cls(**{f.name: getattr(args, f.name) for f, _ in config_options(cls) if hasattr(args, f.name)},
               **extra)


def _check_run_args(args: argparse.Namespace) -> None:
    if args.resume is None and args.budget_flops is None:
        raise UsageError("--budget is required (e.g. --budget 2e13), unless you --resume a run")
    if args.resume is not None and args.out is not None:
        raise UsageError("give either --out (new run) or --resume DIR (existing run), not both")
    if args.override and args.resume is None:
        raise UsageError("--override changes the settings of a run you --resume; a new run takes the options "
                         "themselves (e.g. --lr 0.05)")


def _resume_options(cls: type) -> list[str]:
    """The settings of config class ``cls`` that ``--override`` may change, as their options are spelled."""
    from .runstore import RESUME_SETTINGS

    return [flag_of(f.name, meta)[2:] for f, meta in config_options(cls) if f.name in RESUME_SETTINGS]


def _overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """``--override KEY=VALUE`` as {config field: value}: KEY an option's name (``batch-size``) or its field's
    (``batch_size``), VALUE parsed as that option is; only settings a resumed run may change
    (growth.runstore.RESUME_SETTINGS). Errors name the settings that can change as options are spelled."""
    from .runstore import RESUME_SETTINGS

    def spelled(name: str) -> str:
        return name.strip().lstrip("-").replace("-", "_")

    names: dict[str, tuple[dataclasses.Field, dict]] = {}
    for f, meta in config_options(cls):
        names[f.name] = names[spelled(flag_of(f.name, meta))] = (f, meta)
    # The run's settings that are not options of this command (a growth run's eval-every follows its growth
    # steps), under their names and the flags the config classes ``cls`` derives from give them
    hidden: dict[str, str] = {}
    for klass in cls.__mro__:
        if dataclasses.is_dataclass(klass):
            for name, meta in option_metadata(klass).items():
                if name not in names:
                    hidden[name] = hidden[spelled(flag_of(name, meta))] = name
    allowed = ", ".join(_resume_options(cls))
    found: dict[str, Any] = {}
    for item in args.override:
        key, sep, text = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or not text.strip():
            raise UsageError(f"--override {item!r}: expected KEY=VALUE, e.g. --override lr=0.05")
        field_name = hidden.get(spelled(key))
        if field_name in RESUME_SETTINGS:
            raise UsageError(f"--override {key}: this kind of run sets it itself "
                             f"({option_metadata(cls)[field_name]['help']}), so it cannot be overridden; can "
                             f"change: {allowed}")
        if field_name is None and spelled(key) not in names:
            raise UsageError(f"--override {key}: no such setting (can change: {allowed})")
        option = names.get(spelled(key))
        if option is None or option[0].name not in RESUME_SETTINGS:
            raise UsageError(f"--override {key}: a resumed run keeps its {key} (changing it would change what "
                             f"the steps already trained mean); can change: {allowed}")
        f, meta = option
        try:
            found[f.name] = option_type(f, meta)(text.strip())
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"--override {key}: {err}") from None
    return found


def cmd_train(args: argparse.Namespace) -> int:
    _check_run_args(args)  # before the imports below (torch): a usage error answers at once

    overrides = _overrides(args, TrainConfig)
    from .run import Run

    genotype = _read_genotype(args.genotype) if args.genotype else None
    run = Run.open(_config(args, TrainConfig, genotype=genotype), args.out, args.resume, kind="train",
                   overrides=overrides)
    if run.finished:
        return _finished(run.store.path)
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

    overrides = _overrides(args, GrowConfig)
    from .controller import GrowthController
    from .run import Run

    genotype = _read_genotype(args.genotype) if args.genotype else None
    run = Run.open(_config(args, GrowConfig, genotype=genotype), args.out, args.resume, kind="grow",
                   overrides=overrides)
    if run.finished:
        return _finished(run.store.path)
    config = run.config
    assert isinstance(config, GrowConfig)  # Run.open keeps the config's class
    return _run(args, run.store, lambda display: run.fit(GrowthController(config), display))


def _finished(path: Path) -> int:
    """``--resume`` of a run that has finished: one line, nothing written, exit code 0 (resuming is idempotent:
    a script that resumes until the run is done stops there, as a rerun bench skips its finished cells)."""
    from . import distributed

    if distributed.is_main():
        print(f"{path} is finished (its budget is spent): nothing to resume, nothing changed; its results are in "
              f"{path / 'summary.json'}")
    return 0


def _run(args: argparse.Namespace, store: RunStore, fit: Callable[[Any], dict]) -> int:
    """Run ``fit(display)`` with the progress display, then print the summary (under torchrun: rank 0 only)."""
    from . import distributed
    from .display import make_display
    from .runstore import CHECKPOINT
    from .trainer import RunInterrupted

    display = make_display(args.quiet or not distributed.is_main())
    try:
        summary = fit(display)
    except RunInterrupted:
        raise  # stopped in the loop: it checkpointed and says where
    except KeyboardInterrupt:  # stopped while starting (data, calibration, the first compilation)
        if (store.path / CHECKPOINT).exists():
            raise RunInterrupted(f"stopped; continue with --resume {store.path}") from None
        raise RunInterrupted(f"stopped before the first checkpoint: nothing to resume, start the run again "
                             f"({store.path} holds only its settings)") from None
    finally:
        if display is not None:
            display.close()
    if distributed.is_main():
        _print_summary(summary, store.path)
    return 0


def _add_search_args(p: argparse.ArgumentParser) -> None:
    """The options of ``grow search`` (by hand: a search is not one config; see growth/search.py)."""
    from .search import DEFAULT_STUDY, HEARTBEAT_S, JOURNAL_NAME

    p.add_argument("--seed", help="seed architecture to grow (see `grow seeds`); required unless --show")
    p.add_argument("--budget-per-trial", type=budget_arg, metavar="FLOPS",
                   help="training FLOPs of each trial (e.g. 3e10); required unless --show")
    p.add_argument("--trials", type=positive_int, metavar="N",
                   help="trials in the study in total (a rerun adds trials up to N); required unless --show")
    p.add_argument("--budget", type=budget_arg, metavar="TOTAL",
                   help="cap on the study's total training FLOPs (no trial starts that would overrun it)")
    p.add_argument("--storage", metavar="URL", help="an RDB URL (sqlite:///x.db, postgresql://...) or a journal "
                   f"file path (default <out>/{JOURNAL_NAME})")
    p.add_argument("--study", metavar="NAME", help=f"study name (default {DEFAULT_STUDY}; with --show, the "
                   "storage's only study if there is one)")
    p.add_argument("--data", help="sample (shipped), cifar10, cifar100, fashion-mnist, or an ImageFolder "
                   "directory (default sample; with --from-trial, the study's)")
    p.add_argument("--subset", type=positive_int, metavar="N", help="use only this many training images")
    p.add_argument("--out", metavar="DIR", help="study directory: trials/<number>/, the journal, pareto.png "
                   "(default runs/<study>)")
    p.add_argument("--max-macs", type=macs_arg, metavar="M", help="constraint: trials above M inference "
                   "MACs are infeasible")
    p.add_argument("--seed-value", type=int, metavar="S", help="random seed of every trial's run and of the "
                   "sampler (reproducible studies on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default auto)")
    p.add_argument("--heartbeat", type=positive_int, default=HEARTBEAT_S, metavar="S",
                   help=f"RDB storages: a running trial's worker records a heartbeat every S seconds; a trial "
                   f"silent for 2 S is failed and retried (default {HEARTBEAT_S})")
    p.add_argument("--show", action="store_true", help="print the Pareto front and write <out>/pareto.png")
    p.add_argument("--from-trial", type=int, metavar="N", help="train trial N's final architecture anew from "
                   "scratch (as grow train --genotype) in <out>/from-trial-N-<data>-<budget>, at the study's "
                   "per-trial budget and data unless --budget-per-trial/--data say otherwise")


def cmd_search(args: argparse.Namespace) -> int:
    """``grow search``: run trials (or ``--show`` the front). Every input is checked before anything is written."""
    from pathlib import Path

    from .search import DEFAULT_STUDY, base_config, open_storage, retrain, search, show

    if args.show and args.from_trial is not None:
        raise UsageError("grow search: --show or --from-trial, not both")
    if args.show:
        return show(args)
    if args.from_trial is not None:
        return retrain(args)
    args.data = args.data or "sample"
    missing = [flag for flag, value in (("--seed", args.seed), ("--budget-per-trial", args.budget_per_trial),
                                        ("--trials", args.trials)) if value is None]
    if missing:
        raise UsageError(f"grow search needs {', '.join(missing)} (or --show)")
    if args.budget is not None and args.budget < args.budget_per_trial:
        raise UsageError(f"--budget {args.budget:g} is below one trial's budget ({args.budget_per_trial:g}): "
                         "no trial could start")
    base = base_config(args)
    study_name = args.study or DEFAULT_STUDY
    out = Path(args.out or Path("runs") / study_name)
    storage = open_storage(args.storage, out, create=True, heartbeat=args.heartbeat)
    return search(storage, study_name, base, out, args.trials, args.budget, args.max_macs, args.seed_value)


def cmd_plan(args: argparse.Namespace) -> int:
    """``grow plan``: the growth plan of a run with these options, and its ETA on the device; writes nothing."""
    if args.budget_flops is None:
        raise UsageError("--budget is required (e.g. --budget 2e17)")
    config = _config(args, GrowConfig)
    config.validate()
    import search_spaces

    from .allocation import widened_alike
    from .compute import measure_cost, measure_train_rate
    from .data import load_dataset
    from .display import format_duration
    from .plan import plan_growth

    data = load_dataset(config.data, val_size=config.val_size, subset=config.subset)
    if len(data.train_y) < 2:
        raise UsageError(f"{len(data.train_y)} training image: a step needs 2 (BatchNorm); use a larger --subset")
    shape = (data.in_chans, *data.train_x.shape[2:])
    seed = (search_spaces.genotype_from_dict(config.genotype) if config.genotype is not None else
            search_spaces.get_genotype(config.seed, num_classes=data.num_classes, in_chans=data.in_chans))
    seed_macs = float(measure_cost(seed, shape).macs)
    plan = plan_growth(config, seed_macs, len(data.train_y))
    budget = config.budget_flops
    rows = [("seed", f"{config.seed}  {seed.compact()}  {seed_macs / 1e6:.3g}M MACs"),
            ("data", f"{data.name}: {len(data.train_y):,} training images of {shape}"),
            ("size rule", plan.size_rule),
            ("target", f"{plan.target_macs / 1e6:.4g}M MACs ({plan.target_macs / seed_macs:.3g}x the seed)"
             + ("" if plan.grows else f": below {config.min_growth}x the seed, so the run does not grow"))]
    if plan.grows:
        implied = widened_alike(seed, plan.target_macs, shape)
        implied_macs = float(measure_cost(implied, shape).macs)
        reach = "" if implied_macs >= 0.9 * plan.target_macs else (
            f"; OUT OF REACH: widening gets only {implied_macs / 1e6:.4g}M on these {shape[1]}x{shape[2]} images")
        rows.append(("widened alike", f"{implied.compact()} ({implied_macs / 1e6:.4g}M MACs; Γ decides the real "
                                      f"shape){reach}"))
        for e in plan.events:
            rows.append((f"event {e.index}", f"at {e.at_fraction:.4%} of the budget ({e.at_fraction * budget:.3g} "
                                             f"FLOPs), after {e.epochs_before:.3g} epochs: to {e.goal_macs / 1e6:.4g}M "
                                             "MACs"))
    rows.append(("final network", f"{plan.final_epochs:.4g} epochs on {plan.final_share:.1%} of the budget"))
    rate = measure_train_rate(seed, shape, min(config.batch_size, len(data.train_y)), config.device)
    rows.append(("eta", f"{format_duration(budget / rate)} at the seed's measured {rate:.3g} FLOP/s on "
                        f"{config.device} (fp32, eager; larger networks usually run faster)"))
    _print_table(["plan", ""], rows)
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    """``grow seeds``: the registered seeds with params and MACs. The table is kept in the cache directory, keyed
    by everything that decides it (:func:`_seeds_table_file`), so that only the first call imports torch (2.5 s
    of CPU on its own here) and counts; a later one prints it in a fraction of a second."""
    cached = _seeds_table_file(args.input_size)
    rows = _read_seeds_table(cached)
    if rows is None:
        import search_spaces

        from .compute import count_cost, measure_cost

        rows = []
        shape = (3, args.input_size, args.input_size)
        for name in search_spaces.list_seeds():
            genotype = search_spaces.get_genotype(name)
            cost = count_cost(genotype, shape) or measure_cost(genotype, shape)  # from shapes: no TorchDynamo
            rows.append((name, f"{cost.params / 1e6:.3f}M", f"{cost.macs / 1e6:.2f}M", str(genotype.compact())))
        _write_seeds_table(cached, rows)
    _print_table(["seed", "params", f"MACs ({args.input_size}x{args.input_size})", "widths"], rows)
    return 0


def _seeds_table_file(input_size: int) -> Path:
    """Where ``grow seeds`` keeps its table for ``input_size``: in the cache directory (``$GROWTH_DATA_DIR``, else
    ``~/.cache/growth``), named by a digest of what decides the table without importing torch: the sources of
    ``search_spaces`` (the seeds, their genotypes and builders), of ``growth/compute.py`` (the count) and of this
    module, torch's version and the input size."""
    import hashlib
    import os
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    import search_spaces  # its families (and torch) are imported at the first look-up, not here

    from . import compute

    digest = hashlib.sha256()
    for source in [*sorted(Path(search_spaces.__file__).parent.glob("*.py")), Path(compute.__file__), Path(__file__)]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "?"
    digest.update(f"torch {torch_version}, input {input_size}".encode())
    root = Path(os.environ.get("GROWTH_DATA_DIR") or "~/.cache/growth").expanduser()
    return root / "seeds" / f"table-{digest.hexdigest()[:20]}.json"


def _read_seeds_table(path: Path) -> list[tuple[str, ...]] | None:
    """The rows kept in ``path``; None when there are none, or they are damaged (then they are counted again)."""
    import json

    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 4 and all(isinstance(c, str) for c in r)
                                             for r in rows):
        return None
    return [tuple(r) for r in rows]


def _write_seeds_table(path: Path, rows: list[tuple[str, ...]]) -> None:
    """Keep ``rows`` in ``path`` (atomically); a cache that cannot be written costs only the next call's time."""
    from .runstore import atomic_write_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, [list(r) for r in rows])
    except OSError:
        pass


def cmd_graph(args: argparse.Namespace) -> int:
    """``grow graph``: the channel groups of ``--seed``, ``--genotype FILE`` or a run directory, in network order
    (by the first layer that writes each group's channels)."""
    given = [flag for flag, value in (("--seed", args.seed), ("--genotype", args.genotype), ("RUN_DIR", args.run))
             if value is not None]
    if len(given) != 1:
        raise UsageError("grow graph takes one of --seed NAME, --genotype FILE or a run directory"
                         + (f" (given: {', '.join(given)})" if given else ""))
    import search_spaces

    from .graph import groups_of_genotype

    if args.seed is not None:
        genotype = search_spaces.get_genotype(args.seed)
    elif args.genotype is not None:
        genotype = search_spaces.genotype_from_dict(_read_genotype(args.genotype))
    else:
        genotype = _run_genotype(args.run)
    try:
        groups = groups_of_genotype(genotype)
    except search_spaces.FamilyError as err:  # a timm reference has no channel groups
        raise UsageError(f"grow graph: {err}") from None
    rows = [(g.name, str(g.width), " ".join(g.producers), " ".join(g.consumers)) for g in groups]
    _print_table(["group", "width", "producers (out channels)", "consumers (in channels)"], rows)
    return 0


def _run_genotype(path: str) -> Genotype:
    """The architecture of the run in directory ``path``: its final genotype.json, else its checkpoint's."""
    from pathlib import Path

    import search_spaces

    from .runstore import CHECKPOINT, RunStore

    run = Path(path)
    if not run.is_dir():
        raise UsageError(f"{path} is not a directory" + (" (a genotype file? use --genotype FILE)"
                                                         if run.is_file() else ""))
    if (run / "genotype.json").is_file():
        return search_spaces.genotype_from_dict(_read_genotype(str(run / "genotype.json")))
    if not (run / CHECKPOINT).is_file():
        raise UsageError(f"{path} holds neither genotype.json nor {CHECKPOINT}: not a run directory")
    state = RunStore(run).load_torch(CHECKPOINT)
    try:
        return search_spaces.genotype_from_dict(state["genotype"])
    except (KeyError, TypeError, ValueError) as err:
        raise UsageError(f"{run / CHECKPOINT} holds no readable genotype "
                         f"({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})") from None


def _print_table(header: list[str], rows: list[tuple]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*header, show_lines=False)
    for row in rows:
        table.add_row(*row)
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


def _print_summary(summary: dict, path: Path) -> None:
    keys = ["seed", "data", "test_acc", "val_acc", "params", "macs", "train_flops", "budget_flops",
            "epochs", "train_time_s", "images_per_s", "widths"]
    rows = [(k, f"{summary[k]:.4f}" if k.endswith("acc") else f"{summary[k]:.4g}"
             if isinstance(summary[k], float) else str(summary[k])) for k in keys if k in summary]
    rows.append(("run directory", str(path)))
    _print_table(["summary", ""], rows)
    for note in summary.get("notes", []):
        print(f"note: {note}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        grow, subs = build_parser()
        if argv and argv[0] in subs:
            name, args = argv[0], subs[argv[0]].parse_args(argv[1:])
            handler = subs.handler(name)
        else:
            args, handler = grow.parse_args(argv), cmd_grow
        return handler(args)
    except GrowthError as err:  # bad input, also when raised deep inside: one line, exit code 2
        print(f"grow: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:  # a run that stopped on a signal says where it checkpointed
        print(f"grow: interrupted: {str(err) or 'stopped before the run directory was written'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # ``python -m growth.cli``: run the importable module, so that commands from entry points (which import
    # growth.cli) and this file share one Command and one UsageError class, not two copies
    from growth.cli import main as _main

    sys.exit(_main())
