"""Train / validation / test splits: split folders, and stratified splits of one folder."""

from __future__ import annotations

import pytest

from helpers import small_tree
from longtail.data.bundle import folder_bundle


def test_a_val_folder_is_the_validation_set_and_train_keeps_every_image(tmp_path, caplog):
    root = tmp_path / "split"
    small_tree(root / "train", {"a": 20, "b": 9}, seed=0)
    small_tree(root / "val", {"a": 4, "b": 3}, seed=1)
    small_tree(root / "test", {"a": 5, "b": 5}, seed=2)
    data = folder_bundle(root, image_size=8)
    assert len(data.train) == 29 and len(data.val) == 7 and len(data.test) == 10
    val_files = sorted(data.val.index.filepath(int(i)) for i in data.val.indices)
    assert val_files == sorted(str(p) for p in (root / "val").rglob("*.jpg"))
    assert data.fingerprint()["splits"] == {"val": "folder", "test": "folder"}
    assert "fewer than 5" not in caplog.text
    only_train = tmp_path / "only"
    small_tree(only_train / "train", {"a": 60, "b": 12}, seed=0)
    small_tree(only_train / "test", {"a": 5, "b": 5}, seed=2)
    data = folder_bundle(only_train, image_size=8)  # no val/: carved out of train/, and said so
    assert len(data.val) + len(data.train) == 72
    assert "fewer than 5 images of 1 class(es): b (1)" in caplog.text
    (root / "val" / "c").mkdir()
    small_tree(root / "val", {"c": 1})
    with pytest.raises(ValueError, match="train/ and val/ hold different class folders"):
        folder_bundle(root, image_size=8)
