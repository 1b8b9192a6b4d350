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

A trial whose worker died (SIGKILL, out of memory, a lost machine) is retried: Optuna's
``RetryHeartbeatStaleTrialCallback`` (``RetryFailedTrialCallback`` before Optuna 4.9) queues its parameters as a
new trial, which the next free worker runs. How a dead worker is noticed depends on the storage:

- RDB storages: Optuna's heartbeat. Each worker records a heartbeat of its running trial every
  ``--heartbeat`` seconds (``RDBStorage(heartbeat_interval=..., grace_period=2 x interval)``); a trial silent
  for longer is failed by the next worker that looks (before each of its trials, and when it starts).
- Journal files: Optuna's ``JournalStorage`` has no heartbeat, so a worker records its host and process
  (id and start time) on its trial, and a worker on the same host fails the running trials whose process
  is gone. A trial left running by a worker on another host stays ``RUNNING`` (use an RDB storage there).

The retried trial *resumes* the dead trial's run directory from its last checkpoint where that directory
is here and has one (resume is exact: the result is that of an uninterrupted run); otherwise (it died
before its first checkpoint, or on another machine) it starts anew in ``trials/<its number>``. Its compute is
counted once against ``--budget``. A trial is retried at most :data:`MAX_RETRY` times.

Every finished trial keeps its final architecture in its user attributes (``genotype``) as well as in
``trials/<number>/genotype.json``; ``grow search --from-trial N`` trains it anew from scratch (``grow train
--genotype``), e.g. at a larger budget or on the full data set.

optuna is imported inside the functions, so ``import growth`` and ``grow --help`` do not import it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import warnings
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
HEARTBEAT_S = 60
MAX_RETRY = 2


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
    ``select_frac``       0.1 .. 1                 widen groups scoring at least this share of the best
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
        "select_frac": trial.suggest_float("select_frac", 0.1, 1.0),
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


def retry_callback() -> Any:
    """Optuna's callback that queues a dead worker's trial again, at most :data:`MAX_RETRY` times."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if cls is None:  # Optuna before 4.9
            cls = optuna.storages.RetryFailedTrialCallback
        return cls(max_retry=MAX_RETRY)


def open_storage(url: str | None, out: Path, *, create: bool,
                 heartbeat: int | None = None) -> optuna.storages.BaseStorage:
    """The study's storage: ``url`` (an RDB URL or a journal file path) or ``<out>/study.log``.

    With ``create=False`` (``--show``) a storage that does not exist yet is an error, not created.
    With ``heartbeat`` (seconds) an RDB storage runs Optuna's heartbeat, retrying dead workers' trials.
    Any failure to open it is a :class:`SearchError` (one line).
    """
    import inspect

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
    options: dict[str, Any] = {}
    if heartbeat is not None:
        parameters = inspect.signature(optuna.storages.RDBStorage).parameters
        callback = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in parameters
                    else "failed_trial_callback")  # the name before Optuna 4.9
        options = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat, callback: retry_callback()}
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **options)
        except Exception as err:  # sqlalchemy raises many kinds (unknown dialect, refused connection, ...)
            # Workers started at once on a new database race to create Optuna's tables: the losers try again.
            attempt += 1
            if attempt > 3 or type(err).__name__ not in ("IntegrityError", "ProgrammingError"):
                raise SearchError(f"--storage {url}: cannot open ({first_line(err, 160)})") from None
            time.sleep(0.5 * attempt)


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux ``/proc``; clock ticks since boot); None if unknown, gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else fields[19]


def worker_id() -> dict[str, Any]:
    """This process, as recorded on its running trial: host, process id and its start time (against reuse)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def worker_alive(worker: dict[str, Any]) -> bool:
    """Whether the worker that recorded ``worker`` may still run (a worker on another host: assumed so)."""
    if worker.get("host") != socket.gethostname():
        return True
    pid = int(worker["pid"])
    if worker.get("start") is not None:
        return _process_start(pid) == worker["start"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def reap_dead_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Fail the running trials whose worker died, and queue them again (:func:`retry_callback`).

    RDB storages: Optuna's heartbeat (``fail_stale_trials``, which runs the storage's retry callback).
    Journal files: the trials whose worker process on this host is gone (Optuna's journal has no heartbeat).
    """
    import optuna
    from optuna.trial import TrialState

    if isinstance(storage, optuna.storages.RDBStorage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return
    dead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if "worker" in t.user_attrs and not worker_alive(t.user_attrs["worker"])]
    if not dead:
        return
    retry = retry_callback()
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in dead:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                retry(study, storage.get_trial(trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
            pass


def _claim(run_dir: Path, retry_of: int) -> bool:
    """Whether this retry of trial ``retry_of`` may resume ``run_dir``: it is resumable here, and no other retry
    of the same trial claimed it first (an atomic ``retry-of-<number>`` file in it)."""
    from .runstore import CHECKPOINT

    if not (run_dir / "config.json").is_file() or not (run_dir / CHECKPOINT).is_file():
        return False
    try:
        os.close(os.open(run_dir / f"retry-of-{retry_of}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


def _started(study: optuna.Study, before: int | None = None) -> list[optuna.trial.FrozenTrial]:
    """Trials that count: not skipped, numbered below ``before`` if given."""
    return [t for t in study.get_trials(deepcopy=False)
            if not t.user_attrs.get("skipped") and (before is None or t.number < before)]


def _room(study: optuna.Study, trials: int, budget: float | None, per_trial: float,
          before: int | None = None) -> str | None:
    """Why no further trial may start (``None``: it may), counting trials numbered below ``before``.

    A trial that was retried counts once: its retry (waiting, running or finished) carries its budget.
    """
    from optuna.trial import TrialState

    started = _started(study, before)
    counted = [t for t in started if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
    if len(counted) >= trials:
        return f"the study has {len(counted)} trials (--trials {trials})"
    retried = {n for t in study.get_trials(deepcopy=False) for n in t.system_attrs.get("retry_history", [])}
    spent = sum(float(t.user_attrs.get("budget_flops", per_trial)) for t in started if t.number not in retried)
    if budget is not None and spent + per_trial > budget:
        return f"--budget {budget:g} reached: {spent:g} FLOPs started, a trial needs {per_trial:g}"
    return None


def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [float(trial.user_attrs.get("constraint", 0.0))]


class _Skipped(Exception):
    """A trial asked for after another worker filled the study: recorded as failed and ``skipped``."""


def search(storage: optuna.storages.BaseStorage, study_name: str, base: GrowConfig, out: Path, trials: int,
           budget: float | None, max_macs: float | None, seed_value: int | None) -> int:
    """Add trials to the study until ``trials`` exist or ``budget`` is spent; returns the exit code (0).

    Trials run in Optuna's ``study.optimize`` loop, which records the heartbeat of RDB storages and fails stale
    trials before each new one; dead workers' trials are retried (see the module's docstring).
    """
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
    stopped: dict[str, Any] = {"reason": None, "ran": 0}

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        # Another worker may have started trials meanwhile: decide by the trials numbered before this one.
        late = _room(study, trials, budget, per_trial, before=trial.number)
        if late is not None:
            trial.set_user_attr("skipped", late)
            raise _Skipped(late)
        config = GrowConfig(**{**base.to_dict(), **suggest(trial)})  # a retry: the dead trial's parameters
        retry_of, previous = trial.user_attrs.get("number"), trial.user_attrs.get("run_dir")  # copied by the retry
        trial.set_user_attr("number", trial.number)
        trial.set_user_attr("budget_flops", per_trial)
        trial.set_user_attr("worker", worker_id())
        run_dir, resume = out / "trials" / str(trial.number), None
        if retry_of is not None:
            trial.set_user_attr("retry_of", retry_of)
            if previous is not None and _claim(Path(previous), retry_of):
                run_dir = resume = Path(previous)
            print(f"trial {trial.number}: retries trial {retry_of}, whose worker died: "
                  f"{f'resuming {resume}' if resume else f'starting anew in {run_dir}'}", flush=True)
        trial.set_user_attr("run_dir", os.path.abspath(run_dir))  # absolute: --show may run from anywhere
        try:
            run = Run.open(config, None if resume else run_dir, resume, kind="grow")
            summary = run.fit(GrowthController(config), display=None)
        except BaseException as err:  # recorded on the failed trial; Optuna marks it failed and raises it again
            trial.set_user_attr("error", first_line(err, 200))
            raise
        trial.set_user_attr("summary", json.loads(json.dumps(summary, default=str)))
        trial.set_user_attr("genotype", json.loads((run_dir / "genotype.json").read_text()))
        trial.set_user_attr("constraint", float(summary["macs"]) - max_macs if max_macs else 0.0)
        stopped["ran"] += 1
        print(f"trial {trial.number}: val_acc {summary['val_acc']:.4f}, test_acc {summary['test_acc']:.4f}, "
              f"{summary['macs'] / 1e6:.3f}M MACs, widths {summary['widths']} ({run_dir})", flush=True)
        return float(summary["val_acc"]), float(summary["macs"])

    def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        stopped["reason"] = trial.user_attrs.get("skipped")
        if stopped["reason"] is None:
            reap_dead_trials(study, storage)
            stopped["reason"] = _room(study, trials, budget, per_trial)
        if stopped["reason"] is not None:
            study.stop()

    reap_dead_trials(study, storage)
    stopped["reason"] = _room(study, trials, budget, per_trial)
    if stopped["reason"] is None:
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported here, or raised
        study.optimize(objective, catch=(_Skipped,), callbacks=[after], gc_after_trial=False)
    ran = stopped["ran"]
    print(f"{ran} trial{'s' * (ran != 1)} run by this worker; stopped: {stopped['reason']}", flush=True)
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
                     f"{s['params']:,}" if "params" in s else "-", str(s.get("widths", "-")), genotype_file(t)))
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    print(f"study {study.study_name}: {len(trials)} trials ("
          + ", ".join(f"{n} {state.name.lower()}" for state, n in counts.items() if n) + f"); "
          f"Pareto front of {len(front)} (max val_acc, min MACs)")
    from rich.console import Console
    from rich.table import Table

    table = Table("trial", "state", "val_acc", "test_acc", "MACs", "params", "widths", "genotype",
                  title="Pareto front")
    for row in rows:
        table.add_row(*row)
    Console(width=240 if not sys.stdout.isatty() else None).print(table)
    if complete:
        path = plot_front(complete, front, out / "pareto.png", study.study_name)
        print(f"plot: {path}")
        print(f"train trial N's architecture anew: grow search --from-trial N {_where(args)} [--budget-per-trial F] "
              "[--data D], or grow train --genotype <its genotype.json>")
    return 0


def genotype_file(trial: optuna.trial.FrozenTrial) -> str:
    """Where a trial's final architecture is on this machine; "-" where it is not (it is in the study too)."""
    path = Path(trial.user_attrs.get("run_dir", "-")) / "genotype.json"
    return str(path) if path.is_file() else "-"


def _where(args: argparse.Namespace) -> str:
    """The options that name a study, as given."""
    return " ".join(f"{flag} {value}" for flag, value in (("--out", args.out), ("--storage", args.storage),
                                                          ("--study", args.study)) if value is not None)


def retrain(args: argparse.Namespace) -> int:
    """``grow search --from-trial N``: train trial N's final architecture anew from scratch, as ``grow train
    --genotype`` would, in ``<out>/from-trial-<N>-<data>-<budget>``.

    By default at the study's per-trial budget on its data (and subset); ``--budget-per-trial``, ``--data``,
    ``--subset``, ``--seed-value`` and ``--device`` change that. The architecture comes from the study (the
    trial's user attributes), so this works on any machine that reaches the study's storage.
    """
    from optuna.trial import TrialState

    from .config import TrainConfig
    from .display import make_display
    from .run import Run

    study, out = _load(args)
    number = args.from_trial
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None:
        raise SearchError(f"study {study.study_name} has no trial {number}")
    genotype = trial.user_attrs.get("genotype")
    if genotype is None and genotype_file(trial) != "-":  # a study from before the genotype was recorded
        genotype = json.loads(Path(genotype_file(trial)).read_text())
    if trial.state != TrialState.COMPLETE or genotype is None:
        raise SearchError(f"trial {number} is {trial.state.name.lower()}: no final architecture to train")
    settings = study.user_attrs.get("settings", {})
    data = args.data or settings.get("data", "sample")
    subset = args.subset if args.subset is not None or args.data is not None else settings.get("subset")
    budget = args.budget_per_trial or settings.get("budget_per_trial")
    if budget is None:
        raise SearchError("--from-trial needs --budget-per-trial (the study records none)")
    config = TrainConfig(seed=settings.get("seed", "resnet20"), genotype=genotype, data=data, subset=subset,
                         budget_flops=budget, seed_value=args.seed_value, device=args.device)
    run_dir = out / f"from-trial-{number}-{Path(data).name}-{budget:g}"
    if run_dir.exists():
        raise SearchError(f"trial {number}'s architecture was trained in {run_dir} already (grow train --resume "
                          f"{run_dir} continues it if it stopped)")
    run = Run.open(config, run_dir, kind="train")
    display = make_display(False)
    try:
        summary = run.fit(display=display)
    finally:
        if display is not None:
            display.close()
    print(f"trial {number}'s architecture trained anew: test_acc {summary['test_acc']:.4f}, val_acc "
          f"{summary['val_acc']:.4f}, {summary['macs'] / 1e6:.3f}M MACs, widths {summary['widths']} ({run_dir})")
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


