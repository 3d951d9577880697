"""torchgeo's Million-AID dataset through longtail: counts, levels, samplers and a training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import write_tree


@pytest.fixture
def million_aid(tmp_path):
    from helpers import MILLION_AID_LIKE

    root = tmp_path / "Million-AID"
    write_tree(root / "train", MILLION_AID_LIKE, size=12)
    write_tree(root / "test", {k: 2 for k in MILLION_AID_LIKE}, size=12, seed=1)
    return root


def test_torchgeo_million_aid_counts_levels_samplers_and_training(million_aid, tmp_path):
    from torchgeo.datasets import MillionAID

    from longtail.data.bundle import bundle_from_datasets
    from longtail.integrations.torchgeo import TorchGeoClassification
    from longtail.sampling import ClassBalancedSampler
    from longtail.training.loop import TrainConfig, train

    train_set = TorchGeoClassification(MillionAID(million_aid, split="train"))
    test_set = TorchGeoClassification(MillionAID(million_aid, split="test"))
    dist = train_set.distribution()
    counts = dict(zip(dist.class_names, dist.counts.tolist(), strict=True))
    assert counts == {"dry_field": 9, "paddy_field": 3, "grassland": 5, "lake": 2, "river": 6}
    assert dist.num_levels == 3
    top = dist.at_level(1)
    assert dict(zip(top.class_names, top.counts.tolist(), strict=True)) == {
        "agriculture_land": 17,
        "water_area": 8,
    }
    middle = dist.at_level(2)
    assert dict(zip(middle.class_names, middle.counts.tolist(), strict=True)) == {
        "arable_land": 12,
        "grassland": 5,
        "lake": 2,
        "river": 6,
    }
    # samplers read the labels from it; an item is (image, class index)
    sampler = ClassBalancedSampler(train_set, seed=0, num_samples=5000)
    drawn = np.bincount(train_set.targets[np.fromiter(sampler, dtype=np.int64)], minlength=5)
    assert np.abs(drawn / 5000 - 0.2).max() < 0.03  # 5 classes, equally often
    image, label = train_set[0]
    assert image.shape == (3, 12, 12) and image.dtype == torch.float32 and 0 <= image.min()
    assert label == train_set.targets[0]
    data = bundle_from_datasets(train_set, test_set, test_set, image_size=12, name="Million-AID")
    assert data.distribution.class_names == dist.class_names
    config = TrainConfig(strategy="class_balanced+focal", epochs=1, batch_size=4, num_workers=0)
    result = train(replace(config, progress=False), data, tmp_path / "run")
    assert result.config["augment"] == "dataset"  # torchgeo's own transforms, if any
    assert len(result.test.per_class) == 5
