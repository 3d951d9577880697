"""DataLoader settings that suit the machine, overridable."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from longtail.data.datasets import ArrayDataset, FolderDataset, batch_collate


def loader_kwargs(
    dataset: Dataset, device: torch.device, num_workers: int | None = None
) -> dict[str, Any]:
    """Workers from the CPU count (none for in-memory arrays), pinned memory on CUDA, persistent
    workers and a deeper prefetch when there are workers, and batch-at-once collation for
    longtail's own datasets."""
    base = dataset
    while isinstance(base, Subset):
        base = base.dataset
    if num_workers is None:
        num_workers = 0 if isinstance(base, ArrayDataset) else min(8, len(os.sched_getaffinity(0)))
    kw: dict[str, Any] = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=4)
    if isinstance(base, (ArrayDataset, FolderDataset)):
        kw["collate_fn"] = batch_collate
    return kw
