"""The training loop: one strategy (sampler + loss), plain PyTorch, resumable, DDP-aware.

:func:`train` is the entry point; the fit loop lives in :mod:`longtail.training.trainer`, one
optimisation step in :mod:`longtail.training.step`, what is shown and written around the loop in
:mod:`longtail.training.events`, the run folder in :mod:`longtail.training.recorder`, evaluation
in :mod:`longtail.training.evaluation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from longtail._lock import folder_lock
from longtail.data.bundle import DataBundle
from longtail.training.backbones import frozen_features
from longtail.training.config import TrainConfig
from longtail.training.evaluation import evaluate_model, score_heads
from longtail.training.recorder import BEST, CHECKPOINT, LOG_FIELDS
from longtail.training.resolve import classifier_head, first_stage_config, resolved_config
from longtail.training.results import RunResult
from longtail.training.runtime import join_process_group, resolve_device, seed_everything
from longtail.training.trainer import Trainer, TrainingDiverged


def train(
    config: TrainConfig,
    data: DataBundle,
    out: str | Path,
    *,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    first_stage: str | Path | None = None,
) -> RunResult:
    """Train ``config.strategy`` on ``data`` and evaluate on the test split.

    Writes to ``out`` (rank 0 only, holding the folder's lock): ``config.json`` (the run's
    identity, see :mod:`longtail.training.identity`), ``log.csv`` (one row per epoch),
    ``checkpoint.pt`` (each epoch, atomically, loadable with ``weights_only=True``),
    ``metrics.json`` (test metrics, per class; strict JSON), and TensorBoard scalars in
    ``tensorboard/`` when tensorboard is installed.

    A folder that holds a run of another identity is refused, naming the fields that differ. With
    ``resume=True`` a run with a checkpoint continues from its last finished epoch to the same
    result as an uninterrupted one: the sampler's plan depends only on (seed, epoch), the torch
    generator is re-seeded from (seed, epoch) at the start of every epoch, and the model,
    optimizer, scheduler and curriculum state come from the checkpoint.

    Training images are augmented by ``augment`` (:mod:`longtail.data.augment`; ``standard`` by
    default on longtail's datasets, which apply it, and left to any other dataset's own
    transforms); each sample's augmentation is a function of (seed, epoch, its position in the
    epoch), so a resumed run sees the same images as an uninterrupted one.

    The learning rate warms up linearly over ``warmup_epochs`` and then follows a cosine decay,
    per optimiser step (:mod:`longtail.training.schedule`). With ``select_best`` (the default) the
    model tested is that of the epoch with the best validation balanced accuracy (kept in
    ``best.pt``; ``checkpoint.pt`` holds the last epoch, which ``resume`` continues), and
    ``metrics.json`` says which epoch that was (``selected_epoch``).

    A strategy with a second stage (``SAMPLER+LOSS:STAGE``, :mod:`longtail.strategies.stages`)
    continues from the first stage's tested model: the stage begins (its classifier re-initialised,
    wrapped or re-scaled, a tau chosen on validation), then trains the classifier alone for its
    own epochs, numbered on from the first stage's; ``metrics.json`` lists what it chose
    (``stages``). The checkpoint records the stage, so ``resume`` continues on either side of the
    boundary.

    With ``first_stage`` (the folder of a finished run of the strategy's first stage alone, see
    :func:`~longtail.training.resolve.first_stage_config`), a two-stage strategy starts from that
    run's tested model and history and runs only its second stage, to the result it would have
    had trained in one piece (the second stage is seeded from (seed, epoch) alone).

    With ``tune="frozen"`` the backbone's features are computed once
    (:func:`~longtail.training.backbones.frozen_features`) and the head trains on them.

    A non-finite loss stops the run with :class:`TrainingDiverged` (the last checkpoint is that of
    the last good epoch, and ``metrics.json`` records the divergence, not a result).
    """
    out = Path(out)
    rank, _ = join_process_group()
    with folder_lock(out) if rank == 0 else contextlib.nullcontext():
        first = None if first_stage is None else Path(first_stage)
        data = frozen_features(config, data)
        return Trainer(config, data, out, resume, on_epoch_end, first).run()


__all__ = [
    "BEST",
    "CHECKPOINT",
    "LOG_FIELDS",
    "RunResult",
    "TrainConfig",
    "TrainingDiverged",
    "classifier_head",
    "evaluate_model",
    "first_stage_config",
    "resolve_device",
    "resolved_config",
    "score_heads",
    "seed_everything",
    "train",
]
