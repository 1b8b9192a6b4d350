"""Dataset layer: load image-classification data as uint8 tensors, once, fast.

Every dataset ends up as plain ``uint8 [N, C, H, W]`` tensors split into
train / val / test, so that the training loop can keep the whole dataset on
the accelerator and do augmentation and normalisation batched there.

Accepted spec strings for :func:`load_dataset`:

* ``sample`` -- the small Fashion-MNIST subset shipped in ``growth/sample_data``
  (6,000 train / 1,000 test, 28x28 grayscale; works offline).
* ``cifar10``, ``cifar100``, ``fashion-mnist`` -- torchvision's format, looked
  up in ``<cache_dir>/<name>`` and downloaded there when missing.
* a directory (or ``imagefolder:DIR``) holding ``train/<class>/*`` and
  ``test/<class>/*`` image files.

Decoded tensors are cached in the cache dir (``$GROWTH_DATA_DIR``, else
``~/.cache/growth``), so only the first load of an image tree is slow.

Example::

    >>> ds = load_dataset("sample", subset=1000)
    >>> ds.train_x.shape, ds.num_classes
    (torch.Size([1000, 1, 28, 28]), 10)

The package, by reason to change: :mod:`.dataset` (the Dataset type, DataError, the
validation carve-out), :mod:`.augmentation` (batched augmentation and normalisation on the
device), one module per on-disk format (:mod:`.idx` for the shipped sample,
:mod:`.torchvision_sets`, :mod:`.imagefolder`) and :mod:`.cache` (the decoded-tensor cache).
"""

from __future__ import annotations

import os
from pathlib import Path

from .augmentation import augment, normalize
from .cache import _resolve_cache_dir
from .dataset import DataError, Dataset, _split, one_class_message
from .idx import _load_sample
from .imagefolder import _load_imagefolder
from .torchvision_sets import _TORCHVISION_SETS, _load_torchvision

__all__ = ["DataError", "Dataset", "load_dataset", "normalize", "augment"]

_ACCEPTED_FORMS = (
    "'sample', 'cifar10', 'cifar100', 'fashion-mnist', or an existing directory "
    "(optionally written 'imagefolder:DIR') containing train/<class>/* and test/<class>/*"
)


def load_dataset(
    spec: str,
    *,
    val_size: int | None = None,
    subset: int | None = None,
    split_seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Load a dataset by spec and carve a seeded validation split out of train.

    ``val_size`` defaults to 5,000 for cifar10/cifar100 and for any training
    split of at least 50,000 images, else 10% of train (rounded). ``subset=N``
    then keeps N of the remaining training images (seeded; a ``DataError`` naming
    the set's size when fewer are available). ``split_seed`` drives both choices.

    Example::

        >>> ds = load_dataset("sample", val_size=500, subset=2000, split_seed=1)
        >>> len(ds.val_y), len(ds.train_y)
        (500, 2000)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty data spec; use one of {_ACCEPTED_FORMS}")
    if subset is not None and subset <= 0:
        raise DataError(f"subset must be a positive number of training images, got {subset}")
    if val_size is not None and val_size < 0:
        raise DataError(f"val_size must be >= 0, got {val_size}")
    cache = _resolve_cache_dir(cache_dir)

    key = spec.strip()
    if key.lower() == "sample":
        name, raw = "sample", _load_sample()
    elif key.lower() in _TORCHVISION_SETS:
        name = key.lower()
        raw = _load_torchvision(name, cache)
    else:
        path = key[len("imagefolder:"):] if key.startswith("imagefolder:") else key
        root = Path(path).expanduser()
        if root.exists() and not root.is_dir():
            raise DataError(
                f"data path {root} is a file, not a directory; pass a directory containing train/<class>/* "
                "and test/<class>/* (or one of 'sample', 'cifar10', 'cifar100', 'fashion-mnist')"
            )
        if not root.is_dir():
            if key.startswith("imagefolder:") or _looks_like_path(path):
                raise DataError(
                    f"data directory {root} does not exist; pass an existing directory containing "
                    "train/<class>/* and test/<class>/*"
                )
            raise DataError(f"unknown dataset {spec!r}; accepted: {_ACCEPTED_FORMS}")
        root = root.resolve()
        name = f"imagefolder:{root}"
        raw = _load_imagefolder(root, cache)

    if len(raw.classes) < 2:
        where = f"{name[len('imagefolder:'):]}/train" if name.startswith("imagefolder:") else name
        raise DataError(one_class_message(where, raw.classes))
    return _split(name, raw, val_size=val_size, subset=subset, split_seed=split_seed)


def _looks_like_path(s: str) -> bool:
    return os.sep in s or "/" in s or s.startswith((".", "~"))
