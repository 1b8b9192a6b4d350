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
line by line; a torn last line is dropped on resume, as are lines newer than the checkpoint. A write
that fails (a full disk, a read-only directory) is a one-line :class:`RunError` that keeps the previous
version of the file: the run stays resumable from its last checkpoint.

One process at a time: a process that creates or resumes a run holds an advisory lock (``flock``) on
its directory until it exits, so a second ``grow`` given the same ``--out`` or ``--resume`` is refused
instead of interleaving its checkpoints with the first's. The lock is a property of the open
directory, not a file in it: a killed process leaves nothing behind to clean up.

A resumed run may change only the settings in :data:`RESUME_SETTINGS` (``grow --resume DIR --override
lr=0.05``): they steer the rest of the run without changing what the checkpoint's steps meant.

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
import secrets
import weakref
from pathlib import Path
from typing import Any, Callable

from search_spaces.errors import GrowthError

CHECKPOINT = "checkpoint.pt"

#: Settings a resumed run may change (``grow --resume DIR --override KEY=VALUE``): the learning-rate schedule,
#: the batch size, the precision, compilation, how often to evaluate and checkpoint, and whether to write
#: TensorBoard events. Each is read afresh at every step (compilation and TensorBoard: at the resumed session's
#: first), so the change takes effect at once; none changes what the checkpoint's steps were (the seed, data,
#: budget, optimizer, growth rule and random seed stay those of the run).
RESUME_SETTINGS = ("lr", "warmup_frac", "schedule", "decay_start_frac", "batch_size", "precision", "compile",
                   "eval_every_frac", "checkpoint_every_s", "tensorboard")


class RunError(GrowthError, ValueError):
    """A run directory that cannot be created, resumed or read; the message is one line."""


def _create_temp(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, opened for writing, with the mode a plain ``open(path, "w")``
    would give: an existing file's mode where there is one, else 0666 less the umask (``mkstemp`` makes
    0600, which would hide every run file from the user's group and other users)."""
    try:
        keep: int | None = os.stat(path).st_mode & 0o7777
    except OSError:
        keep = None
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            # 0666: the kernel takes the umask off, as for open()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        if keep is not None and hasattr(os, "fchmod"):
            try:
                os.fchmod(fd, keep)  # an existing file's mode, whatever the umask
            except BaseException:
                os.close(fd)
                Path(tmp).unlink(missing_ok=True)
                raise
        return fd, tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, flushed to disk, renamed over it.
    The file gets the mode ``open()`` would give it (0644 under the usual umask 022; an existing file keeps
    its mode)."""
    path = Path(path)
    fd, tmp = _create_temp(path)
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


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


# Run directories this process holds locked: real path -> [descriptor, number of RunStores using it].
# Reopening a directory in the same process (a resume after a run, a bench's cells) shares the lock.
_LOCKS: dict[str, list[int]] = {}


def _lock(path: Path) -> str | None:
    """Lock run directory ``path`` for this process (RunError if another process holds it); the key to
    :func:`_unlock`, or None where advisory locks do not exist (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    key = os.path.realpath(path)
    if key in _LOCKS:
        _LOCKS[key][1] += 1
        return key
    try:
        fd = os.open(key, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        raise RunError(f"cannot open run directory {path}: {_reason(err)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunError(f"{path} is in use by another grow process (one run directory, one process): wait for "
                       "it to end, or choose another --out") from None
    _LOCKS[key] = [fd, 1]
    return key


def _unlock(key: str | None) -> None:
    if key is None or key not in _LOCKS:
        return
    _LOCKS[key][1] -= 1
    if _LOCKS[key][1] <= 0:
        os.close(_LOCKS.pop(key)[0])  # closing the descriptor releases the lock


class RunStore:
    """The files of one run directory. :meth:`create` and :meth:`open` also lock the directory for this
    process (see the module's docstring); a plain ``RunStore(path)`` only reads and writes files."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _hold_lock(self) -> None:
        key = _lock(self.path)
        weakref.finalize(self, _unlock, key)  # released when the store is gone (or the process ends)

    # -- creating and opening -----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], config: dict[str, Any]) -> RunStore:
        """A new run at ``path``; refuses an existing non-empty directory (nothing is overwritten) and a
        directory another process is using. Nothing is left behind when the config cannot be written."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunError(f"{path} is a file, not a directory; choose another --out")
        if path.is_dir():
            _unlock(_lock(path))  # a run in progress there is reported as such, not as a finished one
            if any(path.iterdir()):
                if (path / CHECKPOINT).exists():
                    raise RunError(f"{path} already holds a run; continue it with --resume {path}")
                raise RunError(f"{path} exists and is not empty; choose another --out")
        created = [p for p in (path, *path.parents) if not p.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunError(f"cannot create run directory {path}: {_reason(err)}") from None
        store = cls(path)
        store._hold_lock()
        if any(path.iterdir()):  # another process got here between the check above and the lock
            raise RunError(f"{path} was filled by another process meanwhile; choose another --out")
        try:
            atomic_write_json(path / "config.json", config)
        except OSError as err:
            for directory in created:  # the directories made here, deepest first, if still empty
                try:
                    directory.rmdir()
                except OSError:
                    break
            raise RunError(f"cannot write the run's config in {path}: {_reason(err)}") from None
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunStore:
        """An existing run to resume; it must have a config and a checkpoint, and no other process may be
        running it."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunError(f"{path} is a file, not a run directory")
        if not path.is_dir():
            raise RunError(f"no run directory at {path}")
        for name in ("config.json", CHECKPOINT):
            if not (path / name).is_file():
                raise RunError(f"{path} is not a resumable run: {name} is missing")
        store = cls(path)
        store._hold_lock()
        return store

    # -- files ----------------------------------------------------------------------------------------

    def write_failed(self, name: str, err: OSError) -> RunError:
        """The one-line error of a write of the run's file ``name`` that failed with ``err``."""
        return RunError(f"cannot write {self.path / name} ({_reason(err)}: disk full or read-only?): the files "
                        f"already in {self.path} are kept; continue with --resume {self.path} once it can be "
                        "written")

    def write_json(self, name: str, obj: Any) -> None:
        try:
            atomic_write_json(self.path / name, obj)
        except OSError as err:
            raise self.write_failed(name, err) from None

    def read_json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunError(f"cannot read {self.path / name}: {err}") from None

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        try:
            with open(self.path / name, "a") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
        except OSError as err:  # a torn last line is dropped on resume
            raise self.write_failed(name, err) from None

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
        text = "".join(json.dumps(r) + "\n" for r in records).encode()
        if text == (self.path / name).read_bytes():
            return  # nothing to drop: the file is left untouched
        try:
            atomic_write_bytes(self.path / name, text)
        except OSError as err:
            raise self.write_failed(name, err) from None

    # -- tensors --------------------------------------------------------------------------------------

    def save_torch(self, name: str, obj: Any) -> None:
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        try:
            atomic_write_bytes(self.path / name, buffer.getvalue())
        except OSError as err:
            raise self.write_failed(name, err) from None

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
