"""PyTorch Lightning: longtail's metrics, and curriculum sampling, as a ``Callback``.

longtail's samplers need nothing from Lightning: they are ``DistributedSampler`` instances, so a
``Trainer`` (with ``use_distributed_sampler`` at its default or off) leaves them unwrapped, each
rank draws its own share of the global plan once, and the ``set_epoch(epoch)`` that Lightning
calls every epoch reaches them. Create the sampler in ``train_dataloader()`` (the process group
exists by then) or give it ``num_replicas`` and ``rank``.

:class:`LongtailMetrics` collects the logits that ``validation_step`` returns, sums the statistics
over ranks, logs overall, balanced, per-group (head / medium / tail) recall and F1 and macro F1,
and hands per-class recall to the training DataLoader's sampler when it is a
:class:`~longtail.sampling.CurriculumSampler`.
Install with ``pip install 'longtail[lightning]'``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from longtail.distribution import ClassDistribution
from longtail.integrations import require
from longtail.metrics import ClassificationReport, MetricAccumulator
from longtail.sampling import CurriculumSampler

require("lightning", "lightning")

from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402


class LongtailMetrics(Callback):
    """Validation metrics by class and group, exact under DDP, and curriculum feedback.

    ``validation_step`` must return ``{"logits": [B, K] tensor, "target": [B] tensor}``. After each
    validation epoch (not the sanity check) the callback logs ``{prefix}{metric}`` for the
    summary metrics of :class:`~longtail.metrics.ClassificationReport` (``balanced_accuracy``,
    ``head_recall``, ``tail_f1``, ...), keeps the report as :attr:`report`, and, when the
    training DataLoader samples with a :class:`~longtail.sampling.CurriculumSampler`, calls its
    ``update(recall)`` (nan for classes without validation images). Under DDP the statistics are
    summed over ranks (Lightning's ``DistributedSampler`` pads the validation set to a multiple
    of the world size, repeating a few images)."""

    def __init__(self, distribution: ClassDistribution, prefix: str = "val_") -> None:
        self.distribution, self.prefix = distribution, prefix
        self.report: ClassificationReport | None = None
        self._acc: MetricAccumulator | None = None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._acc = MetricAccumulator(self.distribution.num_classes)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(outputs, dict) or "logits" not in outputs or "target" not in outputs:
            raise ValueError(
                "LongtailMetrics needs validation_step to return "
                "{'logits': [batch, classes] tensor, 'target': [batch] tensor}"
            )
        assert self._acc is not None
        self._acc.update(outputs["logits"].detach(), outputs["target"].detach())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert self._acc is not None
        state = self._acc.state().to(pl_module.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(state)
        self._acc.load_state(state.cpu())
        report = self._acc.compute(self.distribution)
        if trainer.sanity_checking:
            return
        self.report = report
        values = {
            f"{self.prefix}{k}": float(v)
            for k, v in report.summary().items()
            if v is not None and math.isfinite(v)
        }
        pl_module.log_dict(values, sync_dist=False)  # already summed over ranks
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if isinstance(sampler, CurriculumSampler):
            sampler.update(np.where(report.support > 0, report.recall, np.nan))
