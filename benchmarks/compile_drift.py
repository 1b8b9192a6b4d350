"""Is a compiled training run the same computation as an eager one? Drift measured against a control.

Two trainers start from the same weights and take the same steps (same batches, augmentation and
DessiLBI updates); the relative distance between their parameters (and BatchNorm buffers) is printed
every few steps. Floating-point training is chaotic: any rounding difference grows step by step, so
equality after the first step is all one can ask. The question is whether compilation adds more than
rounding: the control pair is two *eager* runs, one with every weight multiplied by (1 + 3e-6 noise),
about the size of a fused kernel's rounding difference. If the compiled pair drifts like the control,
compilation changes the trajectory the way a different seed would, and nothing more.

Examples:
    python benchmarks/compile_drift.py                         # resnet20-thin, 60 steps, fp32
    python benchmarks/compile_drift.py --steps 20 --precision bf16
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import torch

from growth.config import TrainConfig
from growth.run import Run
from growth.trainer import Trainer


def relative_distance(a: Trainer, b: Trainer, buffers: bool) -> float:
    def flat(t: Trainer) -> torch.Tensor:
        tensors = t.model.buffers() if buffers else t.model.parameters()
        return torch.cat([x.detach().float().flatten() for x in tensors])

    x, y = flat(a), flat(b)
    return float((x - y).norm() / x.norm())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", default="resnet20-thin", help="the seed network")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--every", type=int, default=10, help="print every N steps")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--noise", type=float, default=3e-6, help="the control's relative weight perturbation")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="compile-drift-"))
    names = itertools.count()

    def trainer(compile: bool) -> Trainer:
        config = TrainConfig(seed=args.seed, data="sample", batch_size=args.batch, budget_flops=1e15, seed_value=0,
                             compile=compile, precision=args.precision, optimizer="dessilbi")
        return Run.open(config, out=root / f"run{next(names)}").trainer()

    reference, compiled, perturbed = trainer(False), trainer(True), trainer(False)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in perturbed.model.parameters():
            p.mul_(1 + args.noise * torch.randn(p.shape, generator=gen).to(p))
    print(f"seed {args.seed}  precision {args.precision}  batch {args.batch}  control noise {args.noise:g}  "
          f"torch {torch.__version__}")
    print(f"{'step':>4}  {'compiled - eager':>28}  {'perturbed eager - eager':>28}")
    print(f"{'':>4}  {'params':>13} {'buffers':>14}  {'params':>13} {'buffers':>14}")
    for step in range(1, args.steps + 1):
        for t in (reference, compiled, perturbed):
            t.train_step(args.batch)
        if step == 1 or step % args.every == 0:
            print(f"{step:>4}  {relative_distance(reference, compiled, False):13.2e} "
                  f"{relative_distance(reference, compiled, True):14.2e}  "
                  f"{relative_distance(reference, perturbed, False):13.2e} "
                  f"{relative_distance(reference, perturbed, True):14.2e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
