"""Fashion-MNIST-LT: the embedded default data set (real 28x28 images, 10 classes, MIT licence).

Built from the original Fashion-MNIST files (Xiao, Rasul and Vollgraf, 2017) with seed 0:

- val: 100 images per class drawn from the training set (class-balanced, for model selection and
  the curriculum sampler);
- train: from the remaining 5,900 images per class, the exponential profile
  n_i = floor(n_max * IR^(-i/(K-1))) in the original class order with n_max = 5,900 and IR = 100
  (5,900 down to 59 images, 14,639 in all). n_max is 5,900 rather than 6,000 so that the head class
  keeps 100 unseen images for validation;
- test: the official balanced test set (10,000 images).

The classes carry their natural two-level tree (``HIERARCHY``): tops (T-shirt/top, Pullover,
Coat, Shirt), bottoms (Trouser), footwear (Sandal, Sneaker, Ankle boot); Dress and Bag stand for
themselves at the top, so the top level has five nodes.

``scripts/build_fashion_mnist_lt.py`` rebuilds the shipped file from the originals and checks it is
identical.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from longtail.data.splits import random_rank_within_class
from longtail.data.subset import make_long_tailed
from longtail.errors import LongtailError, MissingInputError

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# each class's ancestors from the top (none for a class that is its own top-level node)
HIERARCHY: tuple[tuple[str, ...], ...] = (
    ("tops",),
    ("bottoms",),
    ("tops",),
    (),
    ("tops",),
    ("footwear",),
    ("tops",),
    ("footwear",),
    (),
    ("footwear",),
)
SPLITS = ("train", "val", "test")
FILE_NAME = "fashion_mnist_lt.npz"
N_MAX = 5900
IMBALANCE_RATIO = 100
VAL_PER_CLASS = 100
SEED = 0


@dataclass(frozen=True)
class ArraySplit:
    """Images (uint8, [N, 28, 28]) and labels (int64, [N]) of one split."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    hierarchy: tuple[tuple[str, ...], ...] = HIERARCHY


def load_fashion_mnist_lt(split: str = "train") -> ArraySplit:
    """Load one split of the embedded Fashion-MNIST-LT (no download, no network)."""
    if split not in SPLITS:
        raise LongtailError(f"split must be one of {SPLITS}, got {split!r}")
    with resources.files("longtail.data").joinpath(FILE_NAME).open("rb") as fh, np.load(fh) as z:
        return ArraySplit(z[f"{split}_images"], z[f"{split}_labels"].astype(np.int64))


def source_indices() -> np.ndarray:
    """Positions in the original Fashion-MNIST training files of every image Fashion-MNIST-LT
    uses (its training and validation images); the other training images are its unlabelled
    pool."""
    with resources.files("longtail.data").joinpath(FILE_NAME).open("rb") as fh, np.load(fh) as z:
        return np.concatenate([z["train_source_index"], z["val_source_index"]]).astype(np.int64)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an MNIST idx file (gzip or plain): 0x08 unsigned-byte data of any rank."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise LongtailError(f"{path} is not an idx file of unsigned bytes (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise LongtailError(f"{path} is truncated: header says {shape}, found {arr.size} values")
    return arr.reshape(shape)


def build_fashion_mnist_lt(source: str | Path) -> dict[str, np.ndarray]:
    """Arrays of Fashion-MNIST-LT from a folder holding the four original ``*-ubyte.gz`` files."""
    source = Path(source)
    names = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    raw: dict[str, np.ndarray] = {}
    for key, stem in names.items():
        candidates = [source / f"{stem}.gz", source / stem]
        found = next((p for p in candidates if p.exists()), None)
        if found is None:
            raise MissingInputError(
                f"{stem}.gz not found in {source}; get the original Fashion-MNIST files "
                "(Debian package dataset-fashion-mnist, or github.com/zalandoresearch/fashion-mnist)"
            )
        raw[key] = read_idx(found)
    y = raw["train_labels"].astype(np.int64)
    order, rank = random_rank_within_class(y, SEED)
    val_idx = np.sort(order[rank < VAL_PER_CLASS])
    rest = np.setdiff1d(np.arange(y.size), val_idx)
    train_idx = rest[make_long_tailed(y[rest], IMBALANCE_RATIO, n_max=N_MAX, seed=SEED)]
    return {
        "train_images": raw["train_images"][train_idx],
        "train_labels": y[train_idx].astype(np.uint8),
        "train_source_index": train_idx.astype(np.int32),
        "val_images": raw["train_images"][val_idx],
        "val_labels": y[val_idx].astype(np.uint8),
        "val_source_index": val_idx.astype(np.int32),
        "test_images": raw["test_images"],
        "test_labels": raw["test_labels"],
    }


__all__ = [
    "source_indices",
    "CLASS_NAMES",
    "FILE_NAME",
    "HIERARCHY",
    "IMBALANCE_RATIO",
    "N_MAX",
    "SEED",
    "SPLITS",
    "VAL_PER_CLASS",
    "ArraySplit",
    "build_fashion_mnist_lt",
    "load_fashion_mnist_lt",
    "read_idx",
]
