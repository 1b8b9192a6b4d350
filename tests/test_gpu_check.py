"""benchmarks/gpu_check.sh, the GPU checks in one script: its CPU smoke mode runs here so that it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_check_script_runs_its_three_parts_in_smoke_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", str(tmp_path)],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "gpu_check.txt").read_text()
    for part in ("## 1. CUDA-only tests", "## 2. training step", "## 3. growth run", "## done in"):
        assert part in log, log
    assert "engine/bare" in (tmp_path / "train_speed.txt").read_text()
    summary = json.loads((tmp_path / "grow" / "summary.json").read_text())
    assert summary["growth_events"] > 0 and summary["train_flops"] <= summary["budget_flops"]
