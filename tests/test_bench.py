"""grow bench / grow report: equal-budget cells, resumability, the table and the plots."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from conftest import run_grow

import search_spaces
from baselines import parse_method
from baselines.bench import bench_figures, frontier_gaps, interpolate, method_styles, pareto, summarise, write_report
from baselines.fixed import match_macs, uniform_genotype
from growth.compute import measure_cost

BUDGET = "6e10"


def _bench(out, methods="grow,fixed:resnet8-thin,uniform:resnet8-thin"):
    return run_grow("bench", "--budget", BUDGET, "--methods", methods, "--seeds", "0,1", "--data", "sample",
                    "--subset", "600", "--out", str(out), "--quiet")


@pytest.mark.slow
def test_bench_runs_every_cell_at_one_budget_and_resumes(tmp_path):
    out = tmp_path / "bench"
    first = _bench(out)
    assert first.returncode == 0, first.stderr
    record = json.loads((out / "bench.json").read_text())
    assert sorted(record["cells"]) == sorted(
        f"{m}/seed{s}" for m in ("grow", "fixed:resnet8-thin", "uniform:resnet8-thin") for s in (0, 1))
    for cell in record["cells"].values():
        assert 0 < cell["train_flops"] <= float(BUDGET)
    # uniform is scaled to the grown network's MACs (same seed), from below
    for seed in (0, 1):
        grown = record["cells"][f"grow/seed{seed}"]["macs"]
        uniform = record["cells"][f"uniform:resnet8-thin/seed{seed}"]["macs"]
        assert uniform <= grown
    table = (out / "bench.md").read_text()
    assert "| grow" in table and "±" in table
    figures = bench_figures(record)  # every cell spent the one budget: learning curves, not acc vs FLOPs
    assert figures[:2] == ["acc_vs_macs.png", "learning_curves.png"]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(figures)
    for name in figures:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each growth cell drew its growth timeline when it finished; the other cells did not
    assert sorted(str(p.parent.relative_to(out)) for p in out.glob("cells/*/*/growth.png")) == [
        "cells/grow/seed0", "cells/grow/seed1"]

    # Re-running skips finished cells: no summary is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*/summary.json")}
    second = _bench(out)
    assert second.returncode == 0, second.stderr
    assert "starting" not in second.stdout and "resuming" not in second.stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*/summary.json")}

    # grow report rebuilds the table from the files.
    (out / "bench.md").unlink()
    report = run_grow("report", str(out), timeout=120)
    assert report.returncode == 0, report.stderr
    assert (out / "bench.md").read_text() == table


@pytest.mark.slow
def test_bench_rejects_unknown_method_and_foreign_dir(tmp_path):
    bad = _bench(tmp_path / "b", methods="grow,nonsense")
    assert bad.returncode == 2 and bad.stderr.startswith("grow: error: unknown method")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    res = _bench(foreign, methods="fixed:resnet8-thin")
    assert res.returncode == 2 and "no bench" in res.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_parse_method():
    assert str(parse_method("fixed:resnet20")) == "fixed:resnet20"
    assert str(parse_method("timm:resnet18")) == "fixed:timm:resnet18"
    with pytest.raises(ValueError):
        parse_method("uniform")
    for text, needle in (("fixed:resnet21", "did you mean"), ("grow:nope", "unknown seed 'nope'"),
                         ("width:nope@2", "unknown seed 'nope'")):
        with pytest.raises(ValueError, match=needle):
            parse_method(text)


@pytest.mark.parametrize("methods, needles", [
    ("grow,timm:nope", ("method 'timm:nope'", "unknown timm model 'nope'")),
    ("frontier:nope", ("method 'frontier:nope'", "unknown seed 'nope'")),
    ("fixed:resnet8-thin,nope", ("unknown method 'nope'", "frontier:<seed>", "timm:<model>", "width:<seed>@<mult>")),
])
def test_bench_checks_every_method_before_it_writes_anything(tmp_path, monkeypatch, capsys, methods, needles):
    # timm:nope used to fail only when its cell ran: exit 1, a bench directory, a matplotlib warning
    from growth.cli import main

    monkeypatch.chdir(tmp_path)  # the default bench directory would be runs/bench-... here
    assert main(["bench", "--budget", "1e9", "--methods", methods, "--seeds", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("grow: error: ")
    assert all(needle in err for needle in needles), err
    assert list(tmp_path.iterdir()) == []


def test_bench_refuses_a_subset_larger_than_the_data_before_it_writes_anything(tmp_path, capsys):
    from growth.cli import main

    out = tmp_path / "bench"
    assert main(["bench", "--budget", "1e9", "--methods", "fixed:resnet8-thin", "--seeds", "0", "--data", "sample",
                 "--subset", "9999", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "subset=9999" in err and "5400 training images" in err
    assert not out.exists()


def test_uniform_scaling_matches_macs_from_below():
    genotype = search_spaces.get_genotype("resnet20")
    half = uniform_genotype(genotype, 0.5)
    assert half.compact()[0] == [8, 8, 8, 8] and half.stages[1].shortcut_src == list(range(8))
    target = 12e6
    scaled = match_macs(genotype, target, (3, 32, 32))
    macs = measure_cost(scaled, (3, 32, 32)).macs
    assert macs <= target
    bigger = uniform_genotype(scaled, 1.05)
    assert measure_cost(bigger, (3, 32, 32)).macs > macs


def test_pareto_front():
    rows = [{"method": "a", "macs": 1, "test_acc": 0.5}, {"method": "b", "macs": 2, "test_acc": 0.6},
            {"method": "c", "macs": 3, "test_acc": 0.55}, {"method": "d", "macs": 1, "test_acc": 0.4}]
    assert pareto(rows, "macs") == ["a", "b"]


@pytest.mark.slow
def test_frontier_expands_to_width_cells_and_every_row_gets_a_gap(tmp_path):
    out = tmp_path / "bench"
    res = run_grow("bench", "--budget", "3e10", "--methods", "frontier:resnet8-thin,fixed:resnet8-thin",
                   "--frontier-mults", "1,2", "--seeds", "0", "--data", "sample", "--subset", "300", "--out", str(out),
                   "--quiet")
    assert res.returncode == 0, res.stderr
    record = json.loads((out / "bench.json").read_text())
    assert sorted(record["cells"]) == ["fixed:resnet8-thin/seed0", "width:resnet8-thin@1/seed0",
                                       "width:resnet8-thin@2/seed0"]
    wide = record["cells"]["width:resnet8-thin@2/seed0"]
    assert wide["widths"] == [[8, 8], [16, 16], [32, 32]]
    rows = {r["method"]: r for r in summarise(record)}
    # fixed:resnet8-thin is the frontier's first point (same architecture, same seed): gap 0.
    assert rows["fixed:resnet8-thin"]["frontier_gap"] == pytest.approx(0.0, abs=1e-9)
    # ... and the very same run: trained once, recorded as such.
    assert record["cells"]["fixed:resnet8-thin/seed0"]["same_as"] == "width:resnet8-thin@1/seed0"
    assert not (out / "cells" / "fixed-resnet8-thin").exists()
    assert "frontier gap" in (out / "bench.md").read_text()


def test_interpolate_is_linear_in_log_macs_and_none_outside():
    points = [(1e6, 0.60), (4e6, 0.70), (16e6, 0.66)]
    assert interpolate(points, 2e6) == pytest.approx(0.65)
    assert interpolate(points, 8e6) == pytest.approx(0.68)
    assert interpolate(points, 4e6) == pytest.approx(0.70)
    assert interpolate(points, 0.5e6) is None and interpolate(points, 20e6) is None


def test_frontier_gap_pairs_seed_values():
    cells = {f"width:s@{m}/seed{s}": {"method": f"width:s@{m}", "seed": s, "macs": macs, "test_acc": acc}
             for m, s, macs, acc in ((1, 0, 1e6, 0.6), (2, 0, 4e6, 0.7), (1, 1, 1e6, 0.5), (2, 1, 4e6, 0.6))}
    cells["grow/seed0"] = {"method": "grow", "seed": 0, "macs": 2e6, "test_acc": 0.66}
    cells["grow/seed1"] = {"method": "grow", "seed": 1, "macs": 2e6, "test_acc": 0.56}
    gaps = frontier_gaps({"cells": cells}, [cells["grow/seed0"], cells["grow/seed1"]])
    assert gaps == pytest.approx([0.01, 0.01])


def test_the_table_names_the_network_a_pruning_method_started_from():
    from baselines.bench import markdown

    cell = {"seed": 0, "macs": 2e6, "params": 1e4, "test_acc": 0.6, "train_flops": 1e12, "train_time_s": 10.0,
            "widths": [[4, 4], [8, 8], [16, 16]]}
    record = {"settings": {"budget_flops": 1e12, "data": "sample", "seeds": [0], "methods": ["grow", "slimming"]},
              "cells": {"slimming/seed0": {**cell, "method": "slimming", "start": "resnet20@0.672"},
                        "grow/seed0": {**cell, "method": "grow"}}}
    table = markdown(record)
    assert "| slimming (pruned from resnet20@0.672) *" in table and "| grow * |" in table


def test_every_row_shows_growths_margin_over_it_paired_by_seed_value():
    from baselines.bench import markdown

    cell = {"macs": 2e6, "params": 1e4, "train_flops": 1e12, "train_time_s": 10.0, "widths": [[4, 4], [8, 8]]}
    accs = {("grow", 0): 0.70, ("grow", 1): 0.60, ("sss", 0): 0.65, ("sss", 1): 0.45, ("sss", 2): 0.1}
    record = {"settings": {"budget_flops": 1e12, "data": "sample", "seeds": [0, 1, 2], "methods": ["grow", "sss"]},
              "cells": {f"{m}/seed{s}": {**cell, "method": m, "seed": s, "test_acc": a} for (m, s), a in accs.items()}}
    rows = {r["method"]: r for r in summarise(record)}
    assert rows["grow"]["grow_margin"] is None
    # seeds 0 and 1 only (grow has no seed 2): +5 and +15 points
    assert rows["sss"]["grow_margin"] == pytest.approx(0.10)
    assert rows["sss"]["grow_margin_std"] == pytest.approx(0.0707107)
    assert "| +10.00 ± 7.07 |" in markdown(record)


def test_the_rows_of_a_grown_seed_are_compared_with_growth_from_that_seed():
    cell = {"macs": 2e6, "params": 1e4, "train_flops": 1e12, "train_time_s": 10.0, "widths": [[4, 4], [8, 8]]}
    accs = {("grow:resnet20-flat", 0): 0.65, ("grow-uniform:resnet20-flat", 0): 0.69, ("grow", 0): 0.9,
            ("grow-uniform", 0): 0.8}
    methods = sorted({m for m, _ in accs})
    record = {"settings": {"budget_flops": 1e12, "data": "sample", "seeds": [0], "methods": methods},
              "cells": {f"{m}/seed{s}": {**cell, "method": m, "seed": s, "test_acc": a} for (m, s), a in accs.items()}}
    rows = {r["method"]: r for r in summarise(record)}
    assert rows["grow-uniform:resnet20-flat"]["grow_margin"] == pytest.approx(-0.04)   # against grow:resnet20-flat
    assert rows["grow-uniform"]["grow_margin"] == pytest.approx(0.10)                  # against grow
    assert rows["grow:resnet20-flat"]["grow_margin"] is None


def test_width_method_rejects_a_bad_multiplier():
    for text in ("width:resnet20-thin", "width:resnet20-thin@0", "width:resnet20-thin@x", "width:@2"):
        with pytest.raises(ValueError):
            parse_method(text)


@pytest.mark.slow
def test_controls_that_are_the_same_run_as_grow_are_run_once(tmp_path):
    # At this budget the size rule keeps the seed: grow, grow-uniform and dessilbi are DessiLBI on the
    # seed, and scratch (the grown genotype = the seed, SGD) is width@1. Two runs, five rows.
    out = tmp_path / "bench"
    methods = "grow:resnet8-thin,dessilbi:resnet8-thin,grow-uniform:resnet8-thin,scratch:resnet8-thin," \
              "width:resnet8-thin@1,width:resnet8-thin@2"
    res = run_grow("bench", "--budget", "3e10", "--methods", methods, "--seeds", "0", "--data", "sample",
                   "--subset", "300", "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    cells = json.loads((out / "bench.json").read_text())["cells"]
    assert {k: c.get("same_as") for k, c in cells.items()} == {
        "grow:resnet8-thin/seed0": None, "dessilbi:resnet8-thin/seed0": "grow:resnet8-thin/seed0",
        "grow-uniform:resnet8-thin/seed0": "grow:resnet8-thin/seed0", "scratch:resnet8-thin/seed0": None,
        "width:resnet8-thin@1/seed0": "scratch:resnet8-thin/seed0", "width:resnet8-thin@2/seed0": None}
    assert sorted(p.parent.name for p in out.glob("cells/*/seed0")) == [
        "grow-resnet8-thin", "scratch-resnet8-thin", "width-resnet8-thin@2"]
    assert cells["dessilbi:resnet8-thin/seed0"]["test_acc"] == cells["grow:resnet8-thin/seed0"]["test_acc"]
    assert "dessilbi:resnet8-thin (same run as grow:resnet8-thin)" in (out / "bench.md").read_text()


@pytest.mark.slow
def test_a_growth_run_that_plans_no_growth_is_the_same_run_whatever_the_allocation(tmp_path):
    # What lets the bench record dessilbi and grow-uniform as grow's twins: not assumed, measured.
    summaries = []
    for allocation in ("gamma", "uniform", "none"):
        out = tmp_path / allocation
        res = run_grow("--seed", "resnet8-thin", "--budget", "3e10", "--data", "sample", "--subset", "300",
                       "--seed-value", "0", "--allocation", allocation, "--out", str(out), "--quiet")
        assert res.returncode == 0, res.stderr
        summary = json.loads((out / "summary.json").read_text())
        summaries.append({k: summary[k] for k in ("test_acc", "val_acc", "train_flops", "widths", "macs")})
    assert summaries[0] == summaries[1] == summaries[2]


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_failing_cell_is_recorded_and_the_bench_goes_on(tmp_path, jobs):
    out = tmp_path / "bench"
    res = run_grow("bench", "--budget", "3e10", "--methods", "scs:vgg16-thin,fixed:resnet8-thin", "--seeds", "0",
                   "--data", "sample", "--subset", "300", "--out", str(out), "--quiet", "--jobs", jobs)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "1 cell(s) failed" in res.stderr
    cells = json.loads((out / "bench.json").read_text())["cells"]
    assert "vgg16-thin" in cells["scs:vgg16-thin/seed0"]["failed"]
    assert "\n" not in cells["scs:vgg16-thin/seed0"]["failed"]
    assert cells["fixed:resnet8-thin/seed0"]["test_acc"] > 0  # the next cell still ran
    assert "- scs:vgg16-thin/seed0: " in (out / "bench.md").read_text()
    report = run_grow("report", str(out), timeout=120)
    assert report.returncode == 0 and "failed scs:vgg16-thin/seed0" in report.stdout


@pytest.mark.slow
def test_a_cell_that_stopped_before_its_first_checkpoint_starts_again(tmp_path):
    out = tmp_path / "bench"
    args = ("bench", "--budget", "3e10", "--methods", "fixed:resnet8-thin", "--seeds", "0", "--data", "sample",
            "--subset", "300", "--out", str(out), "--quiet")
    run_grow(*args, check=True)
    cell = out / "cells" / "fixed-resnet8-thin" / "seed0"
    for path in cell.iterdir():  # as if killed right after the run directory was created
        if path.name != "config.json":
            path.unlink()
    again = run_grow(*args)
    assert again.returncode == 0, again.stderr
    assert "starting" in again.stdout and (cell / "summary.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("change", [("--val-size", "100"), ("--target-macs", "1e6"), ("--subset", "200"),
                                    ("--budget", "4e10")])
def test_continuing_a_bench_with_a_setting_that_shapes_its_cells_is_refused(tmp_path, change):
    from growth.runstore import atomic_write_json

    out = tmp_path / "bench"
    out.mkdir()
    settings = {"budget_flops": 3e10, "data": "sample", "subset": 300, "val_size": None, "target_macs": None,
                "methods": ["fixed:resnet8-thin"], "seeds": [0]}
    atomic_write_json(out / "bench.json", {"settings": settings, "cells": {}})
    before = (out / "bench.json").read_bytes()
    args = {"--budget": "3e10", "--subset": "300", change[0]: change[1]}
    flat = [x for k, v in args.items() for x in (k, v)]
    res = run_grow("bench", *flat, "--methods", "fixed:resnet8-thin", "--seeds", "0", "--data", "sample",
                   "--out", str(out), "--quiet", timeout=120)
    assert res.returncode == 2 and "choose another --out" in res.stderr and len(res.stderr.splitlines()) == 1
    assert (out / "bench.json").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["bench.json"]


@pytest.mark.slow
def test_a_parallel_bench_records_what_the_serial_one_does(tmp_path):
    # uniform waits for grow (its size target); width@1 is uniform's twin (at this budget grow keeps the
    # seed), so it waits for uniform's entry; width@2 runs beside uniform.
    methods = "grow:resnet8-thin,uniform:resnet8-thin,width:resnet8-thin@1,width:resnet8-thin@2"
    records = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        res = run_grow("bench", "--budget", "3e10", "--methods", methods, "--seeds", "0", "--data", "sample",
                       "--subset", "300", "--out", str(out), "--quiet", "--jobs", jobs)
        assert res.returncode == 0, res.stderr
        records[jobs] = json.loads((out / "bench.json").read_text())
        assert (out / "bench.md").is_file() and (out / "acc_vs_macs.png").is_file()
    serial, parallel = (records[j]["cells"] for j in ("1", "2"))
    assert list(parallel) == list(serial)  # same cells, in the same order
    for key, cell in serial.items():
        timeless = {k: v for k, v in cell.items() if k != "train_time_s"}
        assert {k: v for k, v in parallel[key].items() if k != "train_time_s"} == timeless
    assert parallel["width:resnet8-thin@1/seed0"]["same_as"] == "uniform:resnet8-thin/seed0"


def test_parallel_cells_are_pinned_each_to_a_core_of_its_own():
    import os

    from baselines.bench import cpu_slots

    cores = sorted(os.sched_getaffinity(0))
    slots = cpu_slots(len(cores) + 1)
    assert [s["core"] for s in slots[:len(cores)]] == cores and slots[-1]["core"] == cores[0]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("--devices", "gpu0"), "--devices takes distinct CUDA devices"),
    (("--devices", "cuda:0,cuda:0"), "--devices takes distinct CUDA devices"),
    (("--devices", "cuda:0", "--jobs", "2"), "--jobs 2 with 1 --devices"),
    (("--devices", "cuda:0", "--device", "cpu"), "--devices with --device cpu"),
])
def test_bad_parallel_options_are_one_line_exit_2(tmp_path, args, message):
    res = run_grow("bench", "--budget", "3e10", "--methods", "fixed:resnet8-thin", "--seeds", "0",
                   "--out", str(tmp_path / "b"), *args, timeout=120)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_a_cell_failing_in_its_own_process_is_recorded_as_failed(tmp_path):
    from growth.runstore import atomic_write_json

    out = tmp_path / "bench"
    settings = {"budget_flops": 3e10, "data": "sample", "subset": 300, "val_size": None, "target_macs": None,
                "methods": ["fixed:resnet8-thin"], "seeds": [0]}
    cell = out / "cells" / "fixed-resnet8-thin" / "seed0"
    cell.mkdir(parents=True)
    atomic_write_json(out / "bench.json", {"settings": settings, "cells": {}})
    (cell / "notes.txt").write_text("not a run")  # the cell's process refuses to write over it
    res = run_grow("bench", "--budget", "3e10", "--methods", "fixed:resnet8-thin", "--seeds", "0", "--data",
                   "sample", "--subset", "300", "--out", str(out), "--quiet", "--jobs", "2")
    assert res.returncode == 1 and "1 cell(s) failed" in res.stderr and "Traceback" not in res.stderr
    failed = json.loads((out / "bench.json").read_text())["cells"]["fixed:resnet8-thin/seed0"]["failed"]
    assert "exists and is not empty" in failed and "\n" not in failed
    assert (cell / "notes.txt").read_text() == "not a run"


def test_a_cell_process_stopped_by_a_signal_reports_it_without_a_traceback(tmp_path, monkeypatch, one_thread):
    # Ctrl-C reaches every cell's process: each checkpoints (growth.trainer.StopRequest) and says so; the
    # parent leaves the cell out of the record, so that the same command resumes it.
    import multiprocessing

    from baselines import bench
    from growth.config import TrainConfig
    from growth.trainer import RunInterrupted

    def stopped(*args, **kwargs):
        raise RunInterrupted("stopped by SIGINT at step 3; checkpoint saved")

    monkeypatch.setattr(bench, "_run_cell", stopped)
    receiver, sender = multiprocessing.Pipe(duplex=False)
    base = TrainConfig(data="sample", subset=64, budget_flops=1e9)
    bench._cell_process({}, sender, parse_method("grow"), 0, parse_method("grow"), base, (1, 28, 28),
                        {"cells": {}}, tmp_path, None)
    assert receiver.recv() == ("interrupted", "stopped by SIGINT at step 3; checkpoint saved")


def test_with_target_growth_only_uniform_of_a_named_seed_starts_before_its_grow_cell():
    from baselines.bench import _needs_grown

    assert not _needs_grown(parse_method("uniform:resnet20-flat"), None, 2.0)   # X x its own seed: no wait
    assert _needs_grown(parse_method("uniform:resnet20-flat"), None, None)      # the grown MACs: waits
    assert _needs_grown(parse_method("slimming"), None, 2.0)                    # takes the grown MACs anyway
    assert not _needs_grown(parse_method("slimming"), 3e6, None)
    assert _needs_grown(parse_method("scratch"), 3e6, 2.0)                      # trains the grown genotype


def test_target_growth_sizes_each_growth_cell_by_its_own_seed_and_target_macs_does_not(tmp_path):
    from types import SimpleNamespace

    from baselines.bench import _plan
    from growth.config import TrainConfig

    data = SimpleNamespace(num_classes=10, train_y=range(1000))
    shape = (3, 32, 32)
    base = TrainConfig(data="sample", budget_flops=1e12)
    flat = measure_cost(search_spaces.get_genotype("resnet20-flat"), shape).macs
    for method, target_growth, target_macs, expected in (("grow:resnet20-flat", 2.0, None, 2 * flat),
                                                         ("grow-uniform:resnet20-flat", 1.5, None, 1.5 * flat),
                                                         ("grow:resnet20-flat", None, 3e6, None)):
        record = {"settings": {"target_growth": target_growth}, "cells": {}}
        config, _, _ = _plan(parse_method(method), 0, parse_method("grow"), base, data, shape, record, tmp_path,
                             target_macs)
        assert config.target_macs == (pytest.approx(expected) if expected else None), method


RECORDED = Path(__file__).resolve().parents[1] / "runs" / "recorded"


def copy_bench(name: str, tmp_path: Path) -> Path:
    """A recorded bench's files without its weights and checkpoints (the report reads only the JSON)."""
    out = tmp_path / name
    shutil.copytree(RECORDED / name, out, ignore=shutil.ignore_patterns("*.pt"))
    return out


def test_every_method_gets_a_colour_and_a_marker_of_its_own():
    methods = ["grow", "grow-uniform", "grow-price", "scs", "sss", "slimming", "dessilbi-prune", "vt", "net2net",
               "scratch", "uniform:resnet20-thin", "dessilbi:resnet20-thin", "fixed:resnet20", "timm:resnet18",
               *(f"width:resnet20-thin@{m}" for m in (1, 1.25, 1.5, 1.75, 2, 2.5, 3, 4))]
    styles = method_styles(methods)
    assert len({color for color, _ in styles.values()}) == len({marker for _, marker in styles.values()}) == 22
    assert styles["grow"][0] != styles["grow-uniform"][0] and styles["grow"][1] != styles["grow-uniform"][1]
    assert method_styles(methods) == styles  # the same in every figure of a bench


def test_a_same_budget_bench_draws_learning_curves_instead_of_accuracy_against_training_flops(tmp_path):
    out = copy_bench("bench-shape-1e13-entry-rate", tmp_path)
    (out / "acc_vs_train_flops.png").write_bytes(b"left by an older report")
    write_report(out)
    drawn = {p.name for p in out.glob("*.png")}
    assert drawn == {"acc_vs_macs.png", "learning_curves.png", "acc_by_method.png"}  # the stale one is gone
    for name in drawn:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A cell that spent half the budget: accuracy against training FLOPs means something again.
    summary = out / "cells" / "grow-resnet20-flat" / "seed0" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "train_flops": 5e12}))
    write_report(out)
    assert {p.name for p in out.glob("*.png")} == {"acc_vs_macs.png", "acc_vs_train_flops.png", "acc_by_method.png"}


def test_the_per_method_dot_plot_is_drawn_only_where_methods_share_a_size_target():
    def figures(name):
        return bench_figures(json.loads((RECORDED / name / "bench.json").read_text()))

    assert "acc_by_method.png" in figures("bench-cifar10jpeg-1e13-all")         # all sized to grow's 2.62M MACs
    assert "acc_by_method.png" not in figures("bench-cifar10jpeg-3e12-frontier")  # widths 1.75x or more apart


def test_on_a_narrow_macs_range_the_axis_is_linear_few_labels_and_no_point_hides_another():
    from matplotlib.figure import Figure

    from baselines.bench import _spread_axis

    ax = Figure().subplots()
    macs = [2.6015e6, 2.6076e6, 2.6175e6, 2.6175e6, 2.6175e6, 2.6175e6]  # the 1e13 bench: under 1% apart
    xs = _spread_axis(ax, macs)
    assert ax.get_xscale() == "linear"
    labels = [ax.xaxis.get_major_formatter()(t, i) for i, t in enumerate(ax.get_xticks())]
    assert 2 <= len(labels) <= 5 and len(set(labels)) == len(labels) and all(label.endswith("M") for label in labels)
    low, high = ax.get_xlim()
    gaps = sorted(xs)
    assert min(b - a for a, b in zip(gaps, gaps[1:])) > 0.02 * (high - low)  # side by side, none on another
    assert xs[:2] == macs[:2]  # points apart from the others stay where they are
    assert abs(sum(xs[2:]) / 4 - 2.6175e6) < 1  # the four equal ones are spread around their value

    ax = Figure().subplots()
    _spread_axis(ax, [0.68e6, 2.6e6, 10.2e6])  # the frontier bench: a wide range stays logarithmic
    assert ax.get_xscale() == "log"


def test_a_growth_timeline_that_cannot_be_drawn_is_logged_and_never_fails_the_cell(tmp_path):
    from baselines.bench import draw_growth

    cell = tmp_path / "cells" / "grow" / "seed0"
    cell.mkdir(parents=True)
    (cell / "config.json").write_text("{not json")  # a cell whose files cannot be read: the drawing fails
    (cell / "metrics.jsonl").write_text("")
    logged = []
    draw_growth(cell, "grow/seed0", logged.append)
    assert len(logged) == 1 and logged[0].startswith("[bench] grow/seed0: growth.png not drawn (")
    assert "\n" not in logged[0] and not (cell / "growth.png").exists()


def test_how_a_run_is_logged_or_saved_does_not_make_it_another_run():
    from baselines.bench import run_identity
    from growth.config import TrainConfig

    base = TrainConfig(seed="resnet8-thin", data="sample", budget_flops=1e10)
    same = dataclasses.replace(base, tensorboard=False, checkpoint_every_s=5.0)
    other = dataclasses.replace(base, lr=0.05)
    identity = [run_identity(c, None, (1, 28, 28), 10) for c in (base, same, other)]
    assert identity[0] == identity[1] != identity[2]
