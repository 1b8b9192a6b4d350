"""BatchNorm + ReLU, forward and backward, at the shapes of a thin ResNet's stages: eager against compiled,
channels-last against NCHW, fp32 against bf16, side by side in one process.

Why it matters: a thin network on a CPU is bound by memory, not arithmetic; its convolutions are fast in
channels-last layout, but BatchNorm over a handful of channels is not, and it is a large share of the step
(see runs/recorded/speed/README.md). Times are medians of ``--repeats`` calls, in milliseconds.

Examples:
    python benchmarks/batchnorm_layout.py                      # the shapes of resnet20-thin, batch 128
    python benchmarks/batchnorm_layout.py --shapes 16x32,32x16 --batch 256
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch._dynamo
import torch.nn.functional as F


def median_ms(fn: Callable[[], None], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bn_relu(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor,
            bias: torch.Tensor) -> torch.Tensor:
    return F.relu(F.batch_norm(x, mean, var, weight, bias, training=True, momentum=0.1, eps=1e-5))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="4x32,8x16,16x8", help="channels x height, comma-separated")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"batch {args.batch}  threads {torch.get_num_threads()}  torch {torch.__version__}")
    print(f"{'dtype':<6} {'C x H':<7} {'layout':<14} {'eager ms':>9} {'compiled ms':>12}")
    for dtype in (torch.float32, torch.bfloat16):
        for shape in args.shapes.split(","):
            channels, size = (int(v) for v in shape.split("x"))
            for layout in (torch.channels_last, torch.contiguous_format):
                torch._dynamo.reset()  # each case compiles afresh (not a recompile counted against the limit)
                compiled = torch.compile(bn_relu, dynamic=False)
                x = torch.randn(args.batch, channels, size, size, dtype=dtype).contiguous(memory_format=layout)
                x.requires_grad_()
                grad = torch.randn_like(x)
                weight = torch.ones(channels, requires_grad=True)
                bias = torch.zeros(channels, requires_grad=True)
                mean, var = torch.zeros(channels), torch.ones(channels)

                def step(fn: Callable[..., torch.Tensor]) -> Callable[[], None]:
                    return lambda: fn(x, mean, var, weight, bias).backward(grad)

                name = "channels-last" if layout is torch.channels_last else "NCHW"
                print(f"{str(dtype).split('.')[1]:<6} {shape:<7} {name:<14} "
                      f"{median_ms(step(bn_relu), args.repeats):9.2f} "
                      f"{median_ms(step(compiled), args.repeats):12.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
