"""``grow search``: a multi-objective Optuna study over the growth settings (growth/search.py).

The end-to-end tests run tiny studies on the shipped sample data (3e10 FLOPs a trial, a few seconds each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_grow

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
    result = run_grow(*STUDY, "--trials", "3", "--out", str(out), check=True)
    trials = _trials(out)
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


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("--trials", "0"), "--trials: expected a positive integer"),
    (("--trials", "2", "--budget-per-trial", "0"), "budget must be a positive number"),
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
