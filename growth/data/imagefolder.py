"""Image trees (``train/<class>/*``, ``test/<class>/*``): decoded in parallel threads, once, then
read from the cache."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .cache import _CACHE_VERSION, _digest, _read_cache, _slug, _walk_files, _write_cache
from .dataset import DataError, _Raw, one_class_message

_IMAGE_EXTS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})


def _list_split(root: Path, split: str) -> tuple[list[str], list[tuple[str, int, int]]]:
    """Class names of ``root/split`` and its image files as (relpath, size, mtime_ns).

    Files without an image extension (notes, a README) are skipped, as are hidden files and folders; a
    class folder left without any image is an error (:func:`_check_classes`)."""
    d = root / split
    try:
        classes = sorted(e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))
        files = [f for f in _walk_files(d) if "/" in f[0] and os.path.splitext(f[0])[1].lower() in _IMAGE_EXTS]
    except OSError as e:
        raise DataError(f"cannot read {e.filename or d} ({e.strerror or type(e).__name__})") from None
    return classes, files


def _check_classes(root: Path, split: str, classes: list[str], files: list[tuple[str, int, int]]) -> None:
    """Every class folder of ``root/split`` holds at least one image (an empty class would be a class the
    network is asked to predict and never sees)."""
    found = {f[0].split("/", 1)[0] for f in files}
    empty = [c for c in classes if c not in found]
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(
            f"class folder{'s' * (len(empty) > 1)} {shown} of {root / split} hold{'s' * (len(empty) == 1)} no image "
            f"files ({', '.join(sorted(_IMAGE_EXTS))}); put images in {'them' if len(empty) > 1 else 'it'} or "
            f"remove {'them' if len(empty) > 1 else 'it'} from both train/ and test/"
        )


def _load_imagefolder(root: Path, cache: Path) -> _Raw:
    missing = [s for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        raise DataError(
            f"{root} has no {' or '.join(m + '/' for m in missing)} subdirectory; an image folder "
            "needs train/<class>/* and test/<class>/*"
        )
    train_classes, train_files = _list_split(root, "train")
    test_classes, test_files = _list_split(root, "test")
    if not train_classes:
        raise DataError(f"{root / 'train'} has no class subdirectories; put images in train/<class>/")
    if len(train_classes) < 2:  # refused here, before any image is decoded or cached
        raise DataError(one_class_message(f"{root}/train", train_classes))
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DataError(
            f"class folders of {root}/train and {root}/test differ (only in train: {only_train}, "
            f"only in test: {only_test}); make both splits have the same class subdirectories"
        )
    for split, files in (("train", train_files), ("test", test_files)):
        if not files:
            raise DataError(
                f"{root / split} contains no image files ({', '.join(sorted(_IMAGE_EXTS))}); "
                f"put images in {split}/<class>/"
            )
        _check_classes(root, split, train_classes, files)

    # Key = source path + every image's (path, size, mtime): adding, removing or
    # touching any image invalidates the cache; stat-ing 60k files takes ~0.2 s.
    path_key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    fp = _digest([_CACHE_VERSION, str(root), train_classes, train_files, test_files])[:16]
    cache_file = cache / "imagefolder" / f"{_slug(root.name)}-{path_key}-{fp}.pt"
    hit = _read_cache(cache_file)
    if hit is not None:
        return hit

    cls_index = {c: i for i, c in enumerate(train_classes)}
    paths = [root / "train" / f[0] for f in train_files] + [root / "test" / f[0] for f in test_files]
    labels = [cls_index[f[0].split("/", 1)[0]] for f in train_files + test_files]
    x = _decode_files(paths)
    y = torch.tensor(labels, dtype=torch.int64)
    n_train = len(train_files)
    raw = _Raw(train_classes, x[:n_train].clone(), y[:n_train].clone(), x[n_train:].clone(), y[n_train:].clone())
    _write_cache(cache_file, raw, stale_glob=f"{_slug(root.name)}-{path_key}-*.pt")
    return raw


def _decode_files(paths: list[Path], workers: int | None = None) -> torch.Tensor:
    """Decode images to uint8 ``[N, C, H, W]``.

    Policy: every image is resized (bilinear) to the size of ``paths[0]`` if it
    differs; C is 1 when every image is grayscale, else 3 (grayscale images are
    then replicated to RGB, alpha is dropped).
    """
    from PIL import Image

    # Image.Resampling (typed) is Pillow >= 9.1; older Pillow has only the module constant (same value).
    bilinear: int = getattr(Image, "Resampling", Image).BILINEAR

    try:
        with Image.open(paths[0]) as im:
            w, h = im.size
    except Exception as e:
        raise DataError(f"cannot read image {paths[0]} ({e}); remove or replace the file") from None
    n = len(paths)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    gray = np.zeros(n, dtype=bool)

    def decode_one(i: int) -> None:
        p = paths[i]
        try:
            with Image.open(p) as im:
                if im.mode in _GRAY_MODES:
                    if im.mode.startswith("I;16"):
                        # 16-bit grayscale: keep the high byte rather than clipping.
                        arr16 = np.asarray(im).astype(np.uint16) >> 8
                        im = Image.fromarray(arr16.astype(np.uint8), mode="L")
                    else:
                        im = im.convert("L")
                    gray[i] = True
                else:
                    im = im.convert("RGB")
                if im.size != (w, h):
                    im = im.resize((w, h), bilinear)
                arr = np.asarray(im)
        except Exception as e:
            raise DataError(f"cannot decode image {p} ({type(e).__name__}: {e}); remove or replace the file") from None
        out[i] = arr[:, :, None] if arr.ndim == 2 else arr

    def decode_chunk(bounds: tuple[int, int]) -> None:
        for i in range(*bounds):
            decode_one(i)

    # Pillow releases the GIL while decoding, so threads give a real speed-up
    # without process-pool start-up and pickling costs.
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    step = 1024
    chunks = [(i, min(i + step, n)) for i in range(0, n, step)]
    if workers == 1 or len(chunks) == 1:
        for c in chunks:
            decode_chunk(c)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(decode_chunk, chunks))

    x = torch.from_numpy(out)
    x = x[..., :1] if bool(gray.all()) else x
    return x.permute(0, 3, 1, 2).contiguous()
