"""Where a run executes: device names, thread counts, seeding and mixed precision."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from longtail.errors import LongtailError
from longtail.training import runtime


def test_device_names_are_checked_against_this_machine():
    auto = runtime.resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(LongtailError, match="unknown device 'gpu9'"):
        runtime.resolve_device("gpu9")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, or any with none
    with pytest.raises(LongtailError, match="cuda"):
        runtime.resolve_device(missing)


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (3, 1), (8, 2), (16, 4)])
def test_a_cpu_training_takes_its_share_of_up_to_four_jobs(monkeypatch, cpus, threads):
    monkeypatch.setattr(runtime.torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(runtime, "available_cpus", lambda: cpus)
    assert runtime.training_threads() == threads


def test_epoch_seeds_are_distinct_over_seeds_and_epochs():
    seeds = {runtime.epoch_seed(s, e) for s in range(200) for e in range(1000)}
    assert len(seeds) == 200 * 1000


def test_seeding_fixes_every_global_generator():
    def draws():
        return random.random(), np.random.random(), torch.rand(1).item()  # noqa: NPY002

    runtime.seed_everything(7)
    first = draws()
    runtime.seed_everything(7)
    assert draws() == first
    runtime.seed_everything(8)
    assert draws() != first


def test_mixed_precision_is_off_on_a_cpu():
    context, scaler = runtime.autocast(torch.device("cpu"), enabled=True)
    assert scaler is None and not context._enabled
