"""How every run starts: :class:`Run` validates the inputs, creates (or reopens) the run directory with
its config and metadata, loads the data and hands a :class:`~growth.trainer.Trainer` the seed model
(or the checkpoint); :func:`train` is a fixed architecture trained to the budget.

Example:
    >>> from growth.config import TrainConfig
    >>> cfg = TrainConfig(seed="resnet8-thin", data="sample", budget_flops=2e11, subset=512)
    >>> summary = train(cfg, out="/tmp/doc-run", display=None)    # doctest: +SKIP
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, TrainConfig
from .data import Dataset, load_dataset
from .device import resolve_device
from .runstore import RunError, RunStore
from .trainer import Controller, Display, Trainer


def run_metadata() -> dict[str, Any]:
    """Package versions and git commit, recorded in config.json."""
    import importlib.metadata as md
    import platform
    import subprocess

    versions: dict[str, str] = {}
    for pkg in ("torch", "torchvision", "timm", "optuna", "networkx", "rich", "growth-automl"):
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


def _check_inputs(config: TrainConfig, data: Dataset) -> None:
    """Raise ConfigError / UnknownSeedError for a seed or genotype that does not fit ``data``."""
    from search_spaces import genotype_from_dict, get_genotype

    get_genotype(config.seed, num_classes=data.num_classes, in_chans=data.in_chans)
    if config.genotype is not None:
        genotype = genotype_from_dict(config.genotype)
        if (genotype.in_chans, genotype.num_classes) != (data.in_chans, data.num_classes):
            raise ConfigError(f"the genotype takes {genotype.in_chans}-channel images and {genotype.num_classes} "
                              f"classes; {config.data} has {data.in_chans} and {data.num_classes}")


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

    @classmethod
    def open(cls, config: TrainConfig, out: str | os.PathLike[str] | None = None,
             resume: str | os.PathLike[str] | None = None, kind: str = "train") -> Run:
        """Validate and create the run directory (or reopen ``resume``, whose saved config wins).

        Every input is checked before anything is written: a bad input leaves nothing behind.
        """
        from search_spaces import get_genotype

        if resume is not None:
            store = RunStore.open(resume)
            saved = store.read_json("config.json")
            if saved.get("kind", "train") != kind:
                raise RunError(f"{resume} is a {saved.get('kind')} run; resume it with the matching command")
            config = type(config).from_dict(saved["config"])
            return cls(config, store, _load_data(config), True)
        config.validate()
        resolve_device(config.device)
        get_genotype(config.seed)  # an unknown seed is reported before the data are read
        data = _load_data(config)
        _check_inputs(config, data)
        if config.seed_value is None:
            config.seed_value = random.SystemRandom().randrange(2**31)
        store = RunStore.create(out or default_run_dir(config.seed),
                                {"kind": kind, "config": config.to_dict(), **run_metadata()})
        return cls(config, store, data, False)

    def trainer(self, controller: Controller | None = None, display: Display | None = None) -> Trainer:
        """The seed model (or the genotype) on its device; on resume, the checkpoint restored."""
        from search_spaces import build_model, create_model, genotype_from_dict

        config, data = self.config, self.data
        device = resolve_device(config.device)
        torch.manual_seed(config.seed_value)
        if config.genotype is not None:
            model = build_model(genotype_from_dict(config.genotype))
        else:
            model = create_model(config.seed, num_classes=data.num_classes, in_chans=data.in_chans)
        trainer = Trainer(config, data, model, self.store, device, controller=controller, display=display)
        if self.resuming:
            trainer.load_checkpoint()
        else:
            trainer.save_checkpoint()  # a run is resumable from its first moment
        return trainer

    def fit(self, controller: Controller | None = None, display: Display | None = None) -> dict[str, Any]:
        """Train to the budget; returns the summary (also written to summary.json)."""
        return self.trainer(controller, display).fit()


def _load_data(config: TrainConfig) -> Dataset:
    # One validation split per dataset (split_seed 0), whatever the run's seed.
    return load_dataset(config.data, val_size=config.val_size, subset=config.subset, split_seed=0)


def train(config: TrainConfig, out: str | os.PathLike[str] | None = None, resume: str | os.PathLike[str] | None = None,
          display: Display | None = None) -> dict[str, Any]:
    """Train a fixed architecture to the budget; returns the summary (also in summary.json)."""
    return Run.open(config, out, resume, kind="train").fit(display=display)
