"""The learning-rate schedule and the choice of the model that is tested.

``lr_factor`` is linear warm-up followed by cosine decay, per optimiser step (Goyal et al., 2017;
Loshchilov and Hutter, SGDR, ICLR 2017):

    f(t) = (t + 1) / W                                  for t < W
    f(t) = 1/2 (1 + cos(pi (t - W) / (T - W)))          for W <= t < T

with W warm-up steps and T steps in all; the learning rate of step t is base_lr * f(t).
``best_epoch`` picks the epoch whose model is tested: the highest validation balanced accuracy,
the earliest on ties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from longtail.errors import LongtailError


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise LongtailError(
            f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}"
        )
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(step - warmup_steps, total_steps - warmup_steps) / (total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def best_epoch(history: Sequence[dict[str, float]], key: str = "val_balanced_accuracy") -> int:
    """The 1-based epoch with the highest ``key`` (the earliest among equals; a nan never wins)."""
    if not history:
        raise LongtailError("no epoch has finished: there is no model to choose")
    best, best_value = 0, -math.inf
    for row in history:
        value = row[key]
        if value is not None and not math.isnan(value) and value > best_value:
            best, best_value = int(row["epoch"]), value
    return best or int(history[-1]["epoch"])


__all__ = [
    "best_epoch",
    "lr_factor",
]
