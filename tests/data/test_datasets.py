"""Folder and in-memory datasets: decoding, normalisation, batching, and images that cannot be read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from helpers import write_tree
from longtail.data.datasets import ArrayDataset, FolderDataset, batch_collate
from longtail.data.decode import read_image
from longtail.data.index import build_index
from longtail.data.loading import device_view


def test_folder_dataset_all_corrupt_class_fails_clearly(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 2})
    (tmp_path / "d" / "b").mkdir()
    (tmp_path / "d" / "b" / "x.jpg").write_bytes(b"junk")
    ds = FolderDataset(build_index(root), image_size=8)
    with pytest.raises(ValueError, match="every image of class 'b' is unreadable"):
        ds[2]


def test_folder_dataset_replaces_an_image_pillow_refuses_as_too_large(tmp_path, monkeypatch):
    from PIL import Image

    root = write_tree(tmp_path / "d", {"a": 2}, size=10)
    Image.new("RGB", (40, 40), (255, 0, 0)).save(root / "a" / "0_huge.jpg")
    ds = FolderDataset(build_index(root), image_size=8, bad_image_log=tmp_path / "bad.log")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 40x40 is over twice the limit
    x, y = ds[0]
    assert x.shape == (3, 8, 8) and y == 0
    assert "0_huge.jpg" in (tmp_path / "bad.log").read_text()
    assert "DecompressionBombError" in (tmp_path / "bad.log").read_text()


def test_folder_dataset_normalises_and_batches_like_single_items(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2}, size=30)
    ds = FolderDataset(build_index(root), image_size=16, resize_size=20)
    raw = read_image(ds.index.filepath(0), 16, 20)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (raw.float() / 255 - mean[:, None, None]) / std[:, None, None]
    x, y = ds[0]
    torch.testing.assert_close(x, expected)
    xb, yb = ds.batch([0, 4])
    torch.testing.assert_close(xb[0], expected)
    assert yb.tolist() == [0, 1]
    # through DataLoader workers (batches built in shared memory): the same tensors
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=batch_collate)
    torch.testing.assert_close(next(iter(loader))[0], ds.batch([0, 1])[0])
    # a plain DataLoader (torch's default collate) gives the same batches
    x_plain, y_plain = next(iter(DataLoader(ds, batch_size=2)))
    torch.testing.assert_close(x_plain, ds.batch([0, 1])[0])
    assert y_plain.tolist() == [0, 0]


def test_folder_dataset_feeds_uint8_normalised_on_the_device(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2}, size=30)
    index = build_index(root)
    expected = FolderDataset(index, image_size=16).batch([1, 3])[0]
    for device in ("cuda", "cpu"):  # only the device's type is read
        ds = FolderDataset(index, image_size=16)
        view, finish = device_view(Subset(ds, [1, 3]), torch.device(device))
        assert isinstance(view, Subset) and view.indices == [1, 3]
        xb, _ = view.dataset.batch([1, 3])
        assert xb.dtype == torch.uint8 and view[0][0].dtype == torch.uint8
        assert ds.normalize and ds[1][0].dtype == torch.float32  # the dataset given is unchanged
        torch.testing.assert_close(finish(xb), expected)  # the step that runs on the device
    with pytest.raises(TypeError, match="uint8"):
        ds.normalize_batch(expected)


def test_array_dataset_batches_with_either_collate():
    images = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    ds = ArrayDataset(images, np.array([0, 1, 0, 2, 1]), mean=[0.0], std=[1.0])
    whole = next(iter(DataLoader(ds, batch_size=3, collate_fn=batch_collate)))
    plain = next(iter(DataLoader(ds, batch_size=3)))
    for x, y in (whole, plain):
        assert x.shape == (3, 1, 4, 4) and y.tolist() == [0, 1, 0]
        torch.testing.assert_close(x[:, 0], torch.from_numpy(images[:3]).float() / 255)
