"""torchgeo's classification datasets (Million-AID among them) seen by longtail, without copying.

torchgeo's ``MillionAID`` returns ``{"image", "label"}`` dicts and keeps its labels in a file list,
not in ``targets``; :class:`TorchGeoClassification` wraps it (or any torchgeo classification
dataset) so that longtail's samplers, :class:`~longtail.distribution.ClassDistribution` and
:func:`~longtail.data.bundle.bundle_from_datasets` take it as it is: ``targets`` are read from the
dataset's own file list (no image is decoded), the hierarchy levels from the files' folders, and
items become ``(image, label)`` pairs. Install with ``pip install 'longtail[torchgeo]'``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from longtail.distribution import ClassDistribution
from longtail.errors import LongtailError
from longtail.integrations import require

require("torchgeo", "torchgeo")


class TorchGeoClassification(Dataset):
    """A single-label torchgeo classification dataset with ``targets``, ``classes`` and
    ``hierarchy``; item i is ``(image, label)``: the dataset's ``image_key`` tensor (uint8 scaled to
    float in [0, 1]) and its class index.

    Labels come from ``targets`` when the dataset has them (torchgeo's folder-based datasets), else
    from its file list (``files`` of ``{"image": path, "label": [names]}`` with ``class_to_idx``, as
    ``MillionAID`` keeps them; the class is the last, deepest name). The ancestors of each class
    are the folders between the split folder and the class folder (Million-AID: 2 or 1)."""

    def __init__(self, dataset: Any, image_key: str = "image") -> None:
        self.dataset, self.image_key = dataset, image_key
        self.targets, self.classes, paths = _labels(dataset)
        self.hierarchy = _ancestors(dataset, self.targets, paths, len(self.classes))
        self.indices = np.arange(len(self.targets))

    def subset(self, indices: Any) -> TorchGeoClassification:
        """The view of ``indices`` of this one (e.g. a validation part carved out of train/ with
        :func:`~longtail.data.splits.stratified_split`); classes and hierarchy are kept."""
        chosen = np.asarray(indices, dtype=np.int64)
        view = copy.copy(self)
        view.indices, view.targets = self.indices[chosen], self.targets[chosen]
        return view

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        sample = self.dataset[int(self.indices[i])]
        image = sample[self.image_key]
        if image.dtype == torch.uint8:
            image = image.float().div_(255)
        return image, int(self.targets[i])

    def distribution(self) -> ClassDistribution:
        """Counts of every class, with the hierarchy levels."""
        return ClassDistribution.from_labels(
            self.targets, len(self.classes), self.classes, self.hierarchy
        )


def _labels(dataset: Any) -> tuple[np.ndarray, list[str], list[str] | None]:
    if getattr(dataset, "task", "multi-class") != "multi-class":
        raise LongtailError(
            f"{type(dataset).__name__} with task={dataset.task!r} gives several labels per image; "
            "use task='multi-class'"
        )
    if hasattr(dataset, "targets") and hasattr(dataset, "classes"):
        samples = getattr(dataset, "samples", None)
        paths = [s[0] for s in samples] if samples is not None else None
        return np.asarray(dataset.targets, dtype=np.int64), list(dataset.classes), paths
    files, index = getattr(dataset, "files", None), getattr(dataset, "class_to_idx", None)
    if files is None or index is None:
        raise LongtailError(
            f"{type(dataset).__name__} has neither targets nor a file list with class_to_idx; "
            "give it a 'targets' attribute (a label per sample)"
        )
    targets = np.fromiter((index[f["label"][-1]] for f in files), dtype=np.int64, count=len(files))
    return targets, list(dataset.classes), [str(f["image"]) for f in files]


def _ancestors(
    dataset: Any, targets: np.ndarray, paths: list[str] | None, num_classes: int
) -> tuple[tuple[str, ...], ...] | None:
    """The folders above each class folder, below the dataset's split folder (or root)."""
    root = getattr(dataset, "root", None)
    if paths is None or root is None or not len(targets):
        return None
    top = os.path.join(root, dataset.split) if hasattr(dataset, "split") else root
    classes, first = np.unique(targets, return_index=True)
    found = {
        int(c): tuple(os.path.relpath(paths[i], top).split(os.sep)[:-2])
        for c, i in zip(classes, first, strict=True)
    }
    hierarchy = tuple(found.get(c, ()) for c in range(num_classes))
    return hierarchy if any(hierarchy) else None


__all__ = [
    "TorchGeoClassification",
]
