"""Tests for growth.runstore: how run files are written (atomically, with the mode a plain open() gives)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from growth.runstore import RunStore, atomic_write_bytes


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process's umask after a test that sets it."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_run_files_get_the_mode_open_gives_them(tmp_path: Path, umask: None, mask: int) -> None:
    # mkstemp made every run file 0600 whatever the umask: unreadable by the group a run is shared with
    os.umask(mask)
    atomic_write_bytes(tmp_path / "weights.pt", b"\x00" * 16)
    store = RunStore(tmp_path)
    store.write_json("summary.json", {"test_acc": 0.5})
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("as open() makes it\n")
    expected = 0o666 & ~mask
    assert _mode(tmp_path / "plain.txt") == expected
    assert _mode(tmp_path / "weights.pt") == _mode(tmp_path / "summary.json") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "summary.json", "weights.pt"]  # no temp


def test_a_rewritten_file_keeps_its_mode(tmp_path: Path, umask: None) -> None:
    path = tmp_path / "config.json"
    atomic_write_bytes(path, b"{}\n")
    assert _mode(path) == 0o644
    path.chmod(0o640)  # as open(path, "w") on an existing file, its mode stays
    atomic_write_bytes(path, b'{"kind": "train"}\n')
    assert _mode(path) == 0o640 and path.read_bytes() == b'{"kind": "train"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
