"""DataLoader settings that suit the machine, overridable, and the step that finishes a batch on
the training device."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from longtail.data import OWN_TRANSFORMS
from longtail.data.augment import KeyedBatchSampler, check_preset
from longtail.data.datasets import ArrayDataset, BatchDataset, FolderDataset, batch_collate
from longtail.data.index import available_cpus
from longtail.errors import LongtailError

"""The augmentation of a dataset that is not longtail's: whatever transforms it applies itself."""


def resolve_augmentation(dataset: Dataset, asked: str | None, default: str = "standard") -> str:
    """The augmentation preset a training run on ``dataset`` uses: ``asked`` (else ``default``)
    for longtail's own datasets, :data:`OWN_TRANSFORMS` for others, which apply their own
    transforms (asking those for a preset is an error)."""
    if isinstance(dataset, (ArrayDataset, FolderDataset)):
        return check_preset(asked or default)
    if asked not in (None, OWN_TRANSFORMS):
        raise LongtailError(
            f"augment={asked!r} applies to longtail's datasets, but this {type(dataset).__name__} "
            "applies its own transforms: leave augment unset, or give the dataset the transform"
        )
    return OWN_TRANSFORMS


def keyed_batches(
    loader_arguments: dict[str, Any], seed: int, rank: int = 0, num_replicas: int = 1
) -> tuple[dict[str, Any], KeyedBatchSampler]:
    """DataLoader arguments (``sampler`` + ``batch_size``, or ``batch_sampler``) rewritten so
    that batches carry their random stream (:class:`~longtail.data.augment.KeyedBatchSampler`,
    whose ``set_epoch`` the caller calls every epoch), and that sampler."""
    args = dict(loader_arguments)
    if "batch_sampler" in args:
        keyed = KeyedBatchSampler(
            args.pop("batch_sampler"), None, seed, rank=rank, num_replicas=num_replicas
        )
    else:
        keyed = KeyedBatchSampler(
            args.pop("sampler"),
            args.pop("batch_size"),
            seed,
            drop_last=args.pop("drop_last", False),
            rank=rank,
            num_replicas=num_replicas,
        )
    return {**args, "batch_sampler": keyed}, keyed


def loader_kwargs(
    dataset: Dataset, device: torch.device, num_workers: int | None = None
) -> dict[str, Any]:
    """Workers from the CPU count (none for in-memory arrays), pinned memory on CUDA, persistent
    workers and a deeper prefetch when there are workers, and batch-at-once collation for
    longtail's own datasets."""
    base = _unwrap(dataset)
    if num_workers is None:
        num_workers = 0 if getattr(base, "in_memory", False) else min(8, available_cpus())
    kw: dict[str, Any] = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=4)
    if isinstance(base, BatchDataset):
        kw["collate_fn"] = batch_collate
    return kw


def device_view(
    dataset: Dataset, device: torch.device, augment: str = OWN_TRANSFORMS
) -> tuple[Dataset, Callable[[Tensor], Tensor]]:
    """A view of ``dataset`` that feeds ``device``, augmented with the preset ``augment`` (one of
    longtail's datasets; :data:`OWN_TRANSFORMS` leaves it as it is), and the step each batch needs
    once there. ``dataset`` itself is left unchanged: the view is a shallow copy that shares its
    images (and, under a ``Subset``, the same subset of the copy).

    A :class:`FolderDataset` view hands out uint8 batches, a quarter of the bytes to pass from
    the DataLoader workers and to copy to a GPU, normalised by the returned step on the training
    device (on a CPU in the main process, which costs less than handing over float batches:
    ``benchmarks/pipeline.py``). Create the DataLoader on the view, whose workers copy it."""
    base = _unwrap(dataset)
    changes: dict[str, Any] = {}
    if augment != OWN_TRANSFORMS:
        changes["augment"] = check_preset(augment)
    if isinstance(base, FolderDataset):
        changes["normalize"] = False
    if not changes:
        return dataset, _identity
    view = copy.copy(base)
    for name, value in changes.items():
        setattr(view, name, value)
    finish = view.normalize_batch if isinstance(view, FolderDataset) else _identity
    return _rewrap(dataset, view), finish


def _rewrap(dataset: Dataset, base: Dataset) -> Dataset:
    """``dataset``'s chain of ``Subset`` wrappers around ``base`` instead of its own base."""
    if isinstance(dataset, Subset):
        return Subset(_rewrap(dataset.dataset, base), dataset.indices)
    return base


def _identity(x: Tensor) -> Tensor:
    return x


def _unwrap(dataset: Dataset) -> Dataset:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


__all__ = [
    "OWN_TRANSFORMS",
    "device_view",
    "keyed_batches",
    "loader_kwargs",
    "resolve_augmentation",
]
