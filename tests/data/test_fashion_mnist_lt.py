"""The embedded Fashion-MNIST-LT: its profile, its IDX reader, and validation images unseen in training."""

from __future__ import annotations

import numpy as np
import pytest

from longtail.data.fashion_mnist_lt import CLASS_NAMES, load_fashion_mnist_lt, read_idx
from longtail.data.subset import long_tailed_counts


def test_embedded_fashion_mnist_lt():
    train = load_fashion_mnist_lt("train")
    val = load_fashion_mnist_lt("val")
    test = load_fashion_mnist_lt("test")
    assert train.images.shape == (14639, 28, 28) and train.images.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == long_tailed_counts(10, 5900, 100).tolist()
    assert np.bincount(val.labels).tolist() == [100] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert len(CLASS_NAMES) == 10 and train.images.std() > 10  # real images, not blanks
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist_lt("dev")


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "x-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x09\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad)
    short = tmp_path / "y-idx1-ubyte"
    short.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="truncated"):
        read_idx(short)


def test_embedded_val_images_are_unseen_in_train():
    from importlib import resources

    with (
        resources.files("longtail.data").joinpath("fashion_mnist_lt.npz").open("rb") as fh,
        np.load(fh) as z,
    ):
        train_src, val_src = z["train_source_index"], z["val_source_index"]
    assert np.intersect1d(train_src, val_src).size == 0
