"""Speed of a full training step with DessiLBI versus momentum SGD, side by side.

Both optimizers train their own copy of the same model on the same fixed batch inside one
process; repetitions are interleaved (alternating which goes first) after a warm-up, and
the median step time is reported, together with the median time of ``optimizer.step()``
alone. Target: DessiLBI / SGD <= 1.10 for the full step on ResNet-20, batch 128, 32x32.

``--per-layer-groups`` gives every penalised weight its own param group and λ, as growth does
(growth.calibration.split_lam_groups): the layout in which a per-layer update loop was slowest.

Example:
    python benchmarks/dessilbi_step.py --steps 30
    python benchmarks/dessilbi_step.py --steps 30 --per-layer-groups
    python benchmarks/dessilbi_step.py --steps 10 --batch 32 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from growth.dessilbi import DessiLBI, dessilbi_param_groups


def _load_model(name: str) -> nn.Module:
    try:
        import search_spaces
    except ImportError as exc:  # the registry is a sibling package of this project
        sys.exit(f"cannot import search_spaces ({exc}); install the project (pip install -e .)")
    try:
        return search_spaces.create_model(name)
    except Exception as exc:  # noqa: BLE001 - report any registry failure plainly
        sys.exit(f"search_spaces.create_model({name!r}) failed: {exc!r}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _make_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               device: torch.device) -> Callable[[], tuple[float, float]]:
    """One full training step; returns (total seconds, optimizer.step() seconds)."""

    def step() -> tuple[float, float]:
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        _sync(device)
        t1 = time.perf_counter()
        opt.step()
        _sync(device)
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1

    return step


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20", help="search_spaces seed name")
    ap.add_argument("--steps", type=int, default=30, help="timed repetitions per optimizer")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per optimizer first")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32, help="image side")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--channels-last", action="store_true", help="use channels_last memory")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--per-layer-groups", action="store_true", help="one param group (and λ) per penalised "
                    "weight, as growth runs DessiLBI")
    args = ap.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    base = _load_model(args.model).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    base = base.to(memory_format=fmt)
    m_sgd, m_lbi = copy.deepcopy(base), copy.deepcopy(base)
    m_sgd.train()
    m_lbi.train()
    opt_sgd = torch.optim.SGD(m_sgd.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.wd)
    groups = dessilbi_param_groups(m_lbi)
    if args.per_layer_groups:
        groups = [single for g in groups for single in (
            [{**g, "params": [p], "lam": 1.0 + 0.01 * i} for i, p in enumerate(g["params"])]
            if g["penalty"] is not None else [g])]
    opt_lbi = DessiLBI(groups, lr=args.lr, kappa=1.0, nu=100.0, lam=1.0, momentum=0.9, weight_decay=args.wd)

    x = torch.randn(args.batch, 3, args.size, args.size, device=device).to(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch,), device=device)
    runs = {"sgd": _make_step(m_sgd, opt_sgd, x, y, device),
            "dessilbi": _make_step(m_lbi, opt_lbi, x, y, device)}

    for _ in range(args.warmup):
        for f in runs.values():
            f()
    totals: dict[str, list[float]] = {k: [] for k in runs}
    opt_only: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for i in range(args.steps):
        # Alternate the order so neither optimizer always runs on a warmer cache.
        for k in (names if i % 2 == 0 else names[::-1]):
            tot, ost = runs[k]()
            totals[k].append(tot)
            opt_only[k].append(ost)

    n_params = sum(p.numel() for p in base.parameters())
    print(f"model={args.model} params={n_params / 1e6:.3f}M batch={args.batch} "
          f"size={args.size} device={device} threads={torch.get_num_threads()} "
          f"channels_last={args.channels_last} per_layer_groups={args.per_layer_groups} steps={args.steps} "
          f"warmup={args.warmup}")
    med = {k: statistics.median(v) for k, v in totals.items()}
    med_opt = {k: statistics.median(v) for k, v in opt_only.items()}
    for k in names:
        print(f"{k:>9}: step {med[k] * 1e3:8.2f} ms (median)   optimizer.step() "
              f"{med_opt[k] * 1e3:7.2f} ms")
    ratio = med["dessilbi"] / med["sgd"]
    print(f"ratio dessilbi/sgd (full step): {ratio:.3f}   "
          f"optimizer.step() overhead: {(med_opt['dessilbi'] - med_opt['sgd']) * 1e3:+.2f} ms")
    return ratio


if __name__ == "__main__":
    main()
