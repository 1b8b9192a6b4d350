#!/usr/bin/env bash
# The GPU checks, in one script that finishes within about 8 minutes on one GPU:
#   1. the CUDA-only tests (skipped on a machine without CUDA),
#   2. the engine's training step against a bare PyTorch loop on the same device (benchmarks/train_speed.py:
#      compiled, fp32 and bf16; target engine/bare within 10%),
#   3. a growth run at 1e15 FLOPs on CIFAR-10 (the plan's 5 events at 5 epochs each, then the final network),
# writing their figures under runs/recorded/gpu/ (train_speed.txt, the growth run's directory grow/ and its
# printed summary grow.txt, gpu_check.txt with the command, the device and the times).
#
#   benchmarks/gpu_check.sh                       # on a GPU machine, from the repository root
#   benchmarks/gpu_check.sh --smoke DIR           # the same three parts on the CPU at toy sizes, into DIR
#                                                 # (the test suite runs this, so the script cannot rot)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

if [[ "${1:-}" == "--smoke" ]]; then
    out=${2:?--smoke needs an output directory}
    device=cpu
    speed=(--device cpu --models resnet8-thin --modes eager --precisions fp32 --steps 2 --block 1 --warmup 1)
    grow=(--seed resnet8-thin --budget 3e10 --data sample --subset 512 --target-macs 1.2e6 --check-epochs 1)
else
    out=runs/recorded/gpu
    device=cuda
    speed=(--device cuda --models resnet20-thin,resnet20 --modes compiled --precisions fp32,bf16 --steps 40)
    grow=(--seed resnet20-thin --budget 1e15 --data ../shared/data/cifar10-jpeg)
    "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device here')"
fi
mkdir -p "$out"
log="$out/gpu_check.txt"
{
    echo "# benchmarks/gpu_check.sh $*   ($(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD 2>/dev/null || echo -))"
    "$PYTHON" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
} > "$log"

start=$SECONDS
echo "## 1. CUDA-only tests" >> "$log"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_dessilbi.py -k cuda 2>&1 | tail -3 >> "$log"

echo "## 2. training step: engine against a bare loop ($((SECONDS - start)) s in)" >> "$log"
"$PYTHON" benchmarks/train_speed.py "${speed[@]}" > "$out/train_speed.txt" 2>&1
tail -n 20 "$out/train_speed.txt" >> "$log"

echo "## 3. growth run: grow ${grow[*]} --device $device ($((SECONDS - start)) s in)" >> "$log"
rm -rf "$out/grow"
"$PYTHON" -m growth.cli "${grow[@]}" --device "$device" --seed-value 0 --quiet --out "$out/grow" \
    > "$out/grow.txt" 2>&1
cat "$out/grow.txt" >> "$log"
echo "## done in $((SECONDS - start)) s" >> "$log"
cat "$log"
