"""A run before it trains: its classifier head, its first stage's config, its resolved config."""

from __future__ import annotations

import numpy as np
import pytest

from longtail.data.bundle import embedded_bundle
from longtail.errors import LongtailError
from longtail.strategies import build_strategy, parse_strategy
from longtail.strategies.registry import ClassifierHead
from longtail.training.config import TrainConfig
from longtail.training.resolve import (
    COSINE_SCALE,
    classifier_head,
    first_stage_config,
    resolved_config,
)

NORMED = ClassifierHead("cosine", 16.0, "s")


def test_the_head_is_the_one_asked_else_the_losss_else_linear():
    assert classifier_head(None, None, "ce", {}) == ("linear", 1.0)
    assert classifier_head(None, NORMED, "normed", {}) == ("cosine", 16.0)
    assert classifier_head("cosine", None, "ce", {}) == ("cosine", COSINE_SCALE)
    assert classifier_head("cosine", NORMED, "normed", {}) == ("cosine", 16.0)
    assert classifier_head("linear", NORMED, "normed", {"s": 1.0}) == ("linear", 1.0)
    with pytest.raises(LongtailError, match=r"normed\[s=1\]"):
        classifier_head("linear", NORMED, "normed", {})


def _built(spec: str):
    y = np.repeat(np.arange(3), [20, 8, 3])
    return build_strategy(parse_strategy(spec), y, np.bincount(y), seed=0, epochs=4, batch_size=8)


def test_the_first_stage_alone_drops_the_second_and_takes_what_it_asks():
    config = TrainConfig(strategy="sqrt+ce:crt", weight_decay=1e-4)
    first = first_stage_config(config, _built(config.strategy))
    assert first.strategy == "sqrt+ce" and first.weight_decay == 1e-4
    balancing = TrainConfig(strategy="instance+ce:weight_balancing", weight_decay=1e-4)
    first = first_stage_config(balancing, _built(balancing.strategy))
    assert first.strategy == "instance+ce" and first.weight_decay != 1e-4


def test_a_resolved_config_names_the_augmentation_the_run_uses():
    data = embedded_bundle()
    assert TrainConfig().augment is None
    resolved = resolved_config(TrainConfig(), data)
    assert resolved.augment is not None
    assert resolved_config(TrainConfig(augment="none"), data).augment == "none"
    assert resolved_config(resolved, data) == resolved  # resolving twice changes nothing
