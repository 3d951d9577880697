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

import torch

from longtail.distribution import ClassDistribution
from longtail.errors import LongtailError
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
    ``head_recall``, ``tail_f1``, ...; on a distribution with a class tree also
    ``{prefix}level{n}_{metric}`` for each coarser level n and the mistake severity), keeps the
    report as :attr:`report`, and, when the
    training DataLoader samples with a :class:`~longtail.sampling.CurriculumSampler`, calls its
    ``update(recall)`` (nan for classes without validation images). Under DDP the statistics are
    summed over ranks (Lightning's ``DistributedSampler`` pads the validation set to a multiple
    of the world size, repeating a few images).

    With several validation dataloaders each gets its own metrics, never a merged number: they
    are logged as ``{prefix}{metric}/dataloader_idx_{i}``, as Lightning names a metric logged
    per dataloader, and kept in :attr:`reports` (by dataloader index); :attr:`report` and the
    curriculum follow dataloader 0."""

    def __init__(self, distribution: ClassDistribution, prefix: str = "val_") -> None:
        self.distribution, self.prefix = distribution, prefix
        self.report: ClassificationReport | None = None
        self.reports: dict[int, ClassificationReport] = {}
        self._accs: dict[int, MetricAccumulator] = {}

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loaders = max(1, len(getattr(trainer, "num_val_batches", None) or [0]))
        self._accs = {
            i: MetricAccumulator.for_distribution(self.distribution) for i in range(loaders)
        }

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
            raise LongtailError(
                "LongtailMetrics needs validation_step to return "
                "{'logits': [batch, classes] tensor, 'target': [batch] tensor}"
            )
        acc = self._accs.setdefault(
            dataloader_idx, MetricAccumulator.for_distribution(self.distribution)
        )
        acc.update(outputs["logits"].detach(), outputs["target"].detach())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        reports = {}
        for i, acc in sorted(self._accs.items()):  # every rank holds the same loaders
            state = acc.state().to(pl_module.device)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(state)
            acc.load_state(state.cpu())
            if acc.state().sum() > 0:
                reports[i] = acc.compute(self.distribution)
        if trainer.sanity_checking or not reports:
            return
        self.reports = reports
        self.report = reports.get(0, next(iter(reports.values())))
        for i, report in reports.items():
            suffix = f"/dataloader_idx_{i}" if len(self._accs) > 1 else ""
            summaries = {"": report.summary()}
            summaries.update({f"level{n}_": r.summary() for n, r in report.levels.items()})
            values = {
                f"{self.prefix}{level}{k}{suffix}": float(v)
                for level, summary in summaries.items()
                for k, v in summary.items()
                if v is not None and math.isfinite(v)
            }
            pl_module.log_dict(values, sync_dist=False, add_dataloader_idx=False)  # summed
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if isinstance(sampler, CurriculumSampler):
            report = self.report
            sampler.update(report.known_recall)


__all__ = [
    "LongtailMetrics",
]
