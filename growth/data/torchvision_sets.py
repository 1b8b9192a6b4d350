"""torchvision's cifar10 / cifar100 / fashion-mnist: read from the cache dir, downloaded when
missing, Debian's Fashion-MNIST package as the offline fallback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import _CACHE_VERSION, _digest, _read_cache, _walk_files, _write_cache
from .dataset import DataError, _Raw
from .idx import _load_idx_dir

_TORCHVISION_SETS = ("cifar10", "cifar100", "fashion-mnist")
# Where Debian's `dataset-fashion-mnist` package puts the original IDX files;
# used as an offline fallback for the `fashion-mnist` spec.
_DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _tv_class(name: str) -> Any:
    from torchvision import datasets

    return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100, "fashion-mnist": datasets.FashionMNIST}[name]


def _tv_expected(name: str) -> str:
    return {
        "cifar10": "cifar-10-batches-py/",
        "cifar100": "cifar-100-python/",
        "fashion-mnist": "FashionMNIST/raw/",
    }[name]


def _tv_to_raw(train: Any, test: Any) -> _Raw:
    def conv(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(np.asarray(ds.data), dtype=torch.uint8)
        # CIFAR stores NHWC numpy, (Fashion-)MNIST stores NHW tensors.
        x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)
        return x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    (tx, ty), (vx, vy) = conv(train), conv(test)
    return _Raw(list(train.classes), tx, ty, vx, vy)


def _download(name: str, root: Path) -> None:
    """Fetch a torchvision dataset into ``root`` (separate so tests can forbid network)."""
    cls = _tv_class(name)
    cls(root=str(root), train=True, download=True)
    cls(root=str(root), train=False, download=True)


def _load_torchvision(name: str, cache: Path) -> _Raw:
    root = cache / name
    cache_file = None
    if root.is_dir():
        fp = _digest([_CACHE_VERSION, name, _walk_files(root)])
        cache_file = cache / "decoded" / f"{name}-{fp[:16]}.pt"
        hit = _read_cache(cache_file)
        if hit is not None:
            return hit

    cls = _tv_class(name)

    def from_disk() -> _Raw:
        return _tv_to_raw(cls(root=str(root), train=True), cls(root=str(root), train=False))

    try:
        raw = from_disk()
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        raw = None
    if raw is None and name == "fashion-mnist" and _has_debian_fashion_mnist():
        # Offline fallback: Debian's dataset-fashion-mnist package, no cache needed.
        return _load_idx_dir(lambda f: (_DEBIAN_FASHION_MNIST / f).read_bytes(), _FASHION_CLASSES)
    if raw is None:
        offline = os.environ.get("GROWTH_OFFLINE", "") not in ("", "0")
        why = "GROWTH_OFFLINE is set"
        if not offline:
            try:
                _download(name, root)
                raw = from_disk()
            except Exception as e:  # network errors come in many types
                first = (str(e).strip().splitlines() or [""])[0][:160]
                why = f"download failed: {type(e).__name__}: {first}"
        if raw is None:
            raise DataError(
                f"{name} not found in {root} ({why}); put torchvision's {_tv_expected(name)} there, "
                f"set GROWTH_DATA_DIR to a directory whose {name}/ holds it, "
                "or pass --data /path/to/imagefolder"
            )
    fp = _digest([_CACHE_VERSION, name, _walk_files(root)])
    _write_cache(cache / "decoded" / f"{name}-{fp[:16]}.pt", raw, stale_glob=f"{name}-*.pt")
    return raw


_FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def _has_debian_fashion_mnist() -> bool:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return all((_DEBIAN_FASHION_MNIST / n).is_file() for n in names)
