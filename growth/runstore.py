"""The run store: one directory per run, every file written so that a crash never corrupts it.

Layout of a run directory::

    config.json       resolved configuration, package versions, git commit
    metrics.jsonl     one line per evaluation
    growth.jsonl      one line per growth event (growth runs)
    checkpoint.pt     everything needed to resume (genotype, state_dicts, RNG streams, ledger)
    genotype.json     the final architecture
    weights.pt        the final state_dict (load with ``torch.load(..., weights_only=True)``)
    summary.json      accuracy, params, MACs, training FLOPs, wall time

JSON files and checkpoints are written to a temporary file, flushed to disk and renamed over the old
one, so a SIGKILL at any moment leaves either the old or the new version. JSONL files are appended
line by line; a torn last line is dropped on resume, as are lines newer than the checkpoint.

Example:
    >>> import tempfile
    >>> store = RunStore.create(tempfile.mkdtemp() + "/run", {"seed": "resnet8-thin"})
    >>> store.append_jsonl("metrics.jsonl", {"step": 1, "val_acc": 0.5})
    >>> store.read_jsonl("metrics.jsonl")
    [{'step': 1, 'val_acc': 0.5}]
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from search_spaces.errors import GrowthError

CHECKPOINT = "checkpoint.pt"


class RunError(GrowthError, ValueError):
    """A run directory that cannot be created, resumed or read; the message is one line."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


class RunStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # -- creating and opening -----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], config: dict[str, Any]) -> RunStore:
        """A new run at ``path``; refuses an existing non-empty directory (nothing is overwritten)."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if (path / CHECKPOINT).exists():
                raise RunError(f"{path} already holds a run; continue it with --resume {path}")
            raise RunError(f"{path} exists and is not empty; choose another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunError(f"cannot create run directory {path}: {err.strerror}") from None
        store = cls(path)
        store.write_json("config.json", config)
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunStore:
        """An existing run to resume; it must have a config and a checkpoint."""
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"no run directory at {path}")
        for name in ("config.json", CHECKPOINT):
            if not (path / name).is_file():
                raise RunError(f"{path} is not a resumable run: {name} is missing")
        return cls(path)

    # -- files ----------------------------------------------------------------------------------------

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def read_json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunError(f"cannot read {self.path / name}: {err}") from None

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        with open(self.path / name, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        path = self.path / name
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line torn by a crash: it and anything after it is dropped
        return records

    def rewind_jsonl(self, name: str, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Keep only the records ``keep`` accepts (used on resume to drop post-checkpoint lines)."""
        if not (self.path / name).exists():
            return  # nothing to rewind; do not create an empty file
        records = [r for r in self.read_jsonl(name) if keep(r)]
        atomic_write_bytes(self.path / name, "".join(json.dumps(r) + "\n" for r in records).encode())

    # -- tensors --------------------------------------------------------------------------------------

    def save_torch(self, name: str, obj: Any) -> None:
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        atomic_write_bytes(self.path / name, buffer.getvalue())

    def load_torch(self, name: str, map_location: Any = "cpu") -> Any:
        import torch

        path = self.path / name
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise RunError(f"{path} is missing") from None
        except Exception as err:  # torch raises many types for a corrupt or foreign file
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RunError(f"cannot load {path}: corrupt or not a checkpoint ({reason[:120]})") from None
