"""One optimisation step: the batch to the device, mixed-sample training, the forward pass under
autocast, a non-finite loss caught before any update, and the update itself (plain, with AMP's
gradient scaler, or sharpness-aware: SAM / ImbSAM).

:class:`StageRun` is what one stage trains with; :class:`StepRunner` runs one step of it and adds
the batch to the epoch's :class:`EpochTotals`. It knows nothing of files, progress or epochs'
bookkeeping: the loop (:mod:`longtail.training.trainer`) calls it and reacts to
:class:`NonFiniteLoss`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from longtail.mixing import MixedBatch, MixSpec, mix_batch, mix_rng, mixed_loss
from longtail.training.sharpness import OptimizerSpec, sharpness_step


@dataclass
class StageRun:
    """What one stage trains with: the model (DDP-wrapped when distributed), its optimiser and
    schedule, its loss, the loader whose batches carry their random stream, and how its batches
    are mixed (None: not mixed)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    criterion: nn.Module
    loader: DataLoader
    keyed: Any
    mix: MixSpec | None = None  # mixed-sample training of this stage's batches
    sharpness: OptimizerSpec | None = None  # a sharpness-aware step (SAM, ImbSAM) around it


@dataclass
class EpochTotals:
    """Training loss and accuracy of an epoch so far (on the device, read once at the end)."""

    loss: Tensor
    correct: Tensor
    seen: int = 0
    lr: float = 0.0

    @classmethod
    def zeros(cls, device: torch.device, lr: float) -> EpochTotals:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device), lr=lr)

    def add(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        self.loss += loss * y.numel()
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += y.numel()


class NonFiniteLoss(Exception):
    """A step's loss was nan or infinite; nothing was updated. ``lr`` is the step's rate."""

    def __init__(self, value: float, lr: float) -> None:
        super().__init__(f"the loss became {value}")
        self.value, self.lr = value, lr


@dataclass
class StepRunner:
    """Runs optimisation steps for a run: ``finish`` turns a device batch into the model's input
    (normalisation, augmentation on the device), ``class_counts`` and ``tail_classes`` [K] feed
    Remix and ImbSAM, ``autocast`` / ``scaler`` are AMP's (a null context and None without it),
    and mixing draws from (``seed``, epoch, step, ``rank``)."""

    device: torch.device
    finish: Callable[[Tensor], Tensor]
    seed: int
    rank: int
    class_counts: Tensor
    tail_classes: Tensor
    autocast: AbstractContextManager[Any]
    scaler: Any

    def step(
        self,
        run: StageRun,
        batch: tuple[Tensor, Tensor],
        at: tuple[int, int],
        totals: EpochTotals,
        after_update: Callable[[], None],
    ) -> None:
        """One step on ``batch`` (x, y) at ``at`` (0-based epoch, step), added to ``totals``;
        raises :class:`NonFiniteLoss` (before any update) when the loss is not finite.
        ``after_update`` (the stage's own after-step) runs after the update, then the
        schedule steps."""
        (x, y), (epoch, step) = batch, at
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        x = self.finish(x)
        mixed = None
        if run.mix is not None:
            rng = mix_rng(self.seed, epoch, step, self.rank)
            mixed = mix_batch(run.mix, x, y, rng, self.class_counts)
            x = mixed.x
        with self.autocast:
            logits = run.model(x)
            loss = self.loss(run, logits, y, mixed)
        if not torch.isfinite(loss.detach()):
            raise NonFiniteLoss(loss.item(), run.optimizer.param_groups[0]["lr"])
        if run.sharpness is not None:
            self._sharpness_step(run, x, y, mixed, (logits, loss))
        else:
            run.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(run.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                run.optimizer.step()
        after_update()
        totals.lr = run.optimizer.param_groups[0]["lr"]
        run.scheduler.step()
        totals.add(loss.detach(), logits, y)

    def loss(
        self,
        run: StageRun,
        logits: Tensor,
        y: Tensor,
        mixed: MixedBatch | None,
        rows: Tensor | None = None,
    ) -> Tensor:
        """The stage's loss on the batch (mixed or not), or on its ``rows`` only, scaled by
        their share of the batch so that the parts of a batch add up to its loss."""
        if rows is not None:
            if rows.numel() == 0:
                return logits.sum() * 0.0
            share = rows.numel() / len(y)
            if mixed is not None:
                mixed = MixedBatch(mixed.x, mixed.y_a[rows], mixed.y_b[rows], mixed.weight[rows])
            return share * self.loss(run, logits[rows], y[rows], mixed)
        if mixed is None:
            return run.criterion(logits, y)
        return mixed_loss(run.criterion, logits, mixed)

    def _sharpness_step(
        self,
        run: StageRun,
        x: Tensor,
        y: Tensor,
        mixed: MixedBatch | None,
        first: tuple[Tensor, Tensor],
    ) -> None:
        """A SAM step (the whole loss made flat) or an ImbSAM step (the tail classes' part)."""
        assert run.sharpness is not None
        tail = self.tail_classes[y]

        def parts(logits: Tensor, loss: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
            if run.sharpness.sharpness == "sam":
                return (loss if loss is not None else self.loss(run, logits, y, mixed)), None
            rows_tail, rows_head = tail.nonzero().flatten(), (~tail).nonzero().flatten()
            return (
                self.loss(run, logits, y, mixed, rows_tail),
                self.loss(run, logits, y, mixed, rows_head),
            )

        def again() -> tuple[Tensor, Tensor | None]:
            with self.autocast:
                return parts(run.model(x))

        with self.autocast:
            at_w = parts(*first)
        sharpness_step(run.sharpness.rho, run.optimizer, again, self.scaler, at_w)


__all__ = ["EpochTotals", "NonFiniteLoss", "StageRun", "StepRunner"]
