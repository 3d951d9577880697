"""Where a run stands: the one record the loop advances, checkpoints and restores.

Inside longtail everything is 0-based: ``stage`` is the index of the stage being trained and
``epoch`` the next epoch to run, counted on across stages. The files keep their own convention
(a checkpoint's ``epoch`` is the last finished one; ``log.csv`` numbers epochs and stages from
1), and the conversion happens here and in :func:`log_position`, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Origin = Literal["fresh", "resumed", "imported"]
"""How the run began: from scratch, from its own checkpoint, or from another run's finished
first stage (``longtail train --first-stage``)."""


@dataclass
class RunState:
    """The stage being trained (0-based), the next epoch to run (0-based, counted on across
    stages) and the run's origin. :meth:`finished_epoch` advances it."""

    stage: int = 0
    epoch: int = 0
    origin: Origin = "fresh"

    def finished_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (0-based) is done: the next is ``epoch + 1``."""
        self.epoch = epoch + 1

    def checkpoint_fields(self) -> dict[str, int]:
        """What a checkpoint records of the state: the stage and the last finished epoch."""
        return {"stage": self.stage, "epoch": self.epoch - 1}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> RunState:
        """The state a checkpoint holds (written by :meth:`checkpoint_fields`)."""
        return cls(int(saved.get("stage", 0)), int(saved["epoch"]) + 1, "resumed")


def log_position(row: dict[str, Any]) -> tuple[int, int]:
    """(0-based stage, 0-based epoch) of a ``log.csv`` row, which numbers both from 1."""
    return int(row.get("stage", 1)) - 1, int(row["epoch"]) - 1


__all__ = ["Origin", "RunState", "log_position"]
