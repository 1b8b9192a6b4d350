"""Tests for the ``grow`` command line, run as a subprocess: every bad input is one line on stderr,
exit code 2, no traceback, and nothing on disk changed."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_grow, snapshot, subprocess_env

import search_spaces

# Each test starts the command in a fresh interpreter (seconds each): the whole module is the slow lane.
pytestmark = pytest.mark.slow


def grow(*args: str, cwd: Path, cache: Path | None = None) -> subprocess.CompletedProcess:
    return run_grow(*args, cwd=cwd, timeout=300, **({"GROWTH_DATA_DIR": str(cache)} if cache else {}))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """An empty working directory (the default run directory would appear under its runs/)."""
    work = tmp_path / "ws"
    (work / "cache").mkdir(parents=True)
    return work


def assert_usage_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("grow: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def run_failing(ws: Path, *args: str, needles: tuple[str, ...] = ()) -> str:
    before = snapshot(ws)
    result = grow(*args, cwd=ws, cache=ws / "cache")
    message = assert_usage_error(result, *needles)
    assert snapshot(ws) == before, "a failed command changed files on disk"
    return message


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished training run (a few steps)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = grow("train", "--seed", "resnet8-thin", "--data", "sample", "--subset", "256",
                  "--budget", "2e9", "--seed-value", "0", "--quiet", "--out", str(out), cwd=out.parent)
    assert result.returncode == 0, result.stderr
    assert (out / "checkpoint.pt").is_file() and (out / "config.json").is_file()
    return out


# --------------------------------------------------------------------------- bad input


def test_unknown_seed_train(ws: Path) -> None:
    message = run_failing(ws, "train", "--seed", "resnet20-thn", "--budget", "1e10", "--data", "sample",
                          "--out", str(ws / "new"), needles=("resnet20-thn", "resnet20-thin"))
    assert "did you mean" in message
    assert not (ws / "new").exists()


def test_unknown_seed_grow(ws: Path) -> None:
    # no --out: the default run directory (runs/...) must not appear either
    run_failing(ws, "--seed", "nope", "--budget", "1e10", needles=("nope",))


@pytest.mark.parametrize("budget", ["0", "-5", "nan", "inf", "junk", "", "1e400", "0T"])
def test_bad_budget(ws: Path, budget: str) -> None:
    run_failing(ws, "train", "--seed", "resnet8-thin", "--budget", budget, needles=("budget",))


def test_bad_budget_for_growth(ws: Path) -> None:
    run_failing(ws, "--budget", "-1", needles=("budget",))


@pytest.mark.parametrize("args, needle", [(["--budget", "1"], "buys no training step"),
                                         (["--budget", "1e9", "--subset", "1"], "a step needs 2"),
                                         (["--budget", "1e30"], "more than a year")])
def test_a_run_that_could_not_train_or_would_take_a_year_is_refused_before_it_starts(ws: Path, args: list[str],
                                                                                     needle: str) -> None:
    run_failing(ws, "--seed", "resnet8-thin", "--data", "sample", *args, needles=(needle,))


@pytest.mark.parametrize("command", [["train"], []])
def test_missing_budget(ws: Path, command: list[str]) -> None:
    run_failing(ws, *command, "--seed", "resnet8-thin", needles=("--budget",))


def test_missing_data_path(ws: Path) -> None:
    run_failing(ws, "train", "--seed", "resnet8-thin", "--budget", "1e10", "--data", "/nonexistent",
                needles=("/nonexistent",))


@pytest.mark.parametrize("option", [["--batch-size", "0"], ["--subset", "ten"], ["--schedule", "step"],
                                    ["--eval-every", "0"], ["--device", "cuda:7"]])
def test_bad_training_options(ws: Path, option: list[str]) -> None:
    if option[0] == "--device":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA device exists here")
    run_failing(ws, "train", "--seed", "resnet8-thin", "--budget", "1e10", *option)


def test_resume_corrupt_checkpoint(ws: Path, real_run: Path) -> None:
    run = ws / "corrupt"
    run.mkdir()
    shutil.copy(real_run / "config.json", run / "config.json")
    garbage = bytes(range(256)) * 64 + b"definitely not a torch checkpoint"
    (run / "checkpoint.pt").write_bytes(garbage)
    run_failing(ws, "train", "--resume", str(run), needles=("checkpoint.pt",))
    assert (run / "checkpoint.pt").read_bytes() == garbage


def test_resume_corrupt_config(ws: Path, real_run: Path) -> None:
    run = ws / "badconfig"
    shutil.copytree(real_run, run)
    (run / "config.json").write_text("{ not json")
    run_failing(ws, "train", "--resume", str(run), needles=("config.json",))


def test_resume_config_with_an_unknown_setting(ws: Path, real_run: Path) -> None:
    import json

    run = ws / "oldconfig"
    shutil.copytree(real_run, run)
    saved = json.loads((run / "config.json").read_text())
    saved["config"]["max_width_mult"] = 8  # a setting an older version had
    (run / "config.json").write_text(json.dumps(saved))
    before = snapshot(run)
    run_failing(ws, "train", "--resume", str(run), needles=("max_width_mult",))
    assert snapshot(run) == before


@pytest.mark.parametrize("option", [["--lr", "nan"], ["--lr", "inf"], ["--momentum", "-inf"],
                                    ["--size-exponent", "nan"], ["--lam", "nan"], ["--warmup", "x"]])
def test_non_finite_numbers_are_refused_at_parse_time(ws: Path, option: list[str]) -> None:
    run_failing(ws, "--budget", "1e10", *option, needles=(option[0],))


def test_every_config_field_is_an_option_or_kept_off_on_purpose() -> None:
    # The parser is generated from the config dataclasses: each field with cli=True has its flag.
    from growth.cli import build_parser, config_options
    from growth.config import GrowConfig, TrainConfig

    grow_parser, subs = build_parser()
    for cls, parser in ((GrowConfig, grow_parser), (TrainConfig, subs["train"])):
        dests = {a.dest for a in parser._actions}
        for f, meta in config_options(cls):
            if not (cls is TrainConfig and f.name in ("kappa", "nu", "lam")):  # SGD: no DessiLBI options
                assert f.name in dests, (cls.__name__, f.name)
    args = grow_parser.parse_args(["--budget", "1e12", "--grow-until", "0.5", "--no-nesterov"])
    assert (args.budget_flops, args.grow_until_frac, args.nesterov) == (1e12, 0.5, False)


def _bounded_options() -> list[tuple[str, str, float]]:
    """(field, flag, a value just outside its bounds) for every bounded option of grow."""
    from growth.cli import config_options
    from growth.config import GrowConfig, flag_of

    found = []
    for f, meta in config_options(GrowConfig):
        bounds = meta.get("bounds")
        if bounds is not None:
            outside = bounds.low - 1 if bounds.low is not None else bounds.high + 1
            found.append((f.name, flag_of(f.name, meta), outside))
    return found


@pytest.mark.parametrize("name,flag,outside", _bounded_options())
def test_bounds_are_one_rule_for_the_parser_and_a_saved_config(name: str, flag: str, outside: float) -> None:
    # The same bounds refuse the value on the command line and in a config.json (validate()).
    from growth.cli import UsageError, build_parser
    from growth.config import ConfigError, GrowConfig

    parser, _ = build_parser()
    text = str(int(outside)) if float(outside).is_integer() else str(outside)
    with pytest.raises(UsageError, match=flag):
        parser.parse_args([item for pair in {"--budget": "1e12", flag: text}.items() for item in pair])
    with pytest.raises(ConfigError, match=flag):
        GrowConfig(**{"budget_flops": 1e12, name: outside}).validate()


@pytest.mark.parametrize("option, value, needles", [
    ("--target-macs", "-5", ("argument --target-macs:", "'-5' is negative", "MACs")),  # was: cannot read budget
    ("--budget", "-1", ("argument --budget:", "'-1' is negative", "FLOPs")),             # was: cannot read
    ("--budget", "-2e9", ("argument --budget:", "'-2e9' is negative")),                  # was: expected one argument
    ("--target-macs", "-5M", ("argument --target-macs:", "'-5M' is negative")),
    ("--budget", "1e400", ("argument --budget:", "'1e400' is infinite")),                # was: must be positive
    ("--budget", "nan", ("argument --budget:", "'nan' is not a number")),
    ("--size-anchor-macs", "0", ("argument --size-anchor-macs:", "'0' is zero", "MACs")),
    ("--size-ref-budget", "-1e13", ("argument --size-ref-budget:", "is negative", "FLOPs")),
])
def test_a_bad_amount_says_what_is_wrong_and_names_the_option(option: str, value: str,
                                                              needles: tuple[str, ...]) -> None:
    from growth.cli import UsageError, build_parser

    parser, _ = build_parser()
    with pytest.raises(UsageError) as refused:
        parser.parse_args([option, value, *(["--budget", "1e12"] if option != "--budget" else [])])
    message = str(refused.value)
    assert all(needle in message for needle in needles), message
    assert "\n" not in message and "cannot read" not in message


def test_override_takes_the_option_or_the_field_name_and_lists_options() -> None:
    from growth.cli import UsageError, _overrides
    from growth.config import GrowConfig, TrainConfig

    def overrides(cls: type, *items: str) -> dict:
        return _overrides(argparse.Namespace(override=list(items)), cls)

    for key in ("eval-every", "eval_every", "eval_every_frac", "--eval-every"):
        assert overrides(TrainConfig, f"{key}=0.2") == {"eval_every_frac": 0.2}, key
    assert overrides(GrowConfig, "batch-size=64", "decay_start_frac=0.5") == {"batch_size": 64,
                                                                             "decay_start_frac": 0.5}
    with pytest.raises(UsageError) as refused:
        overrides(TrainConfig, "tau=1")
    message = str(refused.value)
    assert "no such setting" in message and "batch-size" in message and "eval-every" in message
    assert "_" not in message.partition("can change:")[2], message  # the names as the options spell them
    # a growth run evaluates at its growth checks: eval-every is not one of its settings, and it says so
    with pytest.raises(UsageError) as refused:
        overrides(GrowConfig, "eval-every=0.2")
    message = str(refused.value)
    assert "no such setting" not in message and "growth steps" in message and "eval-every" not in \
        message.partition("can change:")[2], message


def test_override_help_lists_what_each_command_can_change() -> None:
    from growth.cli import build_parser

    grow_parser, subs = build_parser()

    def override_help(parser: argparse.ArgumentParser) -> str:
        return next(a.help or "" for a in parser._actions if a.dest == "override")

    assert "eval-every" in override_help(subs["train"])
    assert "eval-every" not in override_help(grow_parser)  # `grow` has no --eval-every to change


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from growth.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert out == f"grow (growth-automl) {version('growth-automl')}\n" and err == ""


def test_resume_non_run_dir(ws: Path) -> None:
    other = ws / "photos"
    other.mkdir()
    (other / "cat.txt").write_text("meow\n")
    run_failing(ws, "train", "--resume", str(other), needles=(str(other),))


def test_resume_train_run_with_grow(ws: Path, real_run: Path) -> None:
    run = ws / "trainrun"
    shutil.copytree(real_run, run)
    run_failing(ws, "--resume", str(run), needles=("train",))


def test_out_existing_non_run_dir(ws: Path) -> None:
    other = ws / "thesis"
    (other / "chapters").mkdir(parents=True)
    (other / "main.tex").write_text("\\documentclass{article}\n")
    (other / "chapters" / "one.tex").write_text("hello\n")
    run_failing(ws, "train", "--seed", "resnet8-thin", "--budget", "1e10", "--out", str(other),
                needles=(str(other),))


def test_out_existing_run_suggests_resume(ws: Path, real_run: Path) -> None:
    run = ws / "existing"
    shutil.copytree(real_run, run)
    run_failing(ws, "train", "--seed", "resnet8-thin", "--budget", "1e10", "--out", str(run),
                needles=("--resume",))


def test_resume_and_out_together(ws: Path, real_run: Path) -> None:
    run = ws / "existing"
    shutil.copytree(real_run, run)
    run_failing(ws, "train", "--resume", str(run), "--out", str(ws / "other"), needles=("--resume", "--out"))
    assert not (ws / "other").exists()


@pytest.mark.parametrize("args", [["train", "--bogus"], ["--bogus"], ["seeds", "--seed", "x"],
                                  ["graph"], ["train", "--schedule"], ["seeds", "--input-size", "0"]])
def test_bad_options(ws: Path, args: list[str]) -> None:
    run_failing(ws, *args)


def test_graph_unknown_seed(ws: Path) -> None:
    run_failing(ws, "graph", "--seed", "resnet20-thn", needles=("resnet20-thin",))


def test_growth_specific_bad_options(ws: Path) -> None:
    run_failing(ws, "--budget", "1e10", "--lam", "lots", needles=("--lam",))
    run_failing(ws, "--budget", "1e10", "--nu", "lots", needles=("--nu",))
    run_failing(ws, "--budget", "1e10", "--eval-every", "0.1", needles=("--eval-every",))  # train only
    run_failing(ws, "--budget", "1e10", "--allocation", "random", needles=("--allocation",))
    run_failing(ws, "--budget", "1e10", "--growth-steps", "0", needles=("--growth-steps",))
    run_failing(ws, "--budget", "1e10", "--target-macs", "-3", needles=("--target-macs",))


# --------------------------------------------------------------------------- commands that work


def test_seeds_lists_every_seed(ws: Path) -> None:
    result = grow("seeds", cwd=ws, cache=ws / "cache")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in search_spaces.list_seeds():
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.stdout), name
    assert "40.55M" in result.stdout  # resnet20's MACs at 32x32


def test_seeds_prints_its_kept_table_again_without_importing_torch(ws: Path) -> None:
    """The first `grow seeds` counts (importing torch: seconds); the next prints the same table from the cache
    directory without importing torch; another input size is counted anew."""
    code = "import sys, growth.cli as c; c.main(sys.argv[1:]); print('torch' in sys.modules, file=sys.stderr)"

    def seeds(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-c", code, "seeds", *args], capture_output=True, text=True,
                                cwd=ws, env=subprocess_env(GROWTH_DATA_DIR=str(ws / "cache")), timeout=300)
        assert result.returncode == 0, result.stderr
        return result

    first, again, other = seeds(), seeds(), seeds("--input-size", "28")
    assert first.stderr.strip() == "True" and again.stderr.strip() == "False"
    assert again.stdout == first.stdout and all(name in first.stdout for name in search_spaces.list_seeds())
    assert other.stderr.strip() == "True" and "MACs (28x28)" in other.stdout
    assert len(list((ws / "cache" / "seeds").glob("*.json"))) == 2


def test_graph_prints_the_stage_groups(ws: Path) -> None:
    result = grow("graph", "--seed", "resnet20-thin", cwd=ws)
    assert result.returncode == 0, result.stderr
    for group in ("stage1", "stage2", "stage3"):
        assert re.search(rf"(?<![\w.]){group}(?![\w.])", result.stdout), group
    assert "stage3.block3.inner" in result.stdout
    assert "stem.conv" in result.stdout and "fc" in result.stdout


def _graph_rows(text: str) -> list[tuple[str, int]]:
    """(group, width) of each row of the table ``grow graph`` printed."""
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.count("│") == 5]
    return [(row[0], int(row[1])) for row in cells if row[0]]  # the header is drawn with ┃, not │


def test_graph_of_a_genotype_file_or_a_run_directory_in_network_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import torch

    from growth.cli import main
    from growth.graph import groups_of_genotype
    from search_spaces import build_model, family_of, genotype_to_dict, get_genotype

    seed = get_genotype("resnet8-thin")
    grown = family_of(seed).deepened(family_of(seed).scaled(seed, 1.5), 1)  # wider, a block added to stage 2
    (tmp_path / "grown.json").write_text(json.dumps(genotype_to_dict(grown)))
    (tmp_path / "finished").mkdir()
    (tmp_path / "finished" / "genotype.json").write_text(json.dumps(genotype_to_dict(grown)))
    (tmp_path / "running").mkdir()  # an unfinished run: only its checkpoint says where it stands
    torch.save({"format": 1, "genotype": genotype_to_dict(grown)}, tmp_path / "running" / "checkpoint.pt")

    modules = [name for name, _ in build_model(grown).named_modules()]
    in_network_order = sorted(groups_of_genotype(grown), key=lambda g: modules.index(g.producers[0]))
    expected = [(g.name, g.width) for g in in_network_order]
    assert ("stage2.block2.inner", grown.stages[1].inner[1]) in expected  # the added block's group
    for args in (["--genotype", str(tmp_path / "grown.json")], [str(tmp_path / "finished")],
                 [str(tmp_path / "running")]):
        assert main(["graph", *args]) == 0, args
        assert _graph_rows(capsys.readouterr().out) == expected, args


@pytest.mark.parametrize("args,needle", [(["--seed", "resnet8-thin", "--genotype", "g.json"], "one of"),
                                         (["empty"], "neither genotype.json nor checkpoint.pt"),
                                         (["--genotype", "missing.json"], "missing.json"),
                                         (["--seed", "timm:resnet18"], "timm")])
def test_graph_bad_input(ws: Path, args: list[str], needle: str) -> None:
    (ws / "empty").mkdir()
    run_failing(ws, "graph", *args, needles=(needle,))


@pytest.mark.parametrize("code", [
    "import sys, growth.cli as c; c.build_parser(); print('torch' in sys.modules)",
    # parsing a budget does not load torch either (grow --budget 2e17 --help answers at once)
    "import sys, growth.cli as c; g, s = c.build_parser(); g.parse_args(['--budget', '2e17']); "
    "s['train'].parse_args(['--budget', '500T', '--seed', 'resnet20']); print('torch' in sys.modules)",
])
def test_parser_does_not_import_torch(ws: Path, code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ws,
                            env=subprocess_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["seeds", "--help"], ["graph", "--help"],
                                  ["bench", "--help"], ["report", "--help"]])
def test_help(ws: Path, args: list[str]) -> None:
    before = snapshot(ws)
    result = grow(*args, cwd=ws)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and result.stderr == ""
    assert snapshot(ws) == before
    if args[0] != "--help":
        assert result.stdout.startswith(f"usage: grow {args[0]} ")


def test_bench_and_report_come_from_the_entry_point_group() -> None:
    # growth/cli.py never imports baselines: the two commands are found through package metadata
    from importlib.metadata import entry_points

    from growth.cli import ENTRY_POINT_GROUP, Command

    points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert points["bench"].value == "baselines.commands:bench"
    assert points["report"].value == "baselines.commands:report"
    assert all(isinstance(points[name].load(), Command) for name in ("bench", "report"))


@pytest.mark.parametrize("args,needles", [
    (["bench", "--budget", "1e9", "--seeds", "x"], ("--seeds",)),
    (["bench", "--budget", "1e9", "--frontier-mults", "0"], ("--frontier-mults",)),
    (["bench", "--budget", "1e9", "--methods", "nope"], ("unknown method 'nope'",)),
    (["bench"], ("--budget", "grow bench --help")),
    (["report", str(Path("/nonexistent"))], ("/nonexistent",)),
])
def test_bench_and_report_bad_input(ws: Path, args: list[str], needles: tuple[str, ...]) -> None:
    run_failing(ws, *args, needles=needles)


def test_every_error_raised_on_purpose_has_one_root() -> None:
    import growth
    from growth.cli import UsageError
    from growth.config import ConfigError
    from growth.data import DataError
    from growth.runstore import RunError
    from search_spaces.errors import GrowthError

    assert growth.GrowthError is GrowthError is search_spaces.GrowthError
    for cls, builtin in ((ConfigError, ValueError), (DataError, ValueError), (RunError, ValueError),
                         (search_spaces.UnknownSeedError, KeyError), (UsageError, Exception)):
        assert issubclass(cls, GrowthError) and issubclass(cls, builtin), cls
    assert str(search_spaces.UnknownSeedError("unknown seed 'x'")) == "unknown seed 'x'"  # no KeyError quotes


def test_grow_script_entry_point(ws: Path) -> None:
    script = Path(sys.executable).with_name("grow")
    if not script.exists():
        pytest.skip("the grow script is not installed next to this python")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=ws, env=subprocess_env(),
                            timeout=120)
    assert result.returncode == 0 and "budget" in result.stdout
    result = subprocess.run([str(script), "train", "--budget", "zero"], capture_output=True, text=True,
                            cwd=ws, env=subprocess_env(), timeout=120)
    assert_usage_error(result, "budget")
    result = subprocess.run([str(script), "bench", "--help"], capture_output=True, text=True, cwd=ws,
                            env=subprocess_env(), timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: grow bench ")


def test_train_a_saved_genotype(ws: Path) -> None:
    import json

    genotype = search_spaces.ResNetGenotype.uniform([2, 4, 8], [1, 1, 1], in_chans=1)
    path = ws / "genotype.json"
    path.write_text(json.dumps(search_spaces.genotype_to_dict(genotype)))
    result = grow("train", "--seed", "resnet8-thin", "--genotype", str(path), "--data", "sample", "--subset", "200",
                  "--budget", "2e9", "--seed-value", "0", "--quiet", "--out", str(ws / "run"), cwd=ws)
    assert result.returncode == 0, result.stderr
    assert json.loads((ws / "run" / "summary.json").read_text())["widths"] == [[2, 2], [4, 4], [8, 8]]
    (ws / "bad.json").write_text("{\"family\": \"resnet\"}")
    run_failing(ws, "train", "--genotype", str(ws / "bad.json"), "--budget", "1e9", needles=("--genotype",))
    run_failing(ws, "train", "--genotype", str(ws / "missing.json"), "--budget", "1e9", needles=("--genotype",))
    rgb = search_spaces.ResNetGenotype.uniform([2, 4, 8], [1, 1, 1], in_chans=3)
    path.write_text(json.dumps(search_spaces.genotype_to_dict(rgb)))
    run_failing(ws, "train", "--genotype", str(path), "--budget", "1e9", "--data", "sample",
                needles=("3-channel", "sample has 1"))


def test_grow_from_a_saved_genotype(ws: Path) -> None:
    """`grow --genotype` starts growth (or, with --allocation none, DessiLBI) from that architecture."""
    import json

    genotype = search_spaces.ResNetGenotype.uniform([2, 4, 8], [1, 1, 1], in_chans=1)
    path = ws / "genotype.json"
    path.write_text(json.dumps(search_spaces.genotype_to_dict(genotype)))
    result = grow("--genotype", str(path), "--allocation", "none", "--data", "sample", "--subset", "200",
                  "--budget", "2e9", "--seed-value", "0", "--quiet", "--out", str(ws / "run"), cwd=ws)
    assert result.returncode == 0, result.stderr
    assert json.loads((ws / "run" / "summary.json").read_text())["widths"] == [[2, 2], [4, 4], [8, 8]]
    assert json.loads((ws / "run" / "config.json").read_text())["config"]["genotype"] is not None
    run_failing(ws, "--genotype", str(ws / "missing.json"), "--budget", "1e9", needles=("--genotype",))


@pytest.mark.parametrize("checkpointed", [True, False])
def test_ctrl_c_while_a_run_starts_ends_with_what_to_do_next(tmp_path: Path, checkpointed: bool) -> None:
    import argparse
    from types import SimpleNamespace

    from growth.cli import _run
    from growth.trainer import RunInterrupted

    if checkpointed:
        (tmp_path / "checkpoint.pt").write_bytes(b"")

    def interrupted(display: object) -> dict:
        raise KeyboardInterrupt  # as Ctrl-C during data loading, calibration or the first compilation

    with pytest.raises(RunInterrupted) as stopped:
        _run(argparse.Namespace(quiet=True), SimpleNamespace(path=tmp_path), interrupted)  # type: ignore[arg-type]
    message = str(stopped.value)
    assert (f"--resume {tmp_path}" in message) if checkpointed else ("nothing to resume" in message)
