"""Fit the growth controller's budget -> size rule to fixed-width sweeps (``frontier:<seed>`` benches).

For each bench directory: the frontier points (width:* cells, mean test accuracy over seeds) and the
best MACs, the vertex of a parabola in log MACs through the best point and its neighbours (the best
measured point itself when it lies at the end of the sweep, flagged as a bound). Then a least-squares
line through log(best MACs) against log(budget) gives the rule's constants,
``best_macs = ref_macs * (budget / ref_budget) ** exponent``.

    python scripts/fit_size_rule.py runs/recorded/bench-cifar10jpeg-3e12-frontier \\
        runs/recorded/bench-cifar10jpeg-1e13 [--ref-budget 1e13]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from baselines.bench import frontier_points


def best_macs(points: list[tuple[float, float]]) -> tuple[float, str]:
    """Vertex of the parabola in log MACs through the best point and its neighbours."""
    i = max(range(len(points)), key=lambda k: points[k][1])
    if i in (0, len(points) - 1) or len(points) < 3:
        return points[i][0], "at the end of the sweep (a bound)"
    (x0, y0), (x1, y1), (x2, y2) = [(math.log(m), a) for m, a in points[i - 1:i + 2]]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
    return math.exp(-b / (2 * a)), "parabola vertex"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="+")
    parser.add_argument("--ref-budget", type=float, default=1e13)
    args = parser.parse_args()
    fits = []
    for bench in args.benches:
        record = json.loads((Path(bench) / "bench.json").read_text())
        budget = record["settings"]["budget_flops"]
        points = frontier_points(list(record["cells"].values()))
        if not points:
            raise SystemExit(f"{bench}: no width:* cells")
        macs, how = best_macs(points)
        fits.append((budget, macs))
        shown = ", ".join(f"{m / 1e6:.2f}M: {100 * a:.2f}%" for m, a in points)
        print(f"{budget:.3g} FLOPs: frontier {shown}; best {macs / 1e6:.2f}M MACs ({how})")
    if len(fits) < 2:
        return
    xs = [math.log(b / args.ref_budget) for b, _ in fits]
    ys = [math.log(m) for _, m in fits]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    exponent = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    ref = math.exp(my - exponent * mx)
    print(f"rule: best_macs = {ref / 1e6:.2f}M * (budget / {args.ref_budget:.3g}) ** {exponent:.2f}")


if __name__ == "__main__":
    main()
