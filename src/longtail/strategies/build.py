"""A strategy built for one run: its stages, each with the parts that answer the loop's events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from longtail.losses import make_loss
from longtail.metrics import ClassificationReport
from longtail.sampling import make_sampler
from longtail.strategies.lifecycle import (
    LOSS_HEADS,
    LOSS_PARTS,
    SAMPLER_PARTS,
    EpochSampler,
    LossPart,
    Part,
)
from longtail.strategies.spec import Strategy
from longtail.strategies.stages import FirstStage, Stage, make_stage


@dataclass
class BuiltStrategy:
    """A strategy ready for one run: its stages (the first trains the whole model for the run's
    epochs; a second, if any, follows for its own epochs) and the classifier head its loss needs.
    Epochs are numbered across stages; the events go to the parts of the stage an epoch is in."""

    stages: list[Stage]
    head: tuple[str, float] | None = None
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
        raise ValueError(f"epoch {epoch} is past the last stage ({self.total_epochs} epochs)")

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
) -> BuiltStrategy:
    """The stages of ``strategy`` for a run of ``epochs`` first-stage epochs over ``targets``
    with training class ``counts``; a parameter a part does not take, or a bad value, raises
    ``ValueError``."""
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
    head = LOSS_HEADS.get(strategy.loss)
    second = (
        None
        if strategy.stage is None
        else make_stage(strategy.stage, targets, np.asarray(counts), seed, **strategy.stage_params)
    )
    if second is not None and head is not None and second.name in ("tau_norm", "weight_balancing"):
        raise ValueError(
            f"{second.name} re-scales the rows of a linear classifier, but {strategy.loss} trains "
            "a cosine classifier whose rows are normalised anyway"
        )
    first = FirstStage(
        SAMPLER_PARTS.get(strategy.sampler, EpochSampler)(sampler),
        LOSS_PARTS.get(strategy.loss, LossPart)(loss),
        epochs,
        None if second is None else second.weight_decay,
    )
    return BuiltStrategy([first] if second is None else [first, second], head)
