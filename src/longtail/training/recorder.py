"""The run folder: everything a training run writes goes through one :class:`RunRecorder`.

It owns ``config.json`` (the run's identity and settings), ``log.csv`` (one row per epoch),
TensorBoard scalars in ``tensorboard/`` (when tensorboard is installed), ``checkpoint.pt`` (each
epoch, atomically, loadable with ``weights_only=True``), ``best.pt`` (the best validation epoch's
weights), ``tested.pt`` (the weights of the model tested, from which a second stage trained
apart can start) and ``metrics.json`` (the :class:`~longtail.training.results.RunResult`, or the
divergence). Under DDP only rank 0 writes; every rank may read. Files are replaced atomically,
and what the recorder opens it closes (use it as a context manager).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch.distributed as tdist

from longtail._io import output_folder, write_json, write_text
from longtail.training.checkpoint import load, save_atomic
from longtail.training.identity import check_identity, saved_identity
from longtail.training.results import RunResult

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
TESTED = "tested.pt"
LOG_FIELDS = [
    "epoch",
    "stage",
    "train_loss",
    "train_accuracy",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_macro_f1",
    "val_head_recall",
    "val_tail_recall",
    "lr",
    "seconds",
]
"""The columns of ``log.csv``: one row per epoch."""


class RunRecorder:
    """Reads and writes the run folder ``out`` of the run with ``identity`` and ``config``;
    ``writes`` is true on the process that writes (rank 0), ``world`` the number of processes."""

    def __init__(
        self, out: Path, identity: dict[str, Any], config: dict[str, Any], writes: bool, world: int
    ) -> None:
        self.out, self.identity, self.config = out, identity, config
        self.writes, self.world = writes, world
        self._board: Any = None

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the TensorBoard writer, if one was opened."""
        if self._board is not None:
            self._board.close()
            self._board = None

    def check_folder(self) -> None:
        """Refuse a folder that holds a run of another identity (naming the fields that differ)."""
        if not self.writes:
            return
        previous = saved_identity(self.out)
        if previous is not None or (self.out / CHECKPOINT).exists():
            check_identity(previous, self.identity, self.out)

    def start(self) -> None:
        """Write ``config.json``: from now on the folder holds this run."""
        if self.writes:
            write_json(self.out / "config.json", {"identity": self.identity, "config": self.config})

    def saved_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint, when there is one (its identity checked), else None."""
        path = self.out / CHECKPOINT
        if not path.exists():
            return None
        saved = load(path)
        check_identity(saved.get("identity"), self.identity, path)
        return saved

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Save ``state`` (model, strategy, optimiser, history, ...) as the run's checkpoint."""
        if self.writes:
            save_atomic(
                {"identity": self.identity, "config": self.config, **state}, self.out / CHECKPOINT
            )

    def save_best(self, epoch: int, model_state: dict[str, Any]) -> None:
        """Keep ``model_state`` as the best validation epoch's weights (0-based ``epoch``)."""
        if self.writes:
            save_atomic({"epoch": epoch, "model": model_state}, self.out / BEST)

    def best_weights(self) -> dict[str, Any]:
        """The weights :meth:`save_best` kept (every rank waits until rank 0 has written them)."""
        if self.world > 1:
            tdist.barrier()
        return load(self.out / BEST)["model"]

    def save_tested(self, model_state: dict[str, Any]) -> None:
        """Keep the weights of the model the run tests."""
        if self.writes:
            save_atomic({"model": model_state}, self.out / TESTED)

    def epoch_done(self, history: list[dict[str, float]]) -> None:
        """Write ``log.csv`` with every row so far and the last row's TensorBoard scalars."""
        if not self.writes:
            return
        buf = io.StringIO()
        extra = [k for k in history[-1] if k not in LOG_FIELDS]  # val_target_accuracy
        writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS + extra)
        writer.writeheader()
        writer.writerows(history)
        write_text(self.out / "log.csv", buf.getvalue())
        board = self._tensorboard()
        if board is not None:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch":
                    board.add_scalar(key, value, row["epoch"])
            board.flush()

    def finish(self, result: RunResult) -> None:
        """Write ``metrics.json``: the run's result, or its divergence."""
        if self.writes:
            result.save(self.out / "metrics.json")

    def _tensorboard(self) -> Any:
        if self._board is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return None
            self._board = SummaryWriter(str(output_folder(self.out, self.out / "tensorboard")))
        return self._board


__all__ = ["BEST", "CHECKPOINT", "LOG_FIELDS", "TESTED", "RunRecorder"]
