"""DataLoader settings that suit the machine, overridable, and the step that finishes a batch on
the training device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from longtail.data.datasets import ArrayDataset, BatchDataset, FolderDataset, batch_collate
from longtail.data.index import available_cpus


def loader_kwargs(
    dataset: Dataset, device: torch.device, num_workers: int | None = None
) -> dict[str, Any]:
    """Workers from the CPU count (none for in-memory arrays), pinned memory on CUDA, persistent
    workers and a deeper prefetch when there are workers, and batch-at-once collation for
    longtail's own datasets."""
    base = _unwrap(dataset)
    if num_workers is None:
        num_workers = 0 if isinstance(base, ArrayDataset) else min(8, available_cpus())
    kw: dict[str, Any] = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=4)
    if isinstance(base, BatchDataset):
        kw["collate_fn"] = batch_collate
    return kw


def feed_device(dataset: Dataset, device: torch.device) -> Callable[[Tensor], Tensor]:
    """Set up ``dataset`` to feed ``device`` and return the step each batch needs once there.

    A :class:`FolderDataset` feeding a GPU hands out uint8 batches (a quarter of the bytes to
    pass between processes and to copy to the GPU), normalised on the GPU by the returned step;
    feeding the CPU it normalises in the DataLoader workers. Other datasets are left as they are.
    Call it before creating the DataLoader, whose workers copy the dataset."""
    base = _unwrap(dataset)
    if isinstance(base, FolderDataset):
        base.normalize = device.type == "cpu"
        if not base.normalize:
            return base.normalize_batch
    return _identity


def _identity(x: Tensor) -> Tensor:
    return x


def _unwrap(dataset: Dataset) -> Dataset:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset
