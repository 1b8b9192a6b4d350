"""The decoded-tensor cache: where it lives, atomic writes, unreadable files ignored, and the
fingerprints (file walks, digests) that key a cache file to its source."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from search_spaces.errors import first_line

from .dataset import _Raw

log = logging.getLogger(__name__)

# Bump when the cached tensor layout or the decode policy changes, so stale
# caches are never reused.
_CACHE_VERSION = 1


def _resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("GROWTH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/growth").expanduser()


def _read_cache(path: Path) -> _Raw | None:
    if not path.is_file():
        return None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        return _Raw(
            classes=[str(c) for c in d["classes"]],
            train_x=d["train_x"],
            train_y=d["train_y"],
            test_x=d["test_x"],
            test_y=d["test_y"],
        )
    except Exception as e:  # a truncated/corrupt cache must not block loading
        log.warning("ignoring unreadable data cache %s (%s); decoding the images again", path, first_line(e, 160))
        return None


def _write_cache(path: Path, raw: _Raw, stale_glob: str | None = None) -> None:
    """Save atomically (tmp file + os.replace) and drop stale caches of the same source."""
    payload = {
        "version": _CACHE_VERSION,
        "classes": list(raw.classes),
        "train_x": raw.train_x,
        "train_y": raw.train_y,
        "test_x": raw.test_x,
        "test_y": raw.test_y,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; caches may be shared
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if stale_glob:
            for old in path.parent.glob(stale_glob):
                if old != path and old.suffix == ".pt":
                    old.unlink(missing_ok=True)
    except OSError as e:  # a read-only cache dir only costs speed, not correctness
        log.warning("could not write data cache %s (%s); continuing without it", path, first_line(e, 160))


def _walk_files(root: Path) -> list[tuple[str, int, int]]:
    """All files under ``root`` (recursive, following symlinks) as (relpath, size, mtime_ns)."""
    out: list[tuple[str, int, int]] = []

    def rec(d: str, rel: str) -> None:
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.name.startswith("."):
                continue
            r = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir():
                rec(e.path, r)
            elif e.is_file():
                st = e.stat()
                out.append((r, st.st_size, st.st_mtime_ns))

    rec(str(root), "")
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:40] or "root"
