"""One run on several processes: ``torchrun --nproc-per-node N -m growth.cli ...`` (or multi-node torchrun).

Under torchrun (the ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` variables are set) :func:`setup` joins the
process group: gloo for CPU tensors, NCCL for CUDA tensors when CUDA is available (each process then
trains on ``cuda:LOCAL_RANK``). Without torchrun, or with ``WORLD_SIZE=1``, nothing is initialised and
every helper answers as for the one process it is: a single process behaves exactly as before.

How a run is split (see :class:`growth.trainer.Trainer`): every rank draws the same global batch
(the same epoch permutation, the same augmentation stream) and trains on its contiguous shard of it;
DistributedDataParallel averages the gradients, and the loss of a shard is weighted by its share of
the batch, so the gradient is the global batch's mean, as in one process. The FLOP ledger counts the
global batch once (it is the same on every rank). BatchNorm stays plain BatchNorm per rank: its
batch statistics are those of the rank's shard (SyncBatchNorm runs on GPUs only, and the growth
operators resize ``BatchNorm2d`` layers); DDP broadcasts rank 0's running statistics at every step.
Only rank 0 (:func:`is_main`) writes the run directory and draws progress; growth decisions are made
on rank 0 and broadcast (:func:`from_main`).
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def launched() -> bool:
    """Whether this process was started by torchrun as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup() -> None:
    """Join torchrun's process group (once; nothing without torchrun)."""
    if not launched() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group("gloo")
    atexit.register(dist.destroy_process_group)


def active() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes the run directory and draws progress."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` for CUDA under torchrun, else ``device``."""
    if active() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (a picklable object); ``value`` itself in one process."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order (``[value]`` in one process)."""
    if not active():
        return [value]
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def main_does(make: Callable[[], T]) -> T | None:
    """Rank 0 calls ``make()`` and broadcasts whether it failed: an error there (a :class:`GrowthError`,
    one line) is raised on every rank, so that no rank waits for one that stopped. Returns rank 0's
    result on rank 0, None elsewhere."""
    from search_spaces.errors import GrowthError

    result: T | None = None
    error: str | None = None
    if is_main():
        try:
            result = make()
        except GrowthError as err:
            error = str(err)
            if not active():
                raise
            from_main(error)
            raise
    error = from_main(error)
    if error is not None:
        from .runstore import RunError

        raise RunError(error)
    return result


def shard(batch: int) -> tuple[int, int]:
    """This rank's contiguous slice ``[start, stop)`` of a global batch of ``batch`` images."""
    n, r = world_size(), rank()
    return batch * r // n, batch * (r + 1) // n


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel (which broadcasts rank 0's weights and buffers); itself in one
    process. Made again after every growth event: DDP's buckets are fixed to the parameters it wrapped."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
