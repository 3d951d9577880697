"""Evaluating a model on a split: the metrics of a fixed model against a hand count, and one pass
that scores several candidate heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from longtail.data.datasets import ArrayDataset
from longtail.distribution import ClassDistribution
from longtail.training.evaluation import evaluate_model, score_heads

CPU = torch.device("cpu")
# images whose first pixel is the class the model below predicts
PREDICTED = np.array([0, 0, 0, 1, 2, 1, 1, 2, 0, 2])
LABELS = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 2])


class FirstPixel(nn.Module):
    """Logits 5 for the class written in an image's first pixel, 0 for the others."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Flatten()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.onehot(x))

    def onehot(self, x: torch.Tensor) -> torch.Tensor:
        return 5.0 * nn.functional.one_hot(x.flatten(1)[:, 0].round().long(), 3).float()


def _setup():
    images = np.zeros((10, 2, 2), dtype=np.uint8)
    images[:, 0, 0] = PREDICTED
    data = ArrayDataset(images, LABELS, mean=[0.0], std=[1 / 255])  # pixels arrive as 0, 1, 2
    model = FirstPixel()
    with torch.no_grad():
        model.fc.weight.copy_(torch.eye(3))
        model.fc.bias.zero_()
    return model, data, ClassDistribution.from_labels(LABELS)


def test_the_metrics_of_a_fixed_model_equal_the_hand_count():
    model, data, dist = _setup()
    report = evaluate_model(model, data, dist, CPU, batch_size=3, num_workers=0)
    # class 0: 2 of 2, class 1: 2 of 4 (3 and 5 say 1), class 2: 2 of 4
    np.testing.assert_allclose(report.recall, [1.0, 0.5, 0.5])
    assert report.summary()["accuracy"] == pytest.approx(6 / 10)
    assert report.summary()["balanced_accuracy"] == pytest.approx(2 / 3)
    scaled = evaluate_model(model, data, dist, CPU, num_workers=0, logit_scale=0.01)
    np.testing.assert_allclose(scaled.recall, report.recall)  # the same argmax ...
    assert scaled.summary()["ece"] != pytest.approx(report.summary()["ece"])  # ... other odds


def test_one_pass_scores_every_candidate_head():
    model, data, dist = _setup()
    heads = [lambda f: f, lambda f: -f, lambda f: f[:, [1, 2, 0]]]
    got = score_heads(model, model.fc, heads, data, dist, CPU, num_workers=0)
    # the features are the one-hot inputs of fc: the identity head is the model itself; the
    # negated head predicts the first class it was not given; the rolled head predicts k - 1
    assert got[0] == pytest.approx(2 / 3)
    negated = np.where(PREDICTED == 0, 1, 0)
    rolled = (PREDICTED - 1) % 3
    for value, predicted in ((got[1], negated), (got[2], rolled)):
        recall = [np.mean(predicted[LABELS == k] == k) for k in range(3)]
        assert value == pytest.approx(np.mean(recall))
