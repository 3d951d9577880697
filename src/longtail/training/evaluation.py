"""Evaluation of a model on a split: exact per-class metrics, summed over DDP ranks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.distributed as tdist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from longtail._distributed import rank_and_world
from longtail.data.loading import device_view, loader_kwargs
from longtail.distribution import ClassDistribution
from longtail.metrics import ClassificationReport, MetricAccumulator
from longtail.priors import prior_accuracy


def _validation_batches(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    num_workers: int | None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """(images on ``device``, ready for the model; labels) of this rank's share of ``dataset``,
    with ``model`` in eval mode."""
    rank, world = rank_and_world()
    view, finish = device_view(dataset, device)
    part: Dataset = Subset(view, range(rank, len(view), world)) if world > 1 else view
    kw = loader_kwargs(view, device, num_workers)
    model.eval()
    for x, y in DataLoader(part, batch_size=batch_size, shuffle=False, **kw):
        yield finish(x.to(device, non_blocking=True)), y.to(device)


def _reduced(accumulators: list[MetricAccumulator], device: torch.device) -> None:
    """Sum the accumulators' statistics over DDP ranks (in place)."""
    if rank_and_world()[1] > 1:
        for acc in accumulators:
            state = acc.state().to(device)
            tdist.all_reduce(state)
            acc.load_state(state)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    distribution: ClassDistribution,
    device: torch.device,
    batch_size: int = 512,
    num_workers: int | None = None,
    logit_scale: float = 1.0,
) -> ClassificationReport:
    """Metrics of ``model`` on ``dataset`` (at every level of ``distribution``'s tree); under
    DDP each rank evaluates its share and the statistics are summed across ranks, so every rank gets the same exact numbers. The logits
    are scored times ``logit_scale``, the factor the training loss put on them (LDAM's s), so
    that probabilities (calibration, the tree roll-up) are the ones the model was trained for."""
    acc = MetricAccumulator.for_distribution(distribution)
    for x, y in _validation_batches(model, dataset, device, batch_size, num_workers):
        logits = model(x)
        acc.update(logits if logit_scale == 1.0 else logit_scale * logits, y)
    _reduced([acc], device)
    return acc.compute(distribution)


@torch.no_grad()
def score_heads(
    model: nn.Module,
    classifier: nn.Module,
    heads: list[Callable[[Tensor], Tensor]],
    dataset: Dataset,
    distribution: ClassDistribution,
    device: torch.device,
    num_workers: int | None = None,
    prior: np.ndarray | None = None,
) -> list[float]:
    """Balanced accuracy (or, given a target ``prior``, the accuracy under it) on ``dataset``
    of each candidate head: a function from ``classifier``'s input (the features ``model``
    computes) to logits; one pass, exact under DDP."""
    features: list[Tensor] = []
    hook = classifier.register_forward_hook(lambda module, args, out: features.append(args[0]))
    accs = [MetricAccumulator(distribution.num_classes) for _ in heads]
    try:
        for x, y in _validation_batches(model, dataset, device, 512, num_workers):
            features.clear()
            model(x)
            for acc, head in zip(accs, heads, strict=True):
                acc.update(head(features[0].float()), y)
    finally:
        hook.remove()
    _reduced(accs, device)
    reports = [acc.compute(distribution) for acc in accs]
    if prior is None:
        return [report.summary()["balanced_accuracy"] for report in reports]
    return [prior_accuracy(r.known_recall, prior) for r in reports]


__all__ = ["evaluate_model", "score_heads"]
