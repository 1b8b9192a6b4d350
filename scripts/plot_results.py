"""Draw the README's accuracy-vs-MACs figure: the fixed-width frontier of each budget and growth's runs.

Reads recorded bench directories (their frontier cells, ``width:*``, mean ± std over seed values) and
single run directories (``summary.json``), one panel per budget:

    B1=runs/recorded/bench-cifar10jpeg-1e13 B3=runs/recorded/bench-cifar10jpeg-3e13 A=runs/recorded/ablation-3e13
    python scripts/plot_results.py --out runs/recorded/results.png \
        --panel 1e13 $B1 "grow, wd 1e-4=$B1/cells/grow/seed0,$B1/cells/grow/seed1,$B1/cells/grow/seed2" \
            "grow=runs/recorded/ablation-1e13/grow-seed0" \
        --panel 3e13 $B3 "grow=$A/grow-wd5e-4-seed0,$A/grow-wd5e-4-seed1" \
            "grow, wd 1e-4=$B3/cells/grow/seed0" "scratch=$B3/cells/scratch/seed0"

Each ``LABEL=DIR[,DIR...]`` is drawn as one point: mean MACs and mean ± std test accuracy of its runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def frontier(bench: Path) -> list[tuple[float, float, float]]:
    """(MACs, mean test acc %, std %) of the bench's width:* cells, by MACs."""
    cells = json.loads((bench / "bench.json").read_text())["cells"].values()
    by_method: dict[str, list[dict]] = {}
    for cell in cells:
        if cell["method"].startswith("width:") and "failed" not in cell:
            by_method.setdefault(cell["method"], []).append(cell)
    return sorted(_point([c["macs"] for c in cs], [c["test_acc"] for c in cs]) for cs in by_method.values())


def runs(dirs: list[str]) -> tuple[float, float, float]:
    """(mean MACs, mean test acc %, std %) of run directories."""
    summaries = [json.loads((Path(d) / "summary.json").read_text()) for d in dirs]
    return _point([s["macs"] for s in summaries], [s["test_acc"] for s in summaries])


def _point(macs: list[float], accs: list[float]) -> tuple[float, float, float]:
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return statistics.fmean(macs), 100 * statistics.fmean(accs), 100 * std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panel", nargs="+", action="append", required=True, metavar="ARG",
                        help="BUDGET BENCH_DIR [LABEL=DIR[,DIR...] ...]")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.panel), figsize=(5.5 * len(args.panel), 4.2), dpi=120, squeeze=False)
    for ax, (budget, bench, *groups) in zip(axes[0], args.panel):
        curve = frontier(Path(bench))
        ax.errorbar([p[0] for p in curve], [p[1] for p in curve], yerr=[p[2] for p in curve], color="tab:gray",
                    marker="s", capsize=3, label="fixed width, SGD (frontier)")
        for group in groups:
            label, _, dirs = group.partition("=")
            paths = dirs.split(",")
            macs, acc, std = runs(paths)
            seeds = f" ({len(paths)} seeds)" if len(paths) > 1 else " (1 seed)"
            ax.errorbar([macs], [acc], yerr=[std], fmt="o", ms=8, capsize=3, label=label + seeds)
        ax.set_xscale("log")
        ax.set_xlabel("inference MACs per image")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"CIFAR-10, {float(budget):.0e} training FLOPs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(args.out)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp)
    tmp.replace(out)
    print(out)


if __name__ == "__main__":
    main()
