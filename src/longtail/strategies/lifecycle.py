"""The training loop's events, and the parts of a strategy that answer them.

The loop is a fixed skeleton. Before every epoch it calls ``on_epoch_start(epoch)`` on each part
of the strategy's current stage, after every validation pass ``after_validation(report)``, at the
end of a stage the next stage's ``begin`` (:mod:`longtail.strategies.stages`), and it saves
``state_dict()`` in each checkpoint (``load_state_dict`` on resume). A sampler that follows
validation recall and a loss with a deferred re-weighting schedule are the same kind of thing to
the loop: a :class:`Part`. Which part a sampler or loss needs is declared in its record
(:mod:`longtail.strategies.registry`).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Sampler

from longtail.metrics import ClassificationReport


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
        self.sampler.update(report.known_recall)

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


__all__ = [
    "BatchSamplerPart",
    "EpochSampler",
    "FeedbackSampler",
    "LossPart",
    "Part",
    "ScheduledLoss",
]
