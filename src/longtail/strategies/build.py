"""A strategy built for one run: its stages, each with the parts that answer the loop's events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from longtail.errors import LongtailError
from longtail.metrics import ClassificationReport
from longtail.strategies.lifecycle import EpochSampler, LossPart, Part
from longtail.strategies.registry import BuildContext, ClassifierHead, component
from longtail.strategies.spec import Strategy
from longtail.strategies.stages import FirstStage, Stage


@dataclass
class BuiltStrategy:
    """A strategy ready for one run: its stages (the first trains the whole model for the run's
    epochs; a second, if any, follows for its own epochs) and the classifier head its loss needs.
    Epochs are numbered across stages; the events go to the parts of the stage an epoch is in."""

    stages: list[Stage]
    head: ClassifierHead | None = None
    _epoch: int = 0  # the epoch the events go to (set by on_epoch_start)

    @property
    def sampler(self) -> EpochSampler:
        """The first stage's sampler."""
        assert self.stages[0].sampler is not None
        return self.stages[0].sampler

    @property
    def loss(self) -> LossPart:
        """The first stage's loss."""
        assert self.stages[0].loss is not None
        return self.stages[0].loss

    @property
    def total_epochs(self) -> int:
        return sum(stage.epochs for stage in self.stages)

    def first_stage_settings(self) -> dict[str, Any]:
        """The training settings the first stage runs with in place of the run's (weight
        balancing's weight decay), so that it can be trained on its own as the strategy
        ``SAMPLER+LOSS`` with these settings."""
        decay = self.stages[0].weight_decay
        return {} if decay is None else {"weight_decay": decay}

    def stage_bounds(self) -> list[tuple[int, int]]:
        """[first, last + 1) epochs of each stage (0-based, numbered across stages)."""
        bounds, start = [], 0
        for stage in self.stages:
            bounds.append((start, start + stage.epochs))
            start += stage.epochs
        return bounds

    def stage_of(self, epoch: int) -> int:
        """The index of the stage epoch ``epoch`` belongs to."""
        for k, (first, end) in enumerate(self.stage_bounds()):
            if first <= epoch < end:
                return k
        raise LongtailError(f"epoch {epoch} is past the last stage ({self.total_epochs} epochs)")

    def _parts(self, epoch: int) -> list[Part]:
        return self.stages[self.stage_of(epoch)].parts()

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch
        for part in self._parts(epoch):
            part.on_epoch_start(epoch)

    def after_validation(self, report: ClassificationReport) -> None:
        for part in self._parts(self._epoch):
            part.after_validation(report)

    def state_dict(self) -> dict[str, Any]:
        return {
            "stages": [
                {
                    "sampler": {} if st.sampler is None else st.sampler.state_dict(),
                    "loss": {} if st.loss is None else st.loss.state_dict(),
                    "stage": st.state_dict(),
                }
                for st in self.stages
            ]
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for st, saved in zip(self.stages, state.get("stages", []), strict=False):
            if st.sampler is not None:
                st.sampler.load_state_dict(saved.get("sampler", {}))
            if st.loss is not None:
                st.loss.load_state_dict(saved.get("loss", {}))
            st.load_state_dict(saved.get("stage", {}))


def build_strategy(
    strategy: Strategy,
    targets: Any,
    counts: np.ndarray,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    tree: Any = None,
    prior: np.ndarray | None = None,
) -> BuiltStrategy:
    """The stages of ``strategy`` for a run of ``epochs`` first-stage epochs over ``targets``
    with training class ``counts`` (and the class ``tree``, as
    :meth:`~longtail.distribution.ClassDistribution.tree_paths` gives it; None: flat, and the
    target ``prior`` [K] the run is judged under; None: uniform); a
    parameter a part does not take, or a bad value, raises ``ValueError``."""
    if np.count_nonzero(counts) < 2:
        raise LongtailError(
            f"a classifier needs at least two classes with training images; this data has "
            f"{np.count_nonzero(counts)}"
        )
    ctx = BuildContext(targets, np.asarray(counts), seed, epochs, batch_size, tree, prior)
    sampler_spec = component("sampler", strategy.sampler)
    loss_spec = component("loss", strategy.loss)
    sampler = sampler_spec.build(ctx, **strategy.sampler_params)
    loss = loss_spec.build(ctx, **strategy.loss_params)
    second: Stage | None = None
    if strategy.stage is not None:
        stage_spec = component("stage", strategy.stage)
        if stage_spec.rescales_rows and loss_spec.head is not None:
            raise LongtailError(
                f"{stage_spec.name} re-scales the rows of a linear classifier, but "
                f"{loss_spec.name} trains a {loss_spec.head.kind} classifier whose rows are "
                "normalised anyway"
            )
        second = stage_spec.build(ctx, **strategy.stage_params)
    first = FirstStage(
        sampler_spec.wrap(sampler),
        loss_spec.wrap(loss),
        epochs,
        None if second is None else second.weight_decay,
    )
    return BuiltStrategy([first] if second is None else [first, second], loss_spec.head)


__all__ = [
    "build_strategy",
    "BuiltStrategy",
]
