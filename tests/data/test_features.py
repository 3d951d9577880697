"""Features computed once: a frozen backbone's output per image per split, shared by every
strategy, seed, second stage and resume, and a head that trains on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rich.console import Console

from helpers import small_embedded
from longtail.data.features import Backbone, FeatureDataset, embed, feature_bundle
from longtail.errors import LongtailError
from longtail.experiments.compare import run_compare
from longtail.training.config import TrainConfig
from longtail.training.loop import train
from longtail.training.models import SmallCNN

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    return small_embedded(40)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights file for small_cnn (a seeded random init stands in for a checkpoint)."""
    path = tmp_path_factory.mktemp("weights") / "small_cnn.pt"
    torch.manual_seed(0)
    torch.save(SmallCNN(1, 10).state_dict(), path)
    return path


def _count_images(monkeypatch) -> list[int]:
    """The images each call of SmallCNN's forward sees, recorded."""
    seen: list[int] = []
    forward = SmallCNN.forward

    def counted(self, x):
        seen.append(len(x))
        return forward(self, x)

    monkeypatch.setattr(SmallCNN, "forward", counted)
    return seen


def test_features_are_the_classifiers_input_in_order(data):
    model = SmallCNN(1, 10)
    backbone = Backbone(model, model.classifier, {})
    got = embed(backbone, data.val, CPU, batch_size=7)
    with torch.no_grad():
        want = model.eval().features(data.val.x)
    torch.testing.assert_close(got, want)
    bundle = feature_bundle(data, backbone, CPU)
    assert bundle.extras["feature_dim"] == 128 and len(bundle.train) == len(data.train)
    assert torch.equal(bundle.test.targets, data.test.targets)
    assert bundle.fingerprint() != data.fingerprint()


def test_a_feature_set_checks_its_shape():
    with pytest.raises(LongtailError, match=r"features must be \[N, D\]"):
        FeatureDataset(np.zeros((3, 2, 2)), [0, 1, 2])


def test_a_comparison_runs_the_backbone_once_per_image_per_split(
    data, weights, tmp_path, monkeypatch
):
    seen = _count_images(monkeypatch)
    base = TrainConfig(
        model="small_cnn", pretrained=str(weights), tune="frozen", epochs=2, progress=False
    )
    strategies = ["instance+ce", "instance+ce:crt[epochs=1]", "class_balanced+focal"]
    quiet = Console(quiet=True)
    comparison = run_compare(data, strategies, [0, 1], base, tmp_path / "cmp", quiet)
    images = len(data.train) + len(data.val) + len(data.test)
    # 3 strategies x 2 seeds and a second stage: one pass over the images (and the one-image
    # probe of the input size when the backbone is built)
    assert sum(seen) == images + 1 and seen[0] == 1
    assert comparison.trainings == 3 * 2  # crt's first stage shared with instance+ce
    seen.clear()
    run_compare(data, strategies, [0, 1], base, tmp_path / "cmp", quiet)  # all reused
    assert sum(seen) == images + 1  # the features again (held in memory), no training


def test_a_frozen_run_trains_the_head_on_features_and_resumes(data, weights, tmp_path, monkeypatch):
    config = TrainConfig(
        model="small_cnn", pretrained=str(weights), tune="frozen", epochs=2, progress=False
    )
    first = train(config, data, tmp_path / "a")
    assert set(torch.load(tmp_path / "a" / "tested.pt", weights_only=True)["model"]) == {
        "classifier.weight",
        "classifier.bias",
    }
    again = train(config, data, tmp_path / "a", resume=True)
    assert again.test.summary == first.test.summary
