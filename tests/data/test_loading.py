"""DataLoader settings for a dataset and a device, batches that carry their random stream, and
views of a dataset that feed the device without changing the dataset handed in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, Subset, TensorDataset

from longtail.data import OWN_TRANSFORMS
from longtail.data.datasets import ArrayDataset, batch_collate
from longtail.data.loading import device_view, keyed_batches, loader_kwargs, resolve_augmentation
from longtail.errors import LongtailError
from longtail.sampling import ClassBalancedSampler

CPU = torch.device("cpu")


def _arrays(n: int = 12) -> ArrayDataset:
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (n, 8, 8), dtype=np.uint8), np.arange(n) % 3)


def test_the_augmentation_is_asked_for_longtails_datasets_and_left_to_others():
    assert resolve_augmentation(_arrays(), None, default="aerial") == "aerial"
    assert resolve_augmentation(_arrays(), "none") == "none"
    theirs = TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    assert resolve_augmentation(theirs, None) == OWN_TRANSFORMS
    with pytest.raises(LongtailError, match="applies its own transforms"):
        resolve_augmentation(theirs, "standard")


def test_loader_settings_follow_the_dataset_and_the_worker_count():
    in_memory = loader_kwargs(_arrays(), CPU)
    assert in_memory["num_workers"] == 0 and not in_memory["pin_memory"]
    assert "persistent_workers" not in in_memory and in_memory["collate_fn"] is batch_collate
    workers = loader_kwargs(Subset(_arrays(), [0, 1]), CPU, num_workers=2)
    assert workers["persistent_workers"] and workers["prefetch_factor"] == 4
    theirs = loader_kwargs(TensorDataset(torch.zeros(2)), CPU, num_workers=0)
    assert "collate_fn" not in theirs


def test_keyed_batches_are_the_batches_of_the_sampler_they_wrap():
    labels = np.repeat(np.arange(3), [8, 3, 1])
    sampler = ClassBalancedSampler(labels, num_samples=20, seed=4)
    args, keyed = keyed_batches({"sampler": sampler, "batch_size": 6, "drop_last": True}, seed=1)
    assert set(args) == {"batch_sampler"} and args["batch_sampler"] is keyed
    keyed.set_epoch(2)
    sampler.set_epoch(0)  # the sampler's owner sets its epoch
    batches = list(keyed)
    sampler.set_epoch(0)
    assert [list(b) for b in batches] == list(BatchSampler(sampler, 6, drop_last=True))
    assert len(keyed) == 3 and all(b.epoch == 2 and b.seed == 1 for b in batches)
    assert [b.start for b in batches] == [0, 6, 12]  # positions count the epoch's samples


def test_a_device_view_is_a_copy_and_keeps_the_subset():
    data = _arrays()
    part = Subset(data, [5, 2, 7])
    view, finish = device_view(part, CPU, augment="aerial")
    assert isinstance(view, Subset) and view.indices == [5, 2, 7]
    assert view.dataset is not data and view.dataset.augment == "aerial"
    assert data.augment == "none"  # the dataset handed in is as it was
    x = torch.ones(2, 3)
    assert finish(x) is x  # in-memory arrays arrive ready: nothing left to do on the device
    same, _ = device_view(data, CPU)
    assert same is data
