"""A data set as the trainer sees it: folders, torchvision ImageFolder, label levels and split folders."""

from __future__ import annotations

import pytest
import torch

from helpers import small_config, write_tree
from longtail.data.bundle import folder_bundle
from longtail.training.loop import train


def test_hierarchy_level_as_label(image_tree):
    data = folder_bundle(image_tree, image_size=16, level=1)
    assert data.train.class_names == ["animals", "plants"]
    assert data.distribution.class_names == ("animals", "plants")
    assert data.distribution.counts.sum() == len(data.train)


def test_train_on_torchvision_image_folder(tmp_path):
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    from longtail.data.bundle import bundle_from_datasets

    root = write_tree(tmp_path / "tv", {"a": 12, "b": 4, "c": 2}, size=20)
    tf = transforms.Compose(
        [transforms.Resize(16), transforms.CenterCrop(16), transforms.ToTensor()]
    )
    ds = ImageFolder(str(root), transform=tf)
    data = bundle_from_datasets(ds, ds, ds, image_size=16)
    assert data.distribution.class_names == ("a", "b", "c")
    assert data.distribution.counts.tolist() == [12, 4, 2]
    result = train(
        small_config(strategy="class_balanced+balanced_softmax", num_workers=0),
        data,
        tmp_path / "run",
    )
    assert result.test.per_class[2]["class"] == "c" and result.test.per_class[2]["support"] == 2
    with pytest.raises(ValueError, match="targets"):
        bundle_from_datasets(ds, torch.utils.data.TensorDataset(torch.zeros(2)))
