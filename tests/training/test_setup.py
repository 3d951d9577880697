"""What the loop sets up before it trains: the model with its head, the step runner's class
statistics, the second stage's context, and the refusal to import a first stage for nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from longtail.data.bundle import DataBundle
from longtail.data.datasets import ArrayDataset
from longtail.distribution import ClassDistribution
from longtail.errors import LongtailError
from longtail.strategies import build_strategy, parse_strategy
from longtail.training.config import TrainConfig
from longtail.training.evaluation import evaluate_model
from longtail.training.models import CosineClassifier
from longtail.training.setup import import_first_stage, run_model, stage_context, step_runner

CPU = torch.device("cpu")
LABELS = np.repeat(np.arange(3), [30, 12, 3])


def _data() -> DataBundle:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (LABELS.size, 8, 8), dtype=np.uint8)
    train = ArrayDataset(images, LABELS)
    dist = ClassDistribution.from_labels(LABELS)
    return DataBundle(train, train, None, dist, in_channels=1, image_size=8)


def _built(spec: str):
    return build_strategy(
        parse_strategy(spec), LABELS, np.bincount(LABELS), seed=0, epochs=2, batch_size=8
    )


def test_the_model_is_seeded_and_takes_the_head_its_loss_needs():
    data = _data()
    config = TrainConfig(model="small_cnn", seed=3)
    strategy = parse_strategy("instance+ce")
    a = run_model(config, data, _built("instance+ce"), strategy, CPU)
    b = run_model(config, data, _built("instance+ce"), strategy, CPU)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    cosine = parse_strategy("instance+ldam_drw")
    model = run_model(config, data, _built("instance+ldam_drw"), cosine, CPU)
    assert any(isinstance(m, CosineClassifier) for m in model.modules())


def test_the_step_runner_knows_the_counts_and_the_tail():
    data = _data()
    runner = step_runner(TrainConfig(seed=5), data, CPU, rank=0, finish=lambda x: x)
    assert runner.class_counts.tolist() == [30, 12, 3] and runner.seed == 5
    groups = np.asarray(data.distribution.groups)
    assert runner.tail_classes.tolist() == (groups == "tail").tolist()


def test_a_stage_context_replaces_the_classifier_and_scores_heads_on_validation():
    data = _data()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    ctx = stage_context(model, CPU, data, num_workers=0, prior=None)
    assert ctx.get_classifier() is model[1]
    (score,) = ctx.score([model[1]])
    expected = evaluate_model(model, data.val, data.distribution, CPU, num_workers=0)
    assert score == pytest.approx(expected.summary()["balanced_accuracy"])
    new = nn.Linear(64, 3)
    ctx.set_classifier(new)
    assert model[1] is new and ctx.get_classifier() is new


def test_a_strategy_without_a_second_stage_imports_no_first_stage(tmp_path):
    first = TrainConfig(strategy="instance+ce")
    run = (nn.Linear(2, 3), _built("instance+ce"))
    with pytest.raises(LongtailError, match="has no second stage"):
        import_first_stage(tmp_path, first, {}, "instance+ce", run)
