"""``grow search`` on a real PostgreSQL server: concurrent workers, and a killed worker's trial retried.

The module's fixture starts a throwaway server on loopback with ``scripts/postgres.py`` (which installs one
where there is none: Debian's binaries if present, else the ``pgserver`` wheel from PyPI, else apt-get as
root) and stops it at the end. Where no server can be started the tests skip with the reason, except under
CI (``CI`` set), where that is a failure: CI must exercise the database path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import GROW, kill_after_first_evaluation, run_grow, subprocess_env

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.py"
TRIAL = ("search", "--data", "sample", "--subset", "300", "--seed", "resnet8-thin", "--seed-value", "0")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must start PostgreSQL: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's driver for postgresql:// URLs)
    except ImportError:
        _unavailable("psycopg is not installed (it is in the test extra: pip install -e '.[test]')")
    started = subprocess.run([sys.executable, str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        _unavailable(f"no PostgreSQL server could be started: {started.stderr.strip()}")
    server = json.loads(started.stdout)
    try:
        # The driver named: SQLAlchemy before 2.1 would take psycopg2 for a plain postgresql:// URL.
        yield server["url"].replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        subprocess.run([sys.executable, str(SCRIPT), "stop", server["dir"]], capture_output=True, timeout=120)


def _study(url: str, name: str) -> list:
    import optuna

    return optuna.load_study(study_name=name, storage=url).get_trials()


@pytest.mark.slow
def test_two_workers_share_one_study_without_losing_or_duplicating_a_trial(postgres_url: str,
                                                                          tmp_path: Path) -> None:
    # Two workers as on two machines: the same study in the database, each its own directory.
    workers = [subprocess.Popen([*GROW, *TRIAL, "--budget-per-trial", "3e10", "--trials", "3", "--storage",
                                 postgres_url, "--study", "two-workers", "--out", str(tmp_path / f"w{i}")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
               for i in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr
    trials = _study(postgres_url, "two-workers")
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == 3 and all(t.user_attrs["skipped"] for t in trials if t not in done)
    # Every finished trial ran once, in one worker's directory, and the study holds what that run wrote.
    reported = [line.split(":")[0] for out, _ in outputs for line in out.splitlines() if "val_acc" in line]
    assert sorted(reported) == sorted(f"trial {t.number}" for t in done)
    for t in done:
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert t.values == [summary["val_acc"], summary["macs"]]
    assert {Path(t.user_attrs["run_dir"]).parent.parent.name for t in done} <= {"w0", "w1"}


@pytest.mark.slow
def test_a_worker_killed_mid_trial_has_its_trial_retried_through_the_heartbeat(postgres_url: str,
                                                                              tmp_path: Path) -> None:
    args = (*TRIAL, "--budget-per-trial", "6e10", "--trials", "1", "--storage", postgres_url, "--study", "killed",
            "--heartbeat", "1", "--out", str(tmp_path / "study"))
    worker = subprocess.Popen([*GROW, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=subprocess_env())
    run_dir = tmp_path / "study" / "trials" / "0"
    kill_after_first_evaluation(worker, run_dir)
    [dead] = _study(postgres_url, "killed")
    assert dead.state.name == "RUNNING"  # as the database saw it: nobody told it otherwise
    time.sleep(2.5)  # the grace period (2 x --heartbeat) runs out

    result = run_grow(*args, check=True)
    assert f"trial 1: retries trial 0, whose worker died: resuming {run_dir}" in result.stdout
    first, retry = _study(postgres_url, "killed")
    assert first.state.name == "FAIL" and retry.state.name == "COMPLETE"
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == first.params
    assert retry.user_attrs["run_dir"] == str(run_dir) and not (run_dir.parent / "1").exists()
    assert json.loads((run_dir / "summary.json").read_text())["val_acc"] == retry.values[0]
    assert "1 trial run by this worker; stopped: the study has 1 trials" in result.stdout
