"""The events of the fit loop and the listeners that answer them.

The loop (:class:`~longtail.training.trainer.Trainer`) announces, in order: ``run_start``,
``stage_start(k)``, ``epoch_start(k, epoch)``, ``step_end(k, epoch, step, totals)``,
``epoch_end(k, epoch, row, run)``, ``diverged(divergence)``, ``run_end(result)`` and, however
the run ends, ``close`` (stages and epochs 0-based). A :class:`Listener` answers any of them; the loop itself only trains,
validates and selects. Listeners here, in the order the loop calls them:

- :class:`ProgressBars`: a bar per epoch on a terminal;
- :class:`PlainLogLine`: without a terminal (a job log, a pipe), one line per epoch;
- :class:`BestEpoch`: keeps the weights of the best validation epoch (``best.pt``);
- :class:`RunFolderWriter`: ``log.csv``, the checkpoint, and the divergence record;
- :class:`EpochCallback`: the caller's ``on_epoch_end(epoch, row)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich import get_console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from longtail._text import console_text
from longtail.training.results import Divergence, RunResult
from longtail.training.schedule import best_epoch

if TYPE_CHECKING:
    from longtail.training.step import EpochTotals, StageRun
    from longtail.training.trainer import Trainer

PROGRESS_EVERY = 20
"""Steps between two updates of an epoch's bar."""


class Listener:
    """Answers the loop's events; every method does nothing unless overridden."""

    def run_start(self, loop: Trainer) -> None: ...

    def stage_start(self, loop: Trainer, k: int) -> None: ...

    def epoch_start(self, loop: Trainer, k: int, epoch: int, steps: int) -> None: ...

    def step_end(
        self, loop: Trainer, k: int, epoch: int, step: int, totals: EpochTotals
    ) -> None: ...

    def epoch_end(
        self, loop: Trainer, k: int, epoch: int, row: dict[str, float], run: StageRun
    ) -> None: ...

    def diverged(self, loop: Trainer, divergence: Divergence) -> None: ...

    def run_end(self, loop: Trainer, result: RunResult) -> None: ...

    def close(self, loop: Trainer) -> None:
        """The run ended, finished or not."""


def epoch_label(loop: Trainer, k: int, epoch: int) -> str:
    """``STRATEGY (stage k) epoch e/E`` (1-based, as a person counts)."""
    stages = len(loop.built.stages)
    label = loop.strategy.label + (f" (stage {k + 1})" if stages > 1 else "")
    return f"{label} epoch {epoch + 1}/{loop.built.total_epochs}"


class ProgressBars(Listener):
    """A bar per epoch with the running loss and accuracy, on a terminal only (rank 0)."""

    def __init__(self, enabled: bool) -> None:
        self.view = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            disable=not (enabled and get_console().is_terminal),
            transient=True,
        )
        self.task: Any = None
        self.steps = 0

    def run_start(self, loop: Trainer) -> None:
        self.view.start()

    def epoch_start(self, loop: Trainer, k: int, epoch: int, steps: int) -> None:
        label = console_text(epoch_label(loop, k, epoch))
        self.task, self.steps = self.view.add_task(label, total=steps, info=""), steps

    def step_end(self, loop: Trainer, k: int, epoch: int, step: int, totals: EpochTotals) -> None:
        if step % PROGRESS_EVERY == 0 or step == self.steps - 1:
            seen = totals.seen
            info = f"loss {totals.loss.item() / seen:.3f} acc {totals.correct.item() / seen:.3f}"
            self.view.update(self.task, completed=step + 1, info=info)

    def epoch_end(
        self, loop: Trainer, k: int, epoch: int, row: dict[str, float], run: StageRun
    ) -> None:
        self.view.remove_task(self.task)

    def close(self, loop: Trainer) -> None:
        self.view.stop()


class PlainLogLine(Listener):
    """Without a terminal, one plain line per epoch in place of the bars: the epoch, its loss
    and validation balanced accuracy, the time and an estimate of what is left."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def epoch_end(
        self, loop: Trainer, k: int, epoch: int, row: dict[str, float], run: StageRun
    ) -> None:
        if not self.enabled or get_console().is_terminal:
            return
        spent = [r["seconds"] for r in loop.history]
        left = (loop.built.total_epochs - epoch - 1) * sum(spent) / len(spent)
        print(
            f"{epoch_label(loop, k, epoch)}: loss {row['train_loss']:.3f}, "
            f"val balanced accuracy {100 * row['val_balanced_accuracy']:.1f}%, "
            f"{row['seconds']:.1f}s, about {left:.0f}s left",
            flush=True,
        )


class BestEpoch(Listener):
    """Keeps the model of the stage's best validation epoch so far (before the checkpoint, so a
    resumed run finds it)."""

    def epoch_end(
        self, loop: Trainer, k: int, epoch: int, row: dict[str, float], run: StageRun
    ) -> None:
        if best_epoch(loop.stage_rows(k), loop.selection_key) == epoch + 1:
            loop.recorder.save_best(epoch, loop.model.state_dict())


def checkpoint_state(loop: Trainer, run: StageRun | None = None) -> dict[str, Any]:
    """What a checkpoint holds: the run state, the model, the strategy's state, the history
    and, inside a stage's epochs, its optimiser and schedule."""
    state: dict[str, Any] = {
        **loop.state.checkpoint_fields(),
        "model": loop.model.state_dict(),
        "strategy": loop.built.state_dict(),
        "history": loop.history,
    }
    if run is not None:
        state["optimizer"] = run.optimizer.state_dict()
        state["scheduler"] = run.scheduler.state_dict()
    return state


class RunFolderWriter(Listener):
    """``log.csv`` and the checkpoint after every epoch (and at a stage's start, so that a
    resume continues inside it); ``metrics.json`` records a divergence."""

    def stage_start(self, loop: Trainer, k: int) -> None:
        loop.recorder.checkpoint(checkpoint_state(loop))

    def epoch_end(
        self, loop: Trainer, k: int, epoch: int, row: dict[str, float], run: StageRun
    ) -> None:
        loop.recorder.epoch_done(loop.history)
        loop.recorder.checkpoint(checkpoint_state(loop, run))

    def diverged(self, loop: Trainer, divergence: Divergence) -> None:
        recorder = loop.recorder
        recorder.finish(
            RunResult(recorder.identity, recorder.config, loop.history, diverged=divergence)
        )


class EpochCallback(Listener):
    """The caller's ``callback(epoch, row)`` after each epoch (0-based epoch, the log row)."""

    def __init__(self, callback: Callable[[int, dict[str, float]], None]) -> None:
        self.callback = callback

    def epoch_end(
        self, loop: Trainer, k: int, epoch: int, row: dict[str, float], run: StageRun
    ) -> None:
        self.callback(epoch, row)


__all__ = [
    "BestEpoch",
    "EpochCallback",
    "Listener",
    "PlainLogLine",
    "ProgressBars",
    "RunFolderWriter",
    "checkpoint_state",
    "epoch_label",
]
