"""How every run starts: :class:`Run` validates the inputs, creates (or reopens) the run directory with
its config and metadata, loads the data and hands a :class:`~growth.trainer.Trainer` the seed model
(or the checkpoint); :func:`train` is a fixed architecture trained to the budget.

A resume trusts nothing on disk: the saved config must be a config of this version with settings a run
can use (and config.json no key grow does not write: :data:`CONFIG_FILE_KEYS`), and the checkpoint must
be this run's (its format, budget, training images, random seed and, for a fixed architecture, its
genotype), else one-line :class:`~growth.runstore.RunError`. A resume may
change the settings in :data:`~growth.runstore.RESUME_SETTINGS` (``overrides``, ``grow --resume DIR
--override lr=0.05``); each change is recorded in config.json's ``overrides`` list (when, at which step,
from what to what), and the changed config is what a later resume continues with. A resumed run that had
finished (its ``summary.json`` written) is :attr:`Run.finished`: it is not trained again, and nothing in its
directory is written.

Example:
    >>> from growth.config import TrainConfig
    >>> cfg = TrainConfig(seed="resnet8-thin", data="sample", budget_flops=2e11, subset=512)
    >>> summary = train(cfg, out="/tmp/doc-run", display=None)    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search_spaces.errors import first_line

from . import distributed
from .config import ConfigError, TrainConfig
from .data import Dataset, load_dataset
from .device import check_compile, resolve_device
from .runstore import CHECKPOINT, RESUME_SETTINGS, RunError, RunStore
from .trainer import Controller, Display, Recorder, Trainer

CHECKPOINT_FORMAT = 1  # the "format" that growth.trainer writes into every checkpoint


def run_metadata() -> dict[str, Any]:
    """Package versions and git commit, recorded in config.json."""
    import importlib.metadata as md
    import platform
    import subprocess

    versions: dict[str, str] = {}
    for pkg in ("torch", "torchvision", "timm", "optuna", "networkx", "rich", "tensorboard", "growth-automl"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "git_commit": commit, "python": platform.python_version(),
            "threads": torch.get_num_threads()}


def default_run_dir(seed: str) -> Path:
    """``runs/<date>-<time>-<seed>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{seed.replace(':', '-').replace('/', '-')}"


#: A new run whose ETA on its device (at the seed's measured rate) exceeds this is refused.
MAX_ETA_S = 365 * 86400
#: Below this budget no device trains for a year: the throughput probe is skipped.
PROBE_ETA_FROM_FLOPS = 3e15


def _check_inputs(config: TrainConfig, data: Dataset) -> None:
    """Raise ConfigError / UnknownSeedError for a seed or genotype that does not fit ``data``, a data set or
    budget too small for one step, or a budget this device would take more than a year to spend."""
    from search_spaces import genotype_from_dict, get_genotype

    from .compute import measure_cost, measure_train_rate
    from .display import format_duration

    genotype = get_genotype(config.seed, num_classes=data.num_classes, in_chans=data.in_chans)
    if config.genotype is not None:
        genotype = genotype_from_dict(config.genotype)
        if (genotype.in_chans, genotype.num_classes) != (data.in_chans, data.num_classes):
            raise ConfigError(f"the genotype takes {genotype.in_chans}-channel images and {genotype.num_classes} "
                              f"classes; {config.data} has {data.in_chans} and {data.num_classes}")
    if len(data.train_y) < 2:
        raise ConfigError(f"{len(data.train_y)} training image: a step needs 2 (BatchNorm); use a larger --subset")
    shape = (data.in_chans, *data.train_x.shape[2:])
    step_flops = 2 * measure_cost(genotype, shape).train_flops_per_sample
    if config.budget_flops < step_flops:
        raise ConfigError(f"--budget {config.budget_flops:g} buys no training step: the smallest (2 images) of "
                          f"{config.seed} costs {step_flops:.3g} FLOPs")
    if config.budget_flops >= PROBE_ETA_FROM_FLOPS:
        rate = measure_train_rate(genotype, shape, min(config.batch_size, len(data.train_y)), config.device)
        seconds, rate = distributed.from_main((config.budget_flops / rate, rate))  # one decision for all ranks
        if seconds > MAX_ETA_S:
            raise ConfigError(f"--budget {config.budget_flops:g} would take {format_duration(seconds)} on "
                              f"{config.device} (the seed trains at {rate:.3g} FLOP/s here): more than a year; "
                              "see `grow plan`, and run it on a GPU")


def _check_settings(config: TrainConfig) -> None:
    """Raise :class:`ConfigError` (one line) for settings the training loop could not run with, wherever
    they come from (the command line, a saved config.json, an override): the config's own checks, then
    what needs the run's surroundings (the number of processes) or the optimizer would refuse only once
    training has started."""
    from torch import nn

    from .optim import make_optimizer

    config.validate()
    if config.batch_size % distributed.world_size():
        raise ConfigError(f"the batch size ({config.batch_size}) must be divisible by the number of processes "
                          f"({distributed.world_size()}): each trains on an equal share of every batch")
    probe = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    try:
        make_optimizer(config, probe)
    except ValueError as err:  # torch's SGD and DessiLBI check their hyperparameters when built
        raise ConfigError(f"optimizer settings refused: {first_line(err)}") from None


def _check_tensorboard(config: TrainConfig, remedy: str) -> None:
    """Raise :class:`ConfigError` when the run is to write TensorBoard events and cannot (no tensorboard)."""
    if config.tensorboard:
        from .tensorboard_log import tensorboard_missing

        missing = tensorboard_missing()
        if missing is not None:
            raise ConfigError(f"--tensorboard: {missing}, {remedy}")


#: The top-level keys of a run's config.json: what :meth:`Run.open` writes (its kind, the config,
#: :func:`run_metadata`) and the ``overrides`` a resume records. A resume refuses any other key.
CONFIG_FILE_KEYS = ("kind", "config", "versions", "git_commit", "python", "threads", "overrides")


def _read_saved_config(store: RunStore, cls: type[TrainConfig], kind: str) -> tuple[dict[str, Any], TrainConfig]:
    """config.json of the run in ``store`` and the config it holds, checked as a new run's would be."""
    where = store.path / "config.json"
    saved = store.read_json("config.json")
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise RunError(f"{where} has no 'config' settings: not written by grow, or damaged")
    unknown = [key for key in saved if key not in CONFIG_FILE_KEYS]
    if unknown:  # a key grow does not write: hand-edited (a setting put beside "config", not in it?) or another version
        raise RunError(f"{where} holds {'an unknown key' if len(unknown) == 1 else 'unknown keys'} "
                       f"{', '.join(repr(k) for k in unknown)} (grow writes only {', '.join(CONFIG_FILE_KEYS)}; "
                       "settings belong under 'config'): hand-edited, or written by another version?")
    if saved.get("kind", "train") != kind:
        raise RunError(f"{store.path} is a {saved.get('kind')} run; resume it with the matching command")
    try:
        config = cls.from_dict(saved["config"])
        _check_settings(config)
    except ConfigError as err:
        raise RunError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:  # a setting of the wrong type (hand-edited?)
        raise RunError(f"{where} holds a setting grow cannot use ({first_line(err, 160)})") from None
    if config.seed_value is None:
        raise RunError(f"{where} has no random seed (seed_value): not a run grow started")
    return saved, config


def _apply_overrides(config: TrainConfig, overrides: Mapping[str, Any], where: Path) -> dict[str, Any]:
    """Set ``overrides`` on ``config`` (only :data:`RESUME_SETTINGS` that are options of its class);
    returns ``{setting: {"from": old, "to": new}}`` for the ones that change."""
    options = {f.name for f in dataclasses.fields(config) if f.metadata.get("cli", True)}
    changed: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in RESUME_SETTINGS or name not in options:
            allowed = ", ".join(s for s in RESUME_SETTINGS if s in options)
            raise RunError(f"a resumed run keeps its {name} (changing it would change what the steps already "
                           f"trained mean); a resume can change only {allowed}")
        old = getattr(config, name)
        if value != old:
            setattr(config, name, value)
            changed[name] = {"from": old, "to": value}
    try:
        _check_settings(config)
    except ConfigError as err:
        raise RunError(f"--override for {where}: {err}") from None
    return changed


def _check_checkpoint(state: Any, config: TrainConfig, data: Dataset, kind: str, path: Path) -> None:
    """Raise RunError unless ``state`` is a checkpoint of this version and of the run ``config`` describes
    (a checkpoint copied from another run would otherwise continue silently as this one)."""
    from search_spaces import genotype_from_dict, genotype_to_dict, get_genotype

    if not isinstance(state, dict) or "format" not in state:
        raise RunError(f"{path} is not a grow checkpoint")
    if state["format"] != CHECKPOINT_FORMAT:
        raise RunError(f"{path} was written by another version of grow (checkpoint format {state['format']}, this "
                       f"version reads {CHECKPOINT_FORMAT})")
    try:
        budget = state["ledger"]["budget_flops"]
        images = len(state["permutation"])
        order_gen = torch.Generator()
        order_gen.set_state(state["order_gen"])
        genotype = genotype_from_dict(state["genotype"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise RunError(f"{path} is damaged or not a grow checkpoint ({first_line(err, 120)})") from None
    mismatch = []
    if budget != config.budget_flops:
        mismatch.append(f"budget {budget:g} FLOPs, this run's {config.budget_flops:g}")
    if images != len(data.train_y):
        mismatch.append(f"{images} training images, this run has {len(data.train_y)}")
    if order_gen.initial_seed() != config.seed_value:
        mismatch.append(f"random seed {order_gen.initial_seed()}, this run's {config.seed_value}")
    if (genotype.in_chans, genotype.num_classes) != (data.in_chans, data.num_classes):
        mismatch.append(f"{genotype.num_classes} classes of {genotype.in_chans}-channel images, the data have "
                        f"{data.num_classes} of {data.in_chans}")
    elif kind == "train":  # a fixed architecture: the checkpoint's is the run's
        own = config.genotype if config.genotype is not None else genotype_to_dict(
            get_genotype(config.seed, num_classes=data.num_classes, in_chans=data.in_chans))
        if genotype_to_dict(genotype) != own:
            mismatch.append(f"another architecture than this run's {config.seed}")
    if mismatch:
        raise RunError(f"{path} is another run's checkpoint ({'; '.join(mismatch)}): resume the run it belongs to")


@dataclass
class Run:
    """One run: its config, its directory, its data, and whether it continues from a checkpoint.

    The one way every command starts (``grow``, ``grow train``, each ``grow bench`` cell)::

        run = Run.open(config, out="runs/x")            # or Run.open(config, resume="runs/x")
        summary = run.fit(controller=None, display=None)
    """

    config: TrainConfig
    store: RunStore
    data: Dataset
    resuming: bool
    #: A resumed run that had already finished (its summary.json written): :meth:`fit` returns that summary
    #: and writes nothing.
    finished: bool = False

    @classmethod
    def open(cls, config: TrainConfig, out: str | os.PathLike[str] | None = None,
             resume: str | os.PathLike[str] | None = None, kind: str = "train",
             overrides: Mapping[str, Any] | None = None) -> Run:
        """Validate and create the run directory (or reopen ``resume``, whose saved config wins, changed by
        ``overrides``: settings in :data:`~growth.runstore.RESUME_SETTINGS`, recorded in config.json).

        Every input is checked before anything is written: a bad input leaves nothing behind.
        """
        from search_spaces import get_genotype

        distributed.setup()  # under torchrun: join the process group (nothing in a single process)
        if resume is not None:
            return cls._reopen(type(config), resume, kind, overrides or {})
        if overrides:
            raise RunError("settings can be overridden only when resuming a run (a new run takes them as options)")
        _check_settings(config)
        _check_tensorboard(config, "or run with --no-tensorboard")
        check_compile(config.compile, resolve_device(config.device))
        get_genotype(config.seed)  # an unknown seed is reported before the data are read
        data = _load_data(config)
        _check_inputs(config, data)
        if config.seed_value is None:
            config.seed_value = distributed.from_main(random.SystemRandom().randrange(2**31))
        store = _shared_store(lambda: RunStore.create(out or default_run_dir(config.seed),
                                                      {"kind": kind, "config": config.to_dict(), **run_metadata()}))
        return cls(config, store, data, False)

    @classmethod
    def _reopen(cls, config_class: type[TrainConfig], resume: str | os.PathLike[str], kind: str,
                overrides: Mapping[str, Any]) -> Run:
        store = _shared_store(lambda: RunStore.open(resume))
        saved, config = _read_saved_config(store, config_class, kind)
        changed = _apply_overrides(config, overrides, store.path) if overrides else {}
        check_compile(config.compile, resolve_device(config.device), remedy="resume with --override compile=false")
        data = _load_data(config)
        state = store.load_torch(CHECKPOINT)
        _check_checkpoint(state, config, data, kind, store.path / CHECKPOINT)
        finished = (store.path / "summary.json").exists()
        if not finished:
            _check_tensorboard(config, "or resume with --override tensorboard=false")
        if changed:
            if finished:
                raise RunError(f"{store.path} is finished (its budget is spent): --override would change nothing")
            record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "step": state.get("loop", {}).get("step"),
                      "settings": changed}
            saved = {**saved, "config": config.to_dict(), "overrides": [*saved.get("overrides", []), record]}
            store.write_json("config.json", saved)
        return cls(config, store, data, True, finished)

    def trainer(self, controller: Controller | None = None, display: Display | None = None) -> Trainer:
        """The seed model (or the genotype) on its device; on resume, the checkpoint restored."""
        from search_spaces import build_model, create_model, genotype_from_dict

        config, data = self.config, self.data
        device = distributed.local_device(resolve_device(config.device))
        torch.manual_seed(config.seed_value)
        if config.genotype is not None:
            model = build_model(genotype_from_dict(config.genotype))
        else:
            model = create_model(config.seed, num_classes=data.num_classes, in_chans=data.in_chans)
        recorders: list[Recorder] = []
        if config.tensorboard and distributed.is_main():  # under torchrun rank 0 writes the run directory
            from .tensorboard_log import TensorBoardLog

            recorders.append(TensorBoardLog(self.store))
        trainer = Trainer(config, data, model, self.store, device, controller=controller, display=display,
                          recorders=recorders)
        if self.resuming:
            trainer.load_checkpoint()
        else:
            trainer.save_checkpoint()  # a run is resumable from its first moment
        return trainer

    def fit(self, controller: Controller | None = None, display: Display | None = None) -> dict[str, Any]:
        """Train to the budget; returns the summary (also written to summary.json). A finished run is not
        trained again: its summary.json is returned, and nothing in its directory changes."""
        if self.finished:
            summary: dict[str, Any] = self.store.read_json("summary.json")
            return summary
        return self.trainer(controller, display).fit()


class _FollowerStore(RunStore):
    """The run directory as the ranks other than 0 see it under torchrun: read, never written."""

    def write_json(self, name: str, obj: Any) -> None:
        pass

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        pass

    def rewind_jsonl(self, name: str, keep: Any) -> None:
        pass

    def save_torch(self, name: str, obj: Any) -> None:
        pass


def _shared_store(make: Any) -> RunStore:
    """``make()`` (create or open the run directory) on rank 0 only; the other ranks get its path, read-only
    (:class:`_FollowerStore`), or rank 0's error. In a single process: ``make()``."""
    store = distributed.main_does(make)
    path = distributed.from_main("" if store is None else str(store.path))
    return store if store is not None else _FollowerStore(path)


def _load_data(config: TrainConfig) -> Dataset:
    # One validation split per dataset (split_seed 0), whatever the run's seed.
    return load_dataset(config.data, val_size=config.val_size, subset=config.subset, split_seed=0)


def train(config: TrainConfig, out: str | os.PathLike[str] | None = None, resume: str | os.PathLike[str] | None = None,
          display: Display | None = None) -> dict[str, Any]:
    """Train a fixed architecture to the budget; returns the summary (also in summary.json)."""
    return Run.open(config, out, resume, kind="train").fit(display=display)
