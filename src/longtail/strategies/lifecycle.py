"""The training loop's events, and the parts of a strategy that answer them.

The loop is a fixed skeleton. Before every epoch it calls ``on_epoch_start(epoch)`` on each part
of the strategy, after every validation pass ``after_validation(report)``, and it saves
``state_dict()`` in each checkpoint (``load_state_dict`` on resume). A sampler that follows
validation recall and a loss with a deferred re-weighting schedule are the same kind of thing to
the loop: a :class:`Part`. Which part a sampler or loss needs is declared by name in the tables
below, so adding a strategy is adding one class and one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import Sampler

from longtail.losses import make_loss
from longtail.metrics import ClassificationReport
from longtail.sampling import make_sampler
from longtail.strategies.spec import Strategy


class Part:
    """One part of a strategy; every event does nothing unless a subclass says otherwise."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before epoch ``epoch`` (0-based) starts."""

    def after_validation(self, report: ClassificationReport) -> None:
        """Called with the validation report after each epoch."""

    def state_dict(self) -> dict[str, Any]:
        """Plain values to checkpoint (weights-only loadable)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class EpochSampler(Part):
    """A sampler whose plan is chosen by epoch (``set_epoch``), given to the DataLoader as
    ``sampler=`` with the run's batch size."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def on_epoch_start(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def loader_arguments(self, batch_size: int) -> dict[str, Any]:
        """The DataLoader arguments that install this sampler."""
        return {"sampler": self.sampler, "batch_size": batch_size}


class BatchSamplerPart(EpochSampler):
    """A sampler that yields whole batches: given to the DataLoader as ``batch_sampler=``."""

    def loader_arguments(self, batch_size: int) -> dict[str, Any]:
        return {"batch_sampler": self.sampler}


class FeedbackSampler(EpochSampler):
    """A sampler fed with per-class validation recall after every epoch (curriculum sampling).
    A class without validation images has no recall: it is passed as nan, so it keeps its weight."""

    def after_validation(self, report: ClassificationReport) -> None:
        self.sampler.update(np.where(report.support > 0, report.recall, np.nan))

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.sampler.load_state_dict(state)


class LossPart(Part):
    """A loss that stays the same through training."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module


class ScheduledLoss(LossPart):
    """A loss that changes with the epoch (``set_epoch``), e.g. LDAM's deferred re-weighting."""

    def on_epoch_start(self, epoch: int) -> None:
        self.module.set_epoch(epoch)


SAMPLER_PARTS: dict[str, Callable[[Sampler], EpochSampler]] = {
    "curriculum": FeedbackSampler,
    "balanced_batch": BatchSamplerPart,
}
"""The part of each sampler that needs more than :class:`EpochSampler`."""

LOSS_PARTS: dict[str, Callable[[nn.Module], LossPart]] = {"ldam_drw": ScheduledLoss}
"""The part of each loss that needs more than :class:`LossPart`."""

LOSS_HEADS: dict[str, tuple[str, float]] = {"ldam_drw": ("cosine", 1.0)}
"""The classifier head a loss is defined on, and its scale: LDAM scales cosine logits by its own
s = 30 (Cao et al., NeurIPS 2019), so its head outputs cos(x, w_j) unscaled."""


@dataclass
class BuiltStrategy:
    """A strategy ready for one run: its sampler part and its loss part."""

    sampler: EpochSampler
    loss: LossPart
    head: tuple[str, float] | None = None

    @property
    def parts(self) -> list[Part]:
        return [self.sampler, self.loss]

    def on_epoch_start(self, epoch: int) -> None:
        for part in self.parts:
            part.on_epoch_start(epoch)

    def after_validation(self, report: ClassificationReport) -> None:
        for part in self.parts:
            part.after_validation(report)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "loss": self.loss.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state.get("sampler", {}))
        self.loss.load_state_dict(state.get("loss", {}))


def build_strategy(
    strategy: Strategy,
    targets: Any,
    counts: np.ndarray,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
) -> BuiltStrategy:
    """The sampler over ``targets`` and the loss for training class ``counts`` of ``strategy``;
    a parameter the sampler or loss does not take, or a bad value, raises ``ValueError``."""
    if np.count_nonzero(counts) < 2:
        raise ValueError(
            f"a classifier needs at least two classes with training images; this data has "
            f"{np.count_nonzero(counts)}"
        )
    params = {
        "seed": seed,
        "total_epochs": epochs,
        "num_classes": len(counts),
        **strategy.sampler_params,
    }
    if strategy.sampler == "balanced_batch":
        per_class = params.pop("samples_per_class", 4)
        params.setdefault(
            "classes_per_batch", max(1, min(np.count_nonzero(counts), batch_size // per_class))
        )
        params["samples_per_class"] = per_class
    sampler = make_sampler(strategy.sampler, targets, **params)
    loss = make_loss(strategy.loss, counts, total_epochs=epochs, **strategy.loss_params)
    return BuiltStrategy(
        SAMPLER_PARTS.get(strategy.sampler, EpochSampler)(sampler),
        LOSS_PARTS.get(strategy.loss, LossPart)(loss),
        LOSS_HEADS.get(strategy.loss),
    )
