"""Building a strategy: parts declared by name, never recognised by type."""

from __future__ import annotations

import numpy as np

from longtail.strategies import build_strategy, parse_strategy
from longtail.strategies.lifecycle import BatchSamplerPart, FeedbackSampler, ScheduledLoss


def test_parts_are_declared_by_name():
    y = np.repeat(np.arange(3), [30, 10, 5])
    counts = np.bincount(y)

    def build(spec):
        return build_strategy(parse_strategy(spec), y, counts, seed=0, epochs=4, batch_size=8)

    assert isinstance(build("curriculum+ce").sampler, FeedbackSampler)
    assert isinstance(build("balanced_batch+ce").sampler, BatchSamplerPart)
    assert "batch_sampler" in build("balanced_batch+ce").sampler.loader_arguments(8)
    assert isinstance(build("instance+ldam_drw").loss, ScheduledLoss)
