"""Train one pruning baseline with a chosen minimum pre-training, and so a chosen start network.

The pruning baselines choose the dense network they start from by a rule (baselines/pruning.py,
**Start**): the largest scaling of the seed whose pre-training covers ``min_pretrain_epochs`` (1 by
default), between 2x and 8x the target's MACs. This script runs one method with another
``min_pretrain_epochs`` (a larger value gives a smaller start, pre-trained longer), on the same data,
budget, target and seed value as a bench cell, to check how much the rule's choice costs the baseline.

    python scripts/prune_start.py --method slimming --budget 1e13 --target-macs 2617504 \\
        --min-pretrain-epochs 100 --seed-value 0 --data ../shared/data/cifar10-jpeg \\
        --out runs/recorded/prune-start-1e13/slimming-2x-seed0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from baselines import MethodOptions, configure, parse_method
from growth.config import TrainConfig
from growth.data import load_dataset
from growth.run import Run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, choices=("slimming", "sss", "dessilbi-prune"))
    ap.add_argument("--budget", type=float, required=True)
    ap.add_argument("--target-macs", type=float, required=True)
    ap.add_argument("--min-pretrain-epochs", type=float, required=True)
    ap.add_argument("--seed-value", type=int, default=0)
    ap.add_argument("--data", default="sample")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    base = TrainConfig(data=args.data, budget_flops=args.budget, seed_value=args.seed_value)
    data = load_dataset(base.data)
    shape = tuple(int(d) for d in data.train_x.shape[1:])
    options = MethodOptions(target_macs=args.target_macs, extra={
        "input_shape": shape, "num_classes": data.num_classes, "train_size": len(data.train_y),
        args.method: {"min_pretrain_epochs": args.min_pretrain_epochs}})
    config, controller = configure(parse_method(args.method), base, options)
    summary = Run.open(config, args.out, kind="bench").fit(controller, None)
    keys = ("test_acc", "macs", "start", "start_macs", "pretrain_epochs", "start_rule", "target_met", "widths")
    print(json.dumps({k: summary.get(k) for k in keys}))


if __name__ == "__main__":
    main()
