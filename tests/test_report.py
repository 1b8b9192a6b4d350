"""grow report RUN: a run's growth timeline (growth.report), drawn from its files into growth.png."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import one_line_error, run_grow, snapshot
from PIL import Image

import search_spaces
from growth.graph import groups_of_genotype
from growth.report import growth_report

RECORDED = Path(__file__).resolve().parents[1] / "runs" / "recorded"
GROWN = RECORDED / "bench-shape-1e13-entry-rate" / "cells" / "grow-resnet20-flat" / "seed0"
NOT_GROWN = RECORDED / "bench-cifar10jpeg-1e13-all" / "cells" / "grow" / "seed0"  # the size rule kept the seed


def copy_run(source: Path, tmp_path: Path) -> Path:
    """A recorded run's files, without its weights and checkpoint (the report reads only the JSON)."""
    run = tmp_path / source.parent.name / source.name
    run.mkdir(parents=True)
    for path in source.iterdir():
        if path.suffix in (".json", ".jsonl"):
            shutil.copy(path, run / path.name)
    return run


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()  # a whole, readable PNG
        return image.size


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_timeline_of_a_grown_run_is_what_its_growth_log_says_in_three_panels(tmp_path: Path) -> None:
    run = copy_run(GROWN, tmp_path)
    timeline = growth_report(run)

    width, height = image_size(run / "growth.png")
    assert 1000 <= width <= 1200 and 850 <= height <= 1100  # (a), (b) and (c)
    events = lines(run / "growth.jsonl")
    checks = [e for e in events if e["event"] == "check"]
    assert timeline.checks == [c["train_flops"] for c in checks] and len(timeline.checks) == 4
    assert len(timeline.groups) == 12 and len(timeline.scores) == 12
    for k, check in enumerate(checks):  # the heat map holds every group's logged score at every check
        assert {g: timeline.scores[i][k] for i, g in enumerate(timeline.groups)} == check["scores"]
        assert timeline.chosen[k] == check["selected"]
        assert timeline.windows[k][1] == check["train_flops"] > timeline.windows[k][0]
    assert timeline.events == sorted({e["train_flops"] for e in events if e["event"] == "widen"})
    # the step lines start at the seed's widths and end at the final network's
    seed = search_spaces.get_genotype("resnet20-flat")
    final = search_spaces.genotype_from_dict(json.loads((run / "genotype.json").read_text()))
    assert {g: w[0] for g, w in timeline.widths.items()} == {g.name: (0.0, g.width) for g in groups_of_genotype(seed)}
    assert {g: w[-1][1] for g, w in timeline.widths.items()} == {g.name: g.width for g in groups_of_genotype(final)}
    assert [a for _, a in timeline.val_acc] == [m["val_acc"] for m in lines(run / "metrics.jsonl")]
    assert timeline.test_acc == (pytest.approx(9999985854120.0), 0.654)
    assert timeline.note == "" and "4 checks x 12 channel groups" in timeline.describe()


def test_a_run_that_did_not_grow_gets_the_width_and_accuracy_panels_and_says_why(tmp_path: Path) -> None:
    grown = growth_report(copy_run(GROWN, tmp_path))
    run = copy_run(NOT_GROWN, tmp_path)
    timeline = growth_report(run)

    assert timeline.checks == [] and timeline.events == [] and timeline.scores == [[] for _ in timeline.groups]
    assert timeline.note.startswith("no growth: the plan kept the seed")
    assert "panels (a) and (c) only" in timeline.describe()
    assert all(len(w) == 1 for w in timeline.widths.values())  # flat step lines at the seed's widths
    assert len(timeline.val_acc) == len(lines(run / "metrics.jsonl")) == 10
    (width, height), (_, three_panels) = image_size(run / "growth.png"), image_size(grown.png)
    assert 1000 <= width <= 1200 and 500 <= height < three_panels - 200  # no heat map


@pytest.mark.slow
def test_grow_report_draws_a_tiny_growing_runs_timeline_and_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_grow("--seed", "resnet8-thin", "--data", "sample", "--subset", "1000", "--budget", "6e10", "--seed-value",
             "0", "--target-macs", "1.2e6", "--growth-steps", "8", "--quiet", "--out", str(run), check=True)
    report = run_grow("report", str(run), check=True)

    assert report.stdout.strip().startswith(f"wrote {run / 'growth.png'} (")
    image_size(run / "growth.png")
    timeline = growth_report(run, draw=False)
    events = lines(run / "growth.jsonl")
    assert len(timeline.checks) == sum(e["event"] == "check" for e in events) >= 2
    assert f"{len(timeline.checks)} checks x {len(timeline.groups)} channel groups" in report.stdout
    assert timeline.events == sorted({e["train_flops"] for e in events if e["event"] == "widen"}) != []
    summary = json.loads((run / "summary.json").read_text())
    final = search_spaces.genotype_from_dict(json.loads((run / "genotype.json").read_text()))
    assert final.compact() == summary["widths"]
    assert {g: w[-1][1] for g, w in timeline.widths.items()} == {g.name: g.width for g in groups_of_genotype(final)}

    elsewhere = tmp_path / "notes"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("not a run")
    before = snapshot(elsewhere)
    one_line_error(run_grow("report", str(elsewhere)), str(elsewhere), "neither a run directory")
    assert snapshot(elsewhere) == before
