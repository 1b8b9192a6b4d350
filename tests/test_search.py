"""``grow search``: a multi-objective Optuna study over the growth settings (growth/search.py).

The end-to-end tests run tiny studies on the shipped sample data (3e10 FLOPs a trial, a few seconds each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GROW, kill_after_first_evaluation, run_grow, start_grow, subprocess_env

STUDY = ("search", "--data", "sample", "--subset", "300", "--budget-per-trial", "3e10", "--seed", "resnet8-thin",
         "--seed-value", "0")


def _trials(out: Path) -> list:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(out / "study.log")))
    return optuna.load_study(study_name="grow-search", storage=storage).get_trials()


def test_importing_growth_or_the_search_module_does_not_import_optuna() -> None:
    code = "import growth, growth.cli, growth.search, sys; print('optuna' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_search_space_is_one_function_of_growconfig_fields() -> None:
    import optuna

    from growth.config import GrowConfig
    from growth.search import suggest

    trial = optuna.create_study(directions=["maximize", "minimize"]).ask()
    overrides = suggest(trial)
    assert set(overrides) == {"lr", "kappa", "nu", "select_frac", "growth_steps", "grow_until_frac",
                              "size_exponent", "min_growth", "deepen"}
    GrowConfig(budget_flops=1e10, **overrides).validate()


@pytest.mark.slow
def test_a_study_runs_joins_shows_and_respects_its_budget(tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = run_grow(*STUDY, "--trials", "3", "--out", "study", cwd=tmp_path, check=True)  # relative, shown below
    trials = _trials(out)                                                                 # from another directory
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for t in trials:
        summary = json.loads((out / "trials" / str(t.number) / "summary.json").read_text())
        assert t.user_attrs["summary"]["val_acc"] == summary["val_acc"] == t.values[0]
        assert "test_acc" in t.user_attrs["summary"] and t.values[1] == summary["macs"]
    assert "stopped: the study has 3 trials" in result.stdout

    again = run_grow(*STUDY, "--trials", "4", "--out", str(out), check=True)  # joins: exactly one more
    assert len(_trials(out)) == 4 and "1 trial run by this worker" in again.stdout
    capped = run_grow(*STUDY, "--trials", "9", "--budget", "1.3e11", "--out", str(out), check=True)
    assert len(_trials(out)) == 4 and "--budget 1.3e+11 reached" in capped.stdout  # 4 x 3e10 + 3e10 > 1.3e11

    shown = run_grow("search", "--show", "--out", str(out), check=True)
    assert "Pareto front" in shown.stdout and "val_acc" in shown.stdout and "MACs" in shown.stdout
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in shown.stdout.splitlines()
            if line.startswith("│")]  # trial, state, ..., widths, genotype
    assert rows and all(row[-1] == str(out / "trials" / row[0] / "genotype.json") for row in rows)
    front = [row[0] for row in rows]

    # --from-trial: the trial's final architecture trained anew (SGD, as grow train --genotype), here at the
    # study's budget and data; the architecture comes from the study itself.
    number = front[0]
    again = run_grow("search", "--from-trial", number, "--out", str(out), "--seed-value", "1", check=True)
    retrained = out / f"from-trial-{number}-sample-3e+10"
    assert f"trial {number}'s architecture trained anew" in again.stdout
    assert json.loads((retrained / "genotype.json").read_text()) == _trials(out)[int(number)].user_attrs["genotype"]
    config = json.loads((retrained / "config.json").read_text())
    assert config["kind"] == "train" and config["config"]["subset"] == 300


@pytest.mark.slow
@pytest.mark.slow
def test_two_concurrent_workers_share_one_local_study(tmp_path: Path) -> None:
    """Two processes on one journal file (one --out): unique trial numbers, exactly the requested total."""
    out = tmp_path / "shared"
    workers = [subprocess.Popen([*GROW, *STUDY, "--trials", "4", "--out", str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=subprocess_env()) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr
    trials = _trials(out)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == 4
    reported = [line.split(":")[0] for out_, _ in outputs for line in out_.splitlines() if "val_acc" in line]
    assert sorted(reported) == sorted(f"trial {t.number}" for t in done)
    assert all((out / "trials" / str(t.number) / "summary.json").is_file() for t in done)


@pytest.mark.parametrize("args, message", [
    (("--trials", "0"), "--trials: expected a positive integer"),
    (("--trials", "2", "--budget-per-trial", "0"), "'0' is zero: expected a positive number of FLOPs"),
    (("--trials", "2", "--storage", "nosuchdb://x"), "--storage nosuchdb://x: cannot open"),
    (("--trials", "2", "--budget", "1e10"), "below one trial's budget"),  # no trial could start: exit 2
    (("--trials", "2", "--seed", "nosuchseed"), "nosuchseed"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, args: tuple, message: str) -> None:
    out = tmp_path / "study"
    result = run_grow(*STUDY, *args, "--out", str(out))
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_a_trial_whose_worker_died_is_retried_and_resumes_its_run_directory(tmp_path: Path) -> None:
    # The journal file has no heartbeat: the next worker on this host sees that the trial's process is gone.
    out = tmp_path / "study"
    common = ("search", "--data", "sample", "--subset", "300", "--budget-per-trial", "6e10", "--seed",
              "resnet8-thin", "--seed-value", "0", "--out", str(out))
    args = (*common, "--trials", "1")
    worker = start_grow(*args)
    run_dir = out / "trials" / "0"
    kill_after_first_evaluation(worker, run_dir)
    assert [t.state.name for t in _trials(out)] == ["RUNNING"]

    result = run_grow(*args, check=True)
    assert f"trial 1: retries trial 0, whose worker died: resuming {run_dir}" in result.stdout
    first, retry = _trials(out)
    assert (first.state.name, retry.state.name) == ("FAIL", "COMPLETE") and retry.params == first.params
    assert retry.system_attrs["retry_history"] == [0] and retry.user_attrs["run_dir"] == str(run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["val_acc"] == retry.values[0]
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0"]
    # The dead trial and its retry are one trial's compute against --budget: 6e10, not 1.2e11.
    more = run_grow(*common, "--trials", "5", "--budget", "1.1e11", check=True)
    assert "stopped: --budget 1.1e+11 reached: 6e+10 FLOPs started" in more.stdout


def test_a_live_worker_is_told_from_a_dead_one() -> None:
    from growth.search import worker_alive, worker_id

    me = worker_id()
    assert worker_alive(me) and worker_alive({**me, "host": "another-host", "pid": 1 << 30})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not worker_alive({**me, "pid": dead.pid, "start": "0"})
    if me["start"] is not None:  # Linux: a reused process id is not the dead worker
        assert not worker_alive({**me, "start": str(int(me["start"]) - 1)})


@pytest.mark.slow
def test_show_of_an_unknown_study_or_a_missing_journal_is_exit_2(tmp_path: Path) -> None:
    missing = run_grow("search", "--show", "--out", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert not (tmp_path / "nothing").exists()
    db = tmp_path / "s.db"
    import optuna

    optuna.create_study(storage=f"sqlite:///{db}", study_name="other", directions=["maximize", "minimize"])
    before = sorted(p.name for p in tmp_path.iterdir())
    unknown = run_grow("search", "--show", "--storage", f"sqlite:///{db}", "--study", "nope",
                       "--out", str(tmp_path / "plots"))
    assert unknown.returncode == 2 and "no study named 'nope'" in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1 and sorted(p.name for p in tmp_path.iterdir()) == before
    for trial, message in (("7", "study other has no trial 7"), ("0", "trial 0 is running: no final architecture")):
        if trial == "0":
            study = optuna.load_study(study_name="other", storage=f"sqlite:///{db}")
            study.ask()
        retrain = run_grow("search", "--from-trial", trial, "--storage", f"sqlite:///{db}", "--study", "other",
                           "--out", str(tmp_path / "retrain"))
        assert retrain.returncode == 2 and message in retrain.stderr and len(retrain.stderr.splitlines()) == 1
        assert not (tmp_path / "retrain").exists()
