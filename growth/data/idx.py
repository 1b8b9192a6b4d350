"""The IDX format (MNIST / Fashion-MNIST files) and the shipped ``sample`` set written in it."""

from __future__ import annotations

import gzip
import json
import struct
from importlib import resources
from typing import Callable

import numpy as np
import torch

from .dataset import DataError, _Raw


def _read_idx(data: bytes, what: str = "IDX data") -> np.ndarray:
    """Parse an (uncompressed) IDX file of unsigned bytes, the MNIST/Fashion-MNIST format."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{what} is not an unsigned-byte IDX file; re-create it with scripts/make_sample_data.py")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{what} is truncated ({arr.size} bytes for shape {dims}); re-create it")
    return arr.reshape(dims)


def _idx_pair_to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.copy())
    if x.dim() == 3:  # [N, H, W] grayscale -> [N, 1, H, W]
        x = x.unsqueeze(1)
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


def _load_idx_dir(read: Callable[[str], bytes], classes: list[str]) -> _Raw:
    """Load the four gzip'd Fashion-MNIST IDX files through ``read(filename) -> bytes``."""
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        imgs = _read_idx(gzip.decompress(read(f"{prefix}-images-idx3-ubyte.gz")), f"{prefix} images")
        labs = _read_idx(gzip.decompress(read(f"{prefix}-labels-idx1-ubyte.gz")), f"{prefix} labels")
        if imgs.shape[0] != labs.shape[0]:
            raise DataError(f"{prefix} images/labels disagree in count ({imgs.shape[0]} vs {labs.shape[0]})")
        parts[split] = _idx_pair_to_tensors(imgs, labs)
    return _Raw(classes, parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1])


def _load_sample() -> _Raw:
    base = resources.files("growth").joinpath("sample_data")
    try:
        meta = json.loads(base.joinpath("meta.json").read_text(encoding="utf-8"))
        return _load_idx_dir(lambda f: base.joinpath(f).read_bytes(), list(meta["classes"]))
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as e:
        raise DataError(
            f"shipped sample dataset is missing or broken ({e}); reinstall growth or run "
            "scripts/make_sample_data.py /usr/share/datasets/fashion-mnist"
        ) from None
