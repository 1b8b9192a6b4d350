"""What a loaded dataset is: :class:`Dataset` (uint8 ``[N, C, H, W]`` splits), :class:`DataError`,
and the seeded validation carve-out that turns a format loader's train/test pair into a Dataset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from search_spaces.errors import GrowthError


class DataError(GrowthError, ValueError):
    """Bad data spec or missing data; ``str(e)`` is one line saying what and how to fix it.

    Example::

        >>> from growth.data import load_dataset
        >>> try:
        ...     load_dataset("no-such-thing")
        ... except DataError as e:
        ...     print("\\n" in str(e))
        False
    """

    def __init__(self, message: str) -> None:
        # Callers print this as a single CLI error line; never let a newline in.
        super().__init__(" ".join(str(message).split()))


def one_class_message(where: str, classes: list[str]) -> str:
    """What is wrong with data of fewer than two classes (``where``: the data set, or the image folder's train/).

    >>> one_class_message("tree/train", ["cat"]).split(";")[0]
    'tree/train has one class (cat)'
    """
    return (f"{where} has one class ({classes[0] if classes else 'none'}); classification needs at least two "
            "classes (an image folder: one train/<class>/ and test/<class>/ folder per class)")


@dataclass
class Dataset:
    """Image-classification data held as uint8 ``[N, C, H, W]`` tensors.

    ``val_*`` is carved out of the original training split; ``mean``/``std``
    are per-channel statistics of ``train_x`` in [0, 1] units.

    Example::

        >>> from growth.data import load_dataset
        >>> ds = load_dataset("sample")
        >>> ds.in_chans, ds.image_size, ds.describe()["sizes"]
        (1, 28, {'train': 5400, 'val': 600, 'test': 1000})
    """

    name: str
    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        """Number of image channels (1 for grayscale sources, else 3)."""
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Image height in pixels (images are square for all built-in sets)."""
        return int(self.train_x.shape[2])

    def to(self, device: torch.device | str) -> Dataset:
        """Return a copy with every tensor moved to ``device``.

        Example::

            >>> from growth.data import load_dataset
            >>> ds = load_dataset("sample").to("cpu")
        """
        moved = {
            f: getattr(self, f).to(device)
            for f in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        }
        return dataclasses.replace(self, classes=list(self.classes), **moved)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary (name, split sizes, classes, image geometry, mean/std).

        Example::

            >>> from growth.data import load_dataset
            >>> load_dataset("sample").describe()["num_classes"]
            10
        """
        return {
            "name": self.name,
            "sizes": {
                "train": int(self.train_x.shape[0]),
                "val": int(self.val_x.shape[0]),
                "test": int(self.test_x.shape[0]),
            },
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "image_size": self.image_size,
            "image_hw": [int(self.train_x.shape[2]), int(self.train_x.shape[3])],
            "in_chans": self.in_chans,
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }


@dataclass
class _Raw:
    """A dataset before the val carve-out: train/test uint8 NCHW tensors + labels."""

    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def _split(
    name: str, raw: _Raw, *, val_size: int | None, subset: int | None, split_seed: int
) -> Dataset:
    n = int(raw.train_x.shape[0])
    if val_size is None:
        big = name in ("cifar10", "cifar100") or n >= 50_000
        val_size = 5000 if big else int(n * 0.1 + 0.5)
    if val_size >= n:
        raise DataError(
            f"val_size={val_size} leaves no training images: {name} has only {n} training images; "
            f"pass a val_size below {n}"
        )
    gen = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(n, generator=gen)
    val_idx = perm[:val_size].sort().values
    # The rest of perm is already a seeded shuffle, so its head is a seeded subset.
    train_idx = perm[val_size:]
    if subset is not None:
        if subset > len(train_idx):  # a run would train on fewer images than it asked for, and say so nowhere
            raise DataError(
                f"subset={subset} is more than the {len(train_idx)} training images {name} has ({n} less the "
                f"{val_size} validation images); pass a subset of at most {len(train_idx)}, or none for all"
            )
        train_idx = train_idx[:subset]
    train_idx = train_idx.sort().values
    train_x = raw.train_x.index_select(0, train_idx)
    mean, std = _channel_stats(train_x)
    return Dataset(
        name=name,
        classes=list(raw.classes),
        train_x=train_x,
        train_y=raw.train_y.index_select(0, train_idx),
        val_x=raw.train_x.index_select(0, val_idx),
        val_y=raw.train_y.index_select(0, val_idx),
        test_x=raw.test_x.contiguous(),
        test_y=raw.test_y.contiguous(),
        mean=mean,
        std=std,
    )


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of uint8 images in [0, 1] units.

    Uses a 256-bin histogram per channel: exact, and ~5x faster than summing
    squares in int64 (which needs an 8x larger temporary). A std is at least one
    grey level (1/255): a channel that never varies (every image with the same
    blue, say) is centred, not divided by zero into NaN.
    """
    levels = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        count = hist.sum()
        mean = (hist * levels).sum() / count
        var = (hist * (levels - mean) ** 2).sum() / count
        means.append(float(mean) / 255.0)
        stds.append(max(float(var.sqrt()), 1.0) / 255.0)
    return tuple(means), tuple(stds)
