"""The event protocol: events reach the sampler and the loss."""

from __future__ import annotations

import numpy as np
import torch

from longtail.metrics import evaluate
from longtail.strategies import build_strategy, parse_strategy


def _roundtrip(state):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_events_reach_the_sampler_and_the_loss():
    y = np.repeat(np.arange(3), [30, 10, 5])
    built = build_strategy(
        parse_strategy("curriculum+ldam_drw"), y, np.bincount(y), seed=0, epochs=5, batch_size=8
    )
    built.on_epoch_start(4)
    assert built.sampler.sampler.epoch == 4 and built.loss.module.weight is not None  # DRW on
    # class 2 has no validation images: its recall is unknown (nan), not 0
    report = evaluate(np.array([0, 0, 1]), np.array([0, 1, 1]), 3)
    built.after_validation(report)
    perf = built.sampler.sampler.performance
    assert perf[0] == 1.0 and perf[1] == 0.5 and np.isnan(perf[2])
    state = built.state_dict()
    again = build_strategy(
        parse_strategy("curriculum+ldam_drw"), y, np.bincount(y), seed=0, epochs=5, batch_size=8
    )
    again.load_state_dict(torch.load(_roundtrip(state), weights_only=True))
    assert again.sampler.sampler.updates == 1
    np.testing.assert_array_equal(again.sampler.sampler.performance, perf)
