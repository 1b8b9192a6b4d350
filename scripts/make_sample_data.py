"""Build the shipped sample dataset (growth/sample_data/) from real Fashion-MNIST.

Takes the directory holding the four original gzip'd IDX files (Debian's
``dataset-fashion-mnist`` package installs them in
/usr/share/datasets/fashion-mnist) and writes a class-balanced subset in the
same format: 600 train + 100 test images per class, 28x28 grayscale, plus
``meta.json`` (class names, source, licence, the command that made it).
The output is byte-for-byte reproducible (fixed seed, gzip mtime 0).

Example::

    apt-get install -y dataset-fashion-mnist
    python scripts/make_sample_data.py /usr/share/datasets/fashion-mnist
"""

from __future__ import annotations

import argparse
import gzip
import json
import struct
import sys
from pathlib import Path

import numpy as np

from growth.data.idx import _read_idx
from growth.data.torchvision_sets import _FASHION_CLASSES

_DEFAULT_OUT = Path(__file__).resolve().parents[1] / "growth" / "sample_data"
_SEED = 0


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Pick ``per_class`` random indices of every label, returned in original order.

    Example::

        >>> balanced_indices(np.array([0, 1, 0, 1, 0]), 1, 0).size
        2
    """
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size < per_class:
            raise SystemExit(f"class {c} has only {idx.size} images, need {per_class}")
        picks.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def write_idx_gz(path: Path, arr: np.ndarray) -> None:
    """Write a uint8 array as a gzip'd IDX file (the original MNIST format).

    Example::

        >>> write_idx_gz(Path("/tmp/x.gz"), np.zeros((2, 28, 28), np.uint8))
    """
    assert arr.dtype == np.uint8
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with open(path, "wb") as raw:
        # mtime=0 and no embedded filename keep the output reproducible.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(header + np.ascontiguousarray(arr).tobytes())


def main(argv: list[str] | None = None) -> int:
    """Read Fashion-MNIST from ``src`` and write the balanced subset to ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz")
    ap.add_argument("--out", type=Path, default=_DEFAULT_OUT)
    ap.add_argument("--train-per-class", type=int, default=600)
    ap.add_argument("--test-per-class", type=int, default=100)
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for prefix, per_class in (("train", args.train_per_class), ("t10k", args.test_per_class)):
        images = _read_idx(gzip.decompress((args.src / f"{prefix}-images-idx3-ubyte.gz").read_bytes()))
        labels = _read_idx(gzip.decompress((args.src / f"{prefix}-labels-idx1-ubyte.gz").read_bytes()))
        keep = balanced_indices(labels, per_class, _SEED)
        write_idx_gz(args.out / f"{prefix}-images-idx3-ubyte.gz", images[keep])
        write_idx_gz(args.out / f"{prefix}-labels-idx1-ubyte.gz", labels[keep])
        counts[prefix] = int(keep.size)

    meta = {
        "name": "sample",
        "description": (
            "Class-balanced subset of Fashion-MNIST: "
            f"{args.train_per_class} train and {args.test_per_class} test images per class, "
            "28x28 grayscale, original gzip'd IDX format; indices drawn with "
            f"numpy.random.default_rng({_SEED}) per class, kept in original order."
        ),
        "classes": list(_FASHION_CLASSES),
        "train_images": counts["train"],
        "test_images": counts["t10k"],
        "source": "Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist), "
        "via Debian package dataset-fashion-mnist",
        "license": "MIT (Expat); Copyright 2017 Zalando SE",
        "command": "python scripts/make_sample_data.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"wrote {counts} to {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
