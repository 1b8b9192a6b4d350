"""``grow search``: the engine searching its own growth settings with a multi-objective Optuna study.

Each trial is an ordinary growth run (``Run.open`` + :class:`~growth.controller.GrowthController`,
kind ``grow``) in ``<out>/trials/<number>``, with the settings :func:`suggest` draws on top of the
command's base config (seed, data, subset, per-trial budget, seed value). The study maximises the
validation accuracy the run reports (``summary["val_acc"]``) and minimises its inference MACs; the test
accuracy is recorded in the trial's user attributes (``summary``) but is never an objective. With
``--max-macs`` the sampler (TPE with ``constraints_func``) treats trials above it as infeasible.

Storage: a journal file (``<out>/study.log``, Optuna's ``JournalFileBackend``) by default; ``--storage``
takes a journal file path or any RDB URL (``sqlite:///...``, ``postgresql://...``, ``mysql://...``).
The same command run again, or in a second process, joins the study and adds trials until ``--trials``
exist in total (complete, pruned and running trials count; failed ones do not and are replaced).
``--budget`` caps the study's training FLOPs: a trial starts only if the budgets of every trial started
before it (failed ones included: their compute was spent) plus its own fit in the total.

optuna is imported inside the functions, so ``import growth`` and ``grow --help`` do not import it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces.errors import GrowthError, first_line

if TYPE_CHECKING:
    import optuna

    from .config import GrowConfig

DEFAULT_STUDY = "grow-search"
JOURNAL_NAME = "study.log"
# The settings a study was created with: a second worker with other ones would mix incomparable trials.
STUDY_KEYS = ("seed", "data", "subset", "budget_per_trial", "max_macs")


class SearchError(GrowthError):
    """A storage or study that cannot be used (one line, exit code 2)."""


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """The search space, in one place: :class:`~growth.config.GrowConfig` field -> value for ``trial``.

    ====================  =======================  ==================================================
    field                 range                    what it is
    ====================  =======================  ==================================================
    ``lr``                0.01 .. 0.5 (log)        peak learning rate
    ``kappa``             0.5 .. 4 (log)           DessiLBI κ
    ``nu``                10 .. 1000 (log)         DessiLBI ν (coupling of W and Γ)
    ``select_frac``       0.5 .. 1                 widen groups scoring at least this share of the best
    ``growth_steps``      1 .. 6                   number of widenings
    ``grow_until_frac``   0.2 .. 0.7               share of the budget by which growth is done
    ``size_exponent``     0.1 .. 0.8               the budget -> size rule's exponent (target MACs)
    ``min_growth``        1.0 .. 2.0               grow only to a target at least this multiple
    ``deepen``            False, True              also add blocks
    ====================  =======================  ==================================================
    """
    return {
        "lr": trial.suggest_float("lr", 0.01, 0.5, log=True),
        "kappa": trial.suggest_float("kappa", 0.5, 4.0, log=True),
        "nu": trial.suggest_float("nu", 10.0, 1000.0, log=True),
        "select_frac": trial.suggest_float("select_frac", 0.5, 1.0),
        "growth_steps": trial.suggest_int("growth_steps", 1, 6),
        "grow_until_frac": trial.suggest_float("grow_until_frac", 0.2, 0.7),
        "size_exponent": trial.suggest_float("size_exponent", 0.1, 0.8),
        "min_growth": trial.suggest_float("min_growth", 1.0, 2.0),
        "deepen": trial.suggest_categorical("deepen", [False, True]),
    }


def base_config(args: argparse.Namespace) -> GrowConfig:
    """The trials' common config, checked (seed, data, budget) before anything is written."""
    from search_spaces import get_genotype

    from .config import GrowConfig
    from .device import resolve_device
    from .run import _check_inputs, _load_data

    config = GrowConfig(seed=args.seed, data=args.data, subset=args.subset, budget_flops=args.budget_per_trial,
                        seed_value=args.seed_value, device=args.device)
    config.validate()
    resolve_device(config.device)
    get_genotype(config.seed)
    _check_inputs(config, _load_data(config))
    return config


def open_storage(url: str | None, out: Path, *, create: bool) -> optuna.storages.BaseStorage:
    """The study's storage: ``url`` (an RDB URL or a journal file path) or ``<out>/study.log``.

    With ``create=False`` (``--show``) a storage that does not exist yet is an error, not created.
    Any failure to open it is a :class:`SearchError` (one line).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url is None or "://" not in url:
        path = Path(url) if url is not None else out / JOURNAL_NAME
        if not create and not path.is_file():
            raise SearchError(f"no study journal at {path} (give --out DIR of a search, or --storage)")
        if path.exists() and not path.is_file():
            raise SearchError(f"--storage {path}: not a journal file")
        from optuna.storages.journal import JournalFileBackend

        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if not create and url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise SearchError(f"--storage {url}: no such database")
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as err:  # sqlalchemy raises many kinds (unknown dialect, refused connection, ...)
        raise SearchError(f"--storage {url}: cannot open ({first_line(err, 160)})") from None


def _started(study: optuna.Study, before: int | None = None) -> list[optuna.trial.FrozenTrial]:
    """Trials that count: not skipped, numbered below ``before`` if given."""
    return [t for t in study.get_trials(deepcopy=False)
            if not t.user_attrs.get("skipped") and (before is None or t.number < before)]


def _room(study: optuna.Study, trials: int, budget: float | None, per_trial: float,
          before: int | None = None) -> str | None:
    """Why no further trial may start (``None``: it may), counting trials numbered below ``before``."""
    from optuna.trial import TrialState

    started = _started(study, before)
    counted = [t for t in started if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
    if len(counted) >= trials:
        return f"the study has {len(counted)} trials (--trials {trials})"
    spent = sum(float(t.user_attrs.get("budget_flops", per_trial)) for t in started)
    if budget is not None and spent + per_trial > budget:
        return f"--budget {budget:g} reached: {spent:g} FLOPs started, a trial needs {per_trial:g}"
    return None


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [float(trial.user_attrs.get("constraint", 0.0))]


def search(storage: optuna.storages.BaseStorage, study_name: str, base: GrowConfig, out: Path, trials: int,
           budget: float | None, max_macs: float | None, seed_value: int | None) -> int:
    """Add trials to the study until ``trials`` exist or ``budget`` is spent; returns the exit code (0)."""
    import optuna

    from .config import GrowConfig
    from .controller import GrowthController
    from .run import Run

    settings = {"seed": base.seed, "data": base.data, "subset": base.subset,
                "budget_per_trial": base.budget_flops, "max_macs": max_macs}
    probe = optuna.create_study(storage=storage, study_name=study_name, directions=["maximize", "minimize"],
                                load_if_exists=True)
    saved = probe.user_attrs.get("settings")
    if saved is None:
        probe.set_user_attr("settings", settings)
    elif saved != settings:
        diff = ", ".join(f"{k} {saved.get(k)} (not {settings[k]})" for k in STUDY_KEYS if saved.get(k) != settings[k])
        raise SearchError(f"study {study_name} was created with {diff}")
    sampler_seed = None if seed_value is None else seed_value + len(probe.trials)
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constraints_func=_constraints if max_macs else None)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    per_trial = base.budget_flops
    ran = 0
    while (reason := _room(study, trials, budget, per_trial)) is None:
        trial = study.ask()
        # Another worker may have started trials meanwhile: decide by the trials numbered before this one.
        late = _room(study, trials, budget, per_trial, before=trial.number)
        if late is not None:
            trial.set_user_attr("skipped", late)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            reason = late
            break
        trial.set_user_attr("budget_flops", per_trial)
        config = GrowConfig(**{**base.to_dict(), **suggest(trial)})
        run_dir = out / "trials" / str(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            run = Run.open(config, run_dir, kind="grow")
            summary = run.fit(GrowthController(config), display=None)
        except BaseException as err:  # a failed or interrupted trial is recorded as such, then the error goes on
            trial.set_user_attr("error", first_line(err, 200))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        trial.set_user_attr("summary", json.loads(json.dumps(summary, default=str)))
        trial.set_user_attr("constraint", float(summary["macs"]) - max_macs if max_macs else 0.0)
        study.tell(trial, [float(summary["val_acc"]), float(summary["macs"])])
        ran += 1
        print(f"trial {trial.number}: val_acc {summary['val_acc']:.4f}, test_acc {summary['test_acc']:.4f}, "
              f"{summary['macs'] / 1e6:.3f}M MACs, widths {summary['widths']} ({run_dir})", flush=True)
    print(f"{ran} trial{'s' * (ran != 1)} run by this worker; stopped: {reason}", flush=True)
    return 0


def _load(args: argparse.Namespace) -> tuple[optuna.Study, Path]:
    """The study ``--show`` asks for, and the directory for its plot; nothing is created."""
    import optuna

    if args.out is None and args.storage is None and args.study is None:
        raise SearchError("grow search --show needs --out DIR (or --storage URL --study NAME)")
    storage = open_storage(args.storage, Path(args.out or Path("runs") / (args.study or DEFAULT_STUDY)),
                           create=False)
    name = args.study
    if name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        name = names[0] if len(names) == 1 else DEFAULT_STUDY
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise SearchError(f"no study named {name!r} in {args.storage or args.out}") from None
    return study, Path(args.out or Path("runs") / name)


def show(args: argparse.Namespace) -> int:
    """``grow search --show``: the Pareto front as a table, and ``<out>/pareto.png``."""
    from optuna.trial import TrialState

    study, out = _load(args)
    if len(study.directions) != 2:
        raise SearchError(f"study {study.study_name} is not a grow search study (two objectives)")
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    front = sorted(study.best_trials, key=lambda t: t.values[1]) if complete else []
    rows = []
    for t in front:
        s = t.user_attrs.get("summary", {})
        rows.append((str(t.number), t.state.name.lower(), f"{s.get('val_acc', t.values[0]):.4f}",
                     f"{s['test_acc']:.4f}" if "test_acc" in s else "-", f"{t.values[1] / 1e6:.3f}M",
                     f"{s['params']:,}" if "params" in s else "-", str(s.get("widths", "-"))))
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    print(f"study {study.study_name}: {len(trials)} trials ("
          + ", ".join(f"{n} {state.name.lower()}" for state, n in counts.items() if n) + f"); "
          f"Pareto front of {len(front)} (max val_acc, min MACs)")
    from rich.console import Console
    from rich.table import Table

    table = Table("trial", "state", "val_acc", "test_acc", "MACs", "params", "widths", title="Pareto front")
    for row in rows:
        table.add_row(*row)
    Console(width=200 if not sys.stdout.isatty() else None).print(table)
    if complete:
        path = plot_front(complete, front, out / "pareto.png", study.study_name)
        print(f"plot: {path}")
    return 0


def plot_front(trials: list[optuna.trial.FrozenTrial], front: list[optuna.trial.FrozenTrial], path: Path,
               title: str) -> Path:
    """Every complete trial (MACs, validation accuracy), the Pareto front joined, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([t.values[1] / 1e6 for t in trials], [t.values[0] for t in trials], s=18, color="0.6",
               label="trials")
    xs, ys = [t.values[1] / 1e6 for t in front], [t.values[0] for t in front]
    ax.plot(xs, ys, "o-", drawstyle="steps-post", color="C0", label="Pareto front")
    for t, x, y in zip(front, xs, ys):
        ax.annotate(str(t.number), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("inference MACs (M)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"grow search: {title}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


