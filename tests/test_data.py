"""Tests for the growth.data package: sample set, ImageFolder + cache, torchvision sets offline, augment."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import growth.data.augmentation as augmentation
import growth.data.imagefolder as imagefolder
import growth.data.torchvision_sets as tv
from growth.data import DataError, Dataset, augment, load_dataset, normalize

REPO = Path(__file__).resolve().parents[1]
CIFAR_JPEG = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg"
FASHION_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def one_line_error(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------- sample


@pytest.fixture(scope="module")
def sample() -> Dataset:
    return load_dataset("sample")


def test_sample_shapes_and_split(sample: Dataset) -> None:
    assert sample.name == "sample"
    assert sample.classes == FASHION_NAMES and sample.num_classes == 10
    assert sample.train_x.shape == (5400, 1, 28, 28)
    assert sample.val_x.shape == (600, 1, 28, 28)  # 10% of 6,000
    assert sample.test_x.shape == (1000, 1, 28, 28)
    for x in (sample.train_x, sample.val_x, sample.test_x):
        assert x.dtype == torch.uint8 and x.is_contiguous()
    for y in (sample.train_y, sample.val_y, sample.test_y):
        assert y.dtype == torch.int64 and int(y.min()) == 0 and int(y.max()) == 9
    assert torch.bincount(sample.test_y).tolist() == [100] * 10
    # train + val is the shipped balanced 600-per-class split
    assert torch.bincount(torch.cat([sample.train_y, sample.val_y])).tolist() == [600] * 10
    assert (sample.in_chans, sample.image_size) == (1, 28)
    # Fashion-MNIST's well-known statistics are ~0.286 / ~0.353
    assert len(sample.mean) == len(sample.std) == 1
    assert 0.25 < sample.mean[0] < 0.32 and 0.32 < sample.std[0] < 0.39
    x = sample.train_x.double() / 255
    assert sample.mean[0] == pytest.approx(x.mean().item(), abs=1e-9)
    assert sample.std[0] == pytest.approx(x.std(unbiased=False).item(), abs=1e-9)


def test_sample_describe_and_to(sample: Dataset) -> None:
    d = json.loads(json.dumps(sample.describe()))
    assert d["name"] == "sample" and d["num_classes"] == 10
    assert d["sizes"] == {"train": 5400, "val": 600, "test": 1000}
    assert (d["image_size"], d["in_chans"]) == (28, 1)
    assert d["mean"] == list(sample.mean)
    moved = sample.to("cpu")
    assert moved is not sample and torch.equal(moved.test_x, sample.test_x)


def test_sample_subset_val_size_and_seed(sample: Dataset) -> None:
    small = load_dataset("sample", subset=1000)
    assert small.train_x.shape[0] == 1000 and small.val_x.shape[0] == 600
    assert torch.equal(small.val_x, sample.val_x)  # subset never touches val
    again = load_dataset("sample", subset=1000)
    assert torch.equal(small.train_x, again.train_x)
    assert small.mean != sample.mean  # stats follow the subset
    other = load_dataset("sample", subset=1000, split_seed=1)
    assert not torch.equal(other.val_x, sample.val_x)
    custom = load_dataset("sample", val_size=100)
    assert (custom.train_x.shape[0], custom.val_x.shape[0]) == (5900, 100)
    every = load_dataset("sample", subset=5400)  # all the training images there are
    assert torch.equal(every.train_x, sample.train_x)


def test_a_subset_larger_than_the_training_images_is_refused(sample: Dataset) -> None:
    # It used to be ignored: the run trained on all 5,400 and recorded subset=100000.
    with pytest.raises(DataError) as e:
        load_dataset("sample", subset=5401)
    message = one_line_error(e)
    assert "subset=5401" in message and "5400 training images" in message and "sample" in message


def test_sample_val_disjoint_from_train(sample: Dataset) -> None:
    flat = lambda t: {bytes(r) for r in t.reshape(t.shape[0], -1).numpy()}  # noqa: E731
    assert not flat(sample.val_x) & flat(sample.train_x)


def test_sample_files_are_reproducible(tmp_path: Path) -> None:
    src = Path("/usr/share/datasets/fashion-mnist")
    if not (src / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Debian dataset-fashion-mnist absent: {src} (apt-get install dataset-fashion-mnist)")
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "scripts/make_sample_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(src), "--out", str(tmp_path)]) == 0
    shipped = REPO / "growth/sample_data"
    for f in shipped.glob("*.gz"):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f.name
    total = sum(f.stat().st_size for f in shipped.iterdir())
    assert total < 4_000_000


# --------------------------------------------------------------------------- normalize / augment


def test_normalize() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    out = normalize(x, (0.0, 0.2, 0.5), (1.0, 0.5, 0.25))
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.0, 0.0, 2.0])
    assert normalize(x[0], (0.0, 0.2, 0.5), (1.0, 0.5, 0.25)).shape == (3, 2, 2)


def _batch(n: int = 16, c: int = 3, h: int = 8, w: int = 10) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(123))


def test_augment_shape_dtype_determinism() -> None:
    x = _batch()
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    c = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)
    # a shared generator advances: consecutive calls differ
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(augment(x, g), augment(x, g))


def test_augment_identity_without_pad_and_flip() -> None:
    x = _batch()
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), pad=0, flip=False), x)


def test_augment_flip_only_mixes_original_and_mirror() -> None:
    x = _batch(n=64)
    out = augment(x, torch.Generator().manual_seed(0), pad=0, flip=True)
    flipped = torch.flip(x, dims=[3])
    is_orig = (out == x).flatten(1).all(1)
    is_flip = (out == flipped).flatten(1).all(1)
    assert bool((is_orig | is_flip).all())
    assert 10 < int(is_flip.sum()) < 54  # roughly half flipped


def test_crop_flip_mechanism_on_hand_made_batch() -> None:
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.uint8).view(2, 1, 3, 4)
    zeros = torch.zeros(2, dtype=torch.long)
    forced = augmentation._crop_flip(x, zeros, zeros, torch.tensor([True, True]), pad=0)
    assert torch.equal(forced, torch.flip(x, dims=[3]))
    mixed = augmentation._crop_flip(x, zeros, zeros, torch.tensor([False, True]), pad=0)
    assert torch.equal(mixed[0], x[0]) and torch.equal(mixed[1], torch.flip(x[1], dims=[2]))
    # offsets (0, 0) with pad=1 shift the image down-right, zero-filling the top/left
    crop = augmentation._crop_flip(x, zeros, zeros, torch.tensor([False, False]), pad=1)
    expected = torch.zeros_like(x)
    expected[:, :, 1:, 1:] = x[:, :, :-1, :-1]
    assert torch.equal(crop, expected)
    # centre offset (pad, pad) is the identity; crop then flip at an offset
    ones = torch.ones(2, dtype=torch.long)
    assert torch.equal(augmentation._crop_flip(x, ones, ones, torch.tensor([False, False]), pad=1), x)
    both = augmentation._crop_flip(x, ones * 2, zeros, torch.tensor([True, True]), pad=1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    assert torch.equal(both, torch.flip(padded[:, :, 2:5, 0:4], dims=[3]))


def test_augment_offsets_stay_within_pad() -> None:
    # a constant-255 image: any zero pixel in the output came from padding
    x = torch.full((200, 1, 6, 6), 255, dtype=torch.uint8)
    out = augment(x, torch.Generator().manual_seed(0), pad=2, flip=False)
    zero_rows = (out[:, 0, :, 3] == 0).sum(1)
    assert int(zero_rows.max()) == 2 and int(zero_rows.min()) == 0


# --------------------------------------------------------------------------- ImageFolder


def _make_tree(
    root: Path,
    classes: dict[str, dict[str, int]] | None = None,
    mode: str = "RGB",
    size: tuple[int, int] = (8, 8),
) -> Path:
    """Write root/{train,test}/<class>/*.png, each image a constant colour encoding its class."""
    classes = classes or {"cat": {"train": 3, "test": 2}, "dog": {"train": 4, "test": 2}}
    for ci, (cls, counts) in enumerate(sorted(classes.items())):
        for split, n in counts.items():
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour = (40 * ci + i, 100, 200) if mode == "RGB" else 40 * ci + i
                Image.new(mode, size, colour).save(d / f"{i:03d}.png")
    return root


def test_imagefolder_rgb(tmp_path: Path) -> None:
    root = _make_tree(tmp_path / "tree")
    ds = load_dataset(str(root), cache_dir=tmp_path / "cache", val_size=0)
    assert ds.name == f"imagefolder:{root.resolve()}"
    assert ds.classes == ["cat", "dog"]
    assert (ds.in_chans, ds.image_size) == (3, 8)
    assert ds.train_x.shape == (7, 3, 8, 8) and ds.test_x.shape == (4, 3, 8, 8)
    assert ds.val_x.shape == (0, 3, 8, 8)
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert ds.test_y.tolist() == [0, 0, 1, 1]
    # PNG is lossless: red channel encodes class and index
    assert ds.train_x[:, 0, 0, 0].tolist() == [0, 1, 2, 40, 41, 42, 43]
    assert bool((ds.train_x[:, 2] == 200).all())
    # default val split: 10% of 7, rounded
    assert load_dataset(f"imagefolder:{root}", cache_dir=tmp_path / "cache").val_x.shape[0] == 1


def test_imagefolder_grayscale_mixed_and_resize(tmp_path: Path) -> None:
    gray = _make_tree(tmp_path / "gray", mode="L")
    ds = load_dataset(str(gray), cache_dir=tmp_path / "cache", val_size=0)
    assert ds.in_chans == 1 and ds.train_x.shape == (7, 1, 8, 8) and len(ds.mean) == 1
    assert ds.train_x[:, 0, 0, 0].tolist() == [0, 1, 2, 40, 41, 42, 43]

    mixed = _make_tree(tmp_path / "mixed")
    Image.new("L", (16, 12), 77).save(mixed / "test" / "dog" / "zz-gray-big.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 4)).save(mixed / "test" / "cat" / "zz-alpha.png")
    (mixed / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset(str(mixed), cache_dir=tmp_path / "cache", val_size=0)
    assert ds.in_chans == 3 and ds.test_x.shape == (6, 3, 8, 8)
    assert ds.test_y.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.test_x[2].flatten(1)[:, 0].tolist() == [1, 2, 3]  # alpha dropped
    assert bool((ds.test_x[5] == 77).all())  # gray replicated to RGB, resized to 8x8


def test_imagefolder_cache_hit_and_invalidation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _make_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    first = load_dataset(str(root), cache_dir=cache)
    files = list((cache / "imagefolder").glob("*.pt"))
    assert len(files) == 1 and not list((cache / "imagefolder").glob("*.tmp"))

    def no_decode(paths: list[Path], workers: int | None = None) -> torch.Tensor:
        raise AssertionError("decoder called although the cache is valid")

    monkeypatch.setattr(imagefolder, "_decode_files", no_decode)
    second = load_dataset(str(root), cache_dir=cache)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    assert first.classes == second.classes

    # touching one image invalidates the cache
    img = root / "train" / "cat" / "000.png"
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    with pytest.raises(AssertionError, match="decoder called"):
        load_dataset(str(root), cache_dir=cache)
    monkeypatch.undo()
    load_dataset(str(root), cache_dir=cache)
    after = list((cache / "imagefolder").glob("*.pt"))
    assert len(after) == 1 and after != files  # stale cache replaced, not accumulated

    # adding an image invalidates it too, and the new image shows up
    Image.new("RGB", (8, 8), (9, 9, 9)).save(root / "test" / "dog" / "new.png")
    assert load_dataset(str(root), cache_dir=cache).test_x.shape[0] == 5


def test_imagefolder_env_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _make_tree(tmp_path / "tree")
    monkeypatch.setenv("GROWTH_DATA_DIR", str(tmp_path / "envcache"))
    load_dataset(str(root))
    assert len(list((tmp_path / "envcache" / "imagefolder").glob("*.pt"))) == 1


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    root = _make_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    ref = load_dataset(str(root), cache_dir=cache)
    (cache_file,) = (cache / "imagefolder").glob("*.pt")
    cache_file.write_bytes(b"garbage")
    again = load_dataset(str(root), cache_dir=cache)
    assert torch.equal(ref.train_x, again.train_x)


# --------------------------------------------------------------------------- errors


def test_error_nonexistent_path(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "nope"))
    assert "does not exist" in one_line_error(e) and str(tmp_path / "nope") in str(e.value)


def test_error_missing_train_or_test(tmp_path: Path) -> None:
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "d"), cache_dir=tmp_path / "c")
    assert "test/" in one_line_error(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "empty"), cache_dir=tmp_path / "c")
    assert "train/ or test/" in one_line_error(e)


def test_error_mismatched_classes(tmp_path: Path) -> None:
    root = _make_tree(tmp_path / "t", {"a": {"train": 2, "test": 1}, "b": {"train": 2}, "c": {"test": 1}})
    with pytest.raises(DataError) as e:
        load_dataset(str(root), cache_dir=tmp_path / "c")
    msg = one_line_error(e)
    assert "'b'" in msg and "'c'" in msg


def test_a_single_class_tree_is_refused_before_anything_is_decoded_or_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _make_tree(tmp_path / "t", {"cat": {"train": 3, "test": 2}})

    def no_decode(paths: list[Path], workers: int | None = None) -> torch.Tensor:
        raise AssertionError("a single-class tree was decoded")

    monkeypatch.setattr(imagefolder, "_decode_files", no_decode)
    with pytest.raises(DataError) as e:
        load_dataset(str(root), cache_dir=tmp_path / "cache")
    msg = one_line_error(e)
    assert "one class (cat)" in msg and f"{root.resolve()}/train" in msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))  # no cache left behind


def test_error_no_images_or_bad_image(tmp_path: Path) -> None:
    root = tmp_path / "t"
    for split in ("train", "test"):
        for cls in ("a", "b"):  # two classes: a single one is refused first (its own test)
            (root / split / cls).mkdir(parents=True)
    with pytest.raises(DataError) as e:
        load_dataset(str(root), cache_dir=tmp_path / "c")
    assert "no image files" in one_line_error(e)
    _make_tree(root, {"a": {"train": 2, "test": 1}, "b": {"train": 2, "test": 1}})
    (root / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg\nat all")
    with pytest.raises(DataError) as e:
        load_dataset(str(root), cache_dir=tmp_path / "c")
    assert "broken.jpg" in one_line_error(e)


def test_error_unknown_name() -> None:
    with pytest.raises(DataError) as e:
        load_dataset("imagenet-42")
    msg = one_line_error(e)
    assert "cifar10" in msg and "sample" in msg and "directory" in msg
    with pytest.raises(DataError):
        load_dataset("")


def test_error_bad_sizes() -> None:
    with pytest.raises(DataError) as e:
        load_dataset("sample", val_size=6000)
    assert "val_size" in one_line_error(e)
    with pytest.raises(DataError) as e:
        load_dataset("sample", val_size=-1)
    one_line_error(e)
    for bad in (0, -5):
        with pytest.raises(DataError) as e:
            load_dataset("sample", subset=bad)
        assert "subset" in one_line_error(e)
    assert issubclass(DataError, ValueError)
    assert "\n" not in str(DataError("two\nlines"))


# --------------------------------------------------------------------------- torchvision sets


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_torchvision_offline_empty_cache(tmp_path: Path, name: str, no_network: None) -> None:
    with pytest.raises(DataError) as e:
        load_dataset(name, cache_dir=tmp_path)
    msg = one_line_error(e)
    assert str(tmp_path / name) in msg
    assert "GROWTH_DATA_DIR" in msg and "--data" in msg and "network disabled" in msg


def test_torchvision_growth_offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str, root: Path) -> None:
        raise AssertionError("download attempted although GROWTH_OFFLINE=1")

    monkeypatch.setattr(tv, "_download", fail)
    monkeypatch.setenv("GROWTH_OFFLINE", "1")
    monkeypatch.setenv("GROWTH_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10")
    assert str(tmp_path / "cifar10") in one_line_error(e)


@pytest.mark.slow
def test_fashion_mnist_offline(tmp_path: Path, no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    if not tv._has_debian_fashion_mnist():
        monkeypatch.setattr(tv, "_DEBIAN_FASHION_MNIST", tmp_path / "absent")
        with pytest.raises(DataError) as e:
            load_dataset("fashion-mnist", cache_dir=tmp_path)
        assert str(tmp_path / "fashion-mnist") in one_line_error(e)
        return
    ds = load_dataset("fashion-mnist", cache_dir=tmp_path)  # Debian package fallback
    assert ds.classes == FASHION_NAMES
    assert (ds.train_x.shape[0], ds.val_x.shape[0], ds.test_x.shape[0]) == (55000, 5000, 10000)
    assert ds.in_chans == 1 and ds.image_size == 28


# --------------------------------------------------------------------------- real CIFAR-10 JPEG tree


def _link_subset(src: Path, dst: Path, per_class: int) -> None:
    for split in ("train", "test"):
        for cls_dir in sorted((src / split).iterdir()):
            out = dst / split / cls_dir.name
            out.mkdir(parents=True)
            for f in sorted(cls_dir.iterdir())[:per_class]:
                (out / f.name).symlink_to(f)


@pytest.mark.slow
def test_real_cifar10_jpeg_subset(tmp_path: Path) -> None:
    if not (CIFAR_JPEG / "train").is_dir():
        pytest.skip(f"real CIFAR-10 JPEG tree absent: {CIFAR_JPEG}")
    _link_subset(CIFAR_JPEG, tmp_path / "tree", per_class=20)
    ds = load_dataset(str(tmp_path / "tree"), cache_dir=tmp_path / "cache")
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert (ds.in_chans, ds.image_size) == (3, 32)
    assert (ds.train_x.shape[0], ds.val_x.shape[0], ds.test_x.shape[0]) == (180, 20, 200)
    assert torch.bincount(ds.test_y).tolist() == [20] * 10
    assert all(0.3 < m < 0.65 for m in ds.mean) and all(0.15 < s < 0.35 for s in ds.std)
    # pixels match a direct PIL decode of the same file
    first = sorted((CIFAR_JPEG / "test" / "airplane").iterdir())[0]
    ref = torch.from_numpy(np.array(Image.open(first).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(ds.test_x[0], ref)


@pytest.mark.slow
def test_real_cifar10_jpeg_full(tmp_path: Path) -> None:
    """Full 60k-image decode (~25 s on 2 cores); opt in with GROWTH_TEST_FULL_DATA=1."""
    if not (CIFAR_JPEG / "train").is_dir():
        pytest.skip(f"real CIFAR-10 JPEG tree absent: {CIFAR_JPEG}")
    if os.environ.get("GROWTH_TEST_FULL_DATA") != "1":
        pytest.skip("full CIFAR-10 JPEG decode is slow; set GROWTH_TEST_FULL_DATA=1 to run it")
    ds = load_dataset(str(CIFAR_JPEG), cache_dir=tmp_path)
    assert (ds.train_x.shape[0], ds.val_x.shape[0], ds.test_x.shape[0]) == (45000, 5000, 10000)
    assert ds.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=0.003)
