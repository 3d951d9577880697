"""Features computed once: a frozen backbone's output for every image of a data set, as a data
set of its own that a head trains on.

With ``--tune frozen`` the backbone never changes, so each image's features are the same for
every strategy, seed, second stage and resume of a comparison: :func:`feature_bundle` runs the
backbone once per image per split (in eval mode, without augmentation: one view) and returns a
:class:`~longtail.data.bundle.DataBundle` of :class:`FeatureDataset` s with the same classes,
tree and splits. Its fingerprint holds the backbone's (model, weights and their digest), so a run
on it is reused only on the same features. The trainer then sees only the head and the features
(Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR
2020: re-balancing acts on the classifier; a linear probe on fixed features).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from longtail.data.bundle import DataBundle
from longtail.data.datasets import BatchDataset
from longtail.data.loading import device_view, loader_kwargs
from longtail.errors import LongtailError


class FeatureDataset(BatchDataset):
    """Features held in memory, float32 [N, D], and their labels; yields (features [D], label).
    Its images were seen once, by the backbone, so it applies no augmentation of its own."""

    in_memory = True

    def __init__(self, features: Tensor | np.ndarray, labels: Any) -> None:
        self.x = torch.as_tensor(features, dtype=torch.float32)
        self.targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if self.x.ndim != 2 or len(self.x) != len(self.targets):
            raise LongtailError(
                f"features must be [N, D] with one label each, got {tuple(self.x.shape)} for "
                f"{len(self.targets)} labels"
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.targets[i]

    def batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return self.x[idx], self.targets[idx]


@dataclass(frozen=True)
class Backbone:
    """Where features come from: the model that computes them (its classifier's input), and
    what names it in a fingerprint (model name, weights, their digest, image size)."""

    model: nn.Module
    classifier: nn.Module
    describe: dict[str, Any]


@torch.no_grad()
def embed(
    backbone: Backbone, dataset: Dataset, device: torch.device, batch_size: int = 512
) -> Tensor:
    """The features of every item of ``dataset`` in order, [N, D] float32 on the CPU: the input
    of ``backbone.classifier`` when ``backbone.model`` runs in eval mode, once per item."""
    view, finish = device_view(dataset, device)
    kw = loader_kwargs(view, device, None)
    captured: list[Tensor] = []
    hook = backbone.classifier.register_forward_hook(
        lambda module, args, out: captured.append(args[0].float().cpu())
    )
    model = backbone.model.to(device).eval()
    try:
        for x, _ in DataLoader(view, batch_size=batch_size, shuffle=False, **kw):
            model(finish(x.to(device, non_blocking=True)))
    finally:
        hook.remove()
    if not captured:
        return torch.zeros(0, 0)
    return torch.cat(captured)


def feature_bundle(
    data: DataBundle, backbone: Backbone, device: torch.device, batch_size: int = 512
) -> DataBundle:
    """``data`` as the features ``backbone`` computes from it: every split embedded once (see
    the module docstring), the same classes, tree and splits; the fingerprint names the
    backbone and the image data it came from."""
    splits = [data.train, data.val, data.test]
    made = [
        None if ds is None else FeatureDataset(embed(backbone, ds, device, batch_size), ds.targets)
        for ds in splits
    ]
    dim = int(made[0].x.shape[1])
    source = {**data.source, "features": {**backbone.describe, "of": data.fingerprint()}}
    return replace(
        data,
        train=made[0],
        val=made[1],
        test=made[2],
        in_channels=dim,
        image_size=1,
        source=source,
        extras={**data.extras, "feature_dim": dim},
    )


__all__ = [
    "Backbone",
    "FeatureDataset",
    "embed",
    "feature_bundle",
]
