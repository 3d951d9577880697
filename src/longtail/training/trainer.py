"""The fit loop: stages and epochs over one :class:`~longtail.training.state.RunState`.

A :class:`Trainer` trains one strategy on one data bundle. Constructing it touches no file and no
process group; :meth:`Trainer.run` sets the run up (joins the process group, checks and claims
the run folder, builds the strategy and model, restores a checkpoint or imports a first stage),
then iterates stages and epochs. One optimisation step is :mod:`longtail.training.step`'s; what is
shown and written around the loop (progress bars, the plain log line, ``best.pt``, ``log.csv``
and the checkpoint, the divergence record, the caller's callback) are listeners on its events
(:mod:`longtail.training.events`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from longtail._text import terminal_text
from longtail.data.bundle import DataBundle
from longtail.data.loading import device_view, keyed_batches, loader_kwargs
from longtail.metrics import ClassificationReport
from longtail.mixing import parse_mix
from longtail.priors import prior_accuracy, target_prior
from longtail.strategies import BuiltStrategy, parse_strategy
from longtail.strategies.stages import Stage
from longtail.training.backbones import backbone_lr_groups, parse_tune, tuned_split
from longtail.training.checkpoint import restoring
from longtail.training.config import TrainConfig
from longtail.training.evaluation import evaluate_model
from longtail.training.events import (
    BestEpoch,
    EpochCallback,
    Listener,
    PlainLogLine,
    ProgressBars,
    RunFolderWriter,
)
from longtail.training.identity import run_identity
from longtail.training.recorder import CHECKPOINT, RunRecorder
from longtail.training.resolve import (
    classifier_head,
    first_stage_config,
    resolved_config,
    strategy_for_run,
)
from longtail.training.results import Divergence, RunResult, TestResult
from longtail.training.runtime import (
    epoch_seed,
    join_process_group,
    resolve_device,
    seed_everything,
)
from longtail.training.schedule import best_epoch, lr_factor
from longtail.training.setup import (
    PendingOptimizer,
    import_first_stage,
    restore,
    run_model,
    stage_context,
    step_runner,
)
from longtail.training.sharpness import build_optimizer, parse_optimizer
from longtail.training.state import RunState, log_position
from longtail.training.step import EpochTotals, NonFiniteLoss, StageRun

log = logging.getLogger("longtail")

EpochCallbackFn = Callable[[int, dict[str, float]], None]


class TrainingDiverged(RuntimeError):
    """The loss became nan or infinite: the run stopped instead of reporting a broken model."""

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step

    @property
    def divergence(self) -> Divergence:
        return Divergence(str(self), self.epoch or None, self.step or None)


def logit_scale(built: BuiltStrategy) -> float:
    """The factor the loss of the last stage that trained puts on the model's logits (LDAM's
    s on cosine logits; 1 for most losses): the model's probabilities are
    softmax(factor x logits), which calibration and the tree roll-up read."""
    param = built.head.scale_param if built.head is not None else None
    trained = [stage for stage in built.stages if stage.epochs > 0]
    last = trained[-1] if trained else built.stages[0]
    module = last.loss.module if last.loss is not None else None
    return float(getattr(module, param, 1.0)) if param else 1.0


class Trainer:
    """Trains ``config.strategy`` on ``data`` into the run folder ``out`` (see
    :func:`longtail.training.loop.train` for what it writes and how it resumes). Constructing
    it does nothing but keep its arguments; :meth:`run` does the work."""

    def __init__(
        self,
        config: TrainConfig,
        data: DataBundle,
        out: Path,
        resume: bool = False,
        on_epoch_end: EpochCallbackFn | None = None,
        first_stage: Path | None = None,
    ) -> None:
        self.asked, self.data, self.out = config, data, Path(out)
        self.resume, self.first_stage, self.on_epoch_end = resume, first_stage, on_epoch_end
        self.state = RunState()
        self.history: list[dict[str, float]] = []
        self.listeners: list[Listener] = []

    # --- setting the run up -----------------------------------------------------------------

    def _setup(self) -> None:
        """Join the process group, check and claim the run folder, build what the run trains,
        then restore its checkpoint or import its first stage."""
        self.rank, self.world = join_process_group()
        self.device = resolve_device(self.asked.device)
        self.config = config = resolved_config(self.asked, self.data)
        dist = self.data.distribution
        self.prior = target_prior(config.target_prior, dist.counts, dist.class_names)
        self.strategy = parse_strategy(config.strategy)
        self.fingerprint = self.data.fingerprint()
        identity = run_identity(config, self.fingerprint)
        self.recorder = RunRecorder(self.out, identity, asdict(config), self.rank == 0, self.world)
        self.recorder.check_folder()
        self.built = strategy_for_run(self.strategy, config, self.data)
        self.model = run_model(config, self.data, self.built, self.strategy, self.device)
        self.tuned = tuned_split(self.model, parse_tune(config.tune))
        self.ctx = stage_context(self.model, self.device, self.data, config.num_workers, self.prior)
        self.recorder.start()  # everything is built and checked: the folder now holds this run
        self.train_set, finish = device_view(self.data.train, self.device, config.augment)
        self.loader_kw = loader_kwargs(self.train_set, self.device, config.num_workers)
        self.steps = step_runner(config, self.data, self.device, self.rank, finish)
        self.pending_optimizer: PendingOptimizer | None = None
        if self.resume and (saved := self.recorder.saved_checkpoint()) is not None:
            restored = restore(saved, self.out / CHECKPOINT, self.model, self.built, self.ctx)
            self.state, self.history, self.pending_optimizer = restored
        if self.state.origin == "fresh" and self.first_stage is not None:
            first = first_stage_config(config, self.built)
            expected = run_identity(first, self.fingerprint)
            self.state, self.history = import_first_stage(
                self.first_stage, first, expected, self.strategy.label, (self.model, self.built)
            )
        self.started_at = self.state.epoch
        self.listeners = self._listeners()

    def _listeners(self) -> list[Listener]:
        shown = self.config.progress and self.rank == 0
        callback = [EpochCallback(self.on_epoch_end)] if self.on_epoch_end is not None else []
        return [ProgressBars(shown), PlainLogLine(shown), BestEpoch(), RunFolderWriter(), *callback]

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Set the run up, train every stage from where the run stands, then test the selected
        model."""
        self._setup()
        try:
            with self.recorder:
                self._emit("run_start")
                for k in range(self.state.stage, len(self.built.stages)):
                    if k > self.state.stage:
                        self.begin_stage(k)
                    first, end = self.built.stage_bounds()[k]
                    if self.built.stages[k].epochs > 0 and self.state.epoch < end:
                        self.train_stage(k, max(first, self.state.epoch), end)
                result = self.test(self.select())
                self._emit("run_end", result)
                return result
        finally:
            self._emit("close")

    def _emit(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            getattr(listener, event)(self, *args)

    def stage_rows(self, k: int) -> list[dict[str, float]]:
        """The history rows of stage ``k`` (0-based)."""
        return [row for row in self.history if log_position(row)[0] == k]

    def begin_stage(self, k: int) -> None:
        """End of stage ``k - 1``: stage ``k`` begins on the chosen model of the one before."""
        if self.config.select_best and self.stage_rows(k - 1) and self.state.origin != "imported":
            self.model.load_state_dict(self.recorder.best_weights())
        first = self.built.stage_bounds()[k][0]
        seed_everything(epoch_seed(self.config.seed, first))
        self.built.stages[k].begin(self.ctx)
        self.state.stage, self.state.epoch = k, first
        self._emit("stage_start", k)  # a resume continues inside this stage without beginning it

    def train_stage(self, k: int, first: int, end: int) -> None:
        """Epochs [first, end) of stage ``k``, with only what the stage trains learning."""
        run = self.stage_run(self.built.stages[k])
        if self.pending_optimizer is not None and self.pending_optimizer[0] == k:
            with restoring(self.out / CHECKPOINT):
                run.optimizer.load_state_dict(self.pending_optimizer[1])
                run.scheduler.load_state_dict(self.pending_optimizer[2])
        try:
            for epoch in range(first, end):
                self.run_epoch(k, epoch, run)
        finally:
            for p in self.model.parameters():
                p.requires_grad_(True)

    def stage_run(self, stage: Stage) -> StageRun:
        """The optimiser, schedule, loss and loader of ``stage``; freezes what it does not train."""
        config = self.config
        trainable = [p for p in stage.parameters(self.ctx) if id(p) not in self.tuned.frozen]
        learning = {id(p) for p in trainable}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in learning)
        lr = config.lr * stage.lr_multiplier if stage.lr is None else stage.lr
        decay = config.weight_decay if stage.weight_decay is None else stage.weight_decay
        spec = parse_optimizer(config.optimizer)
        groups = backbone_lr_groups(trainable, self.tuned, lr, config.backbone_lr_scale)
        optimizer = build_optimizer(spec, groups, lr, decay, config.momentum)
        model: nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        assert stage.sampler is not None and stage.loss is not None
        batches, keyed = keyed_batches(
            stage.sampler.loader_arguments(config.batch_size), config.seed, self.rank, self.world
        )
        loader = DataLoader(self.train_set, **batches, **self.loader_kw)
        total = max(2, len(loader) * stage.epochs)
        warmup = min(config.warmup_epochs * len(loader) if stage.lr_warmup else 0, total - 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step, t=total, w=warmup: lr_factor(step, t, w)
        )
        mix = parse_mix(config.mix) if stage.recipe else None
        sharp = spec if stage.recipe and spec.sharpness is not None else None
        criterion = stage.loss.module.to(self.device)
        return StageRun(model, optimizer, scheduler, criterion, loader, keyed, mix, sharp)

    def run_epoch(self, k: int, epoch: int, run: StageRun) -> None:
        """One epoch of stage ``k``: its steps, validation and the log row."""
        t0 = time.perf_counter()
        seed_everything(epoch_seed(self.config.seed, epoch))
        self.built.on_epoch_start(epoch)
        run.keyed.set_epoch(epoch)  # augmentation draws from (seed, epoch, position)
        stage = self.built.stages[k]
        if stage.freezes_representation():
            run.model.eval()  # batch-norm statistics and dropout of the frozen part
            self.ctx.get_classifier().train()
        else:
            run.model.train()
            for block in self.tuned.eval_blocks:  # what --tune keeps frozen
                block.eval()
        totals = EpochTotals.zeros(self.device, run.optimizer.param_groups[0]["lr"])
        self._emit("epoch_start", k, epoch, len(run.loader))
        for step, batch in enumerate(run.loader):
            try:
                self.steps.step(
                    run, batch, (epoch, step), totals, lambda: stage.after_step(self.ctx)
                )
            except NonFiniteLoss as bad:
                self.diverge(bad, epoch, step)
            self._emit("step_end", k, epoch, step, totals)
        report = self.validate()
        row = _log_row(epoch, k, totals, report, time.perf_counter() - t0)
        if self.prior is not None:
            row["val_target_accuracy"] = prior_accuracy(report.known_recall, self.prior)
        self.history.append(row)
        self.state.finished_epoch(epoch)
        self._emit("epoch_end", k, epoch, row, run)

    def diverge(self, bad: NonFiniteLoss, epoch: int, step: int) -> None:
        """Announce the divergence (``metrics.json`` records it) and stop with
        :class:`TrainingDiverged`."""
        kept = f"the checkpoint of epoch {epoch} is kept" if epoch else "no epoch finished"
        message = (
            f"training diverged: the loss of {self.strategy.label} became {bad.value} at epoch "
            f"{epoch + 1}, step {step + 1} (learning rate {bad.lr:g}). Lower the learning rate "
            f"(e.g. --lr {bad.lr / 10:g}) or use a gentler loss; {kept}"
        )
        self._emit("diverged", Divergence(message, epoch + 1, step + 1))
        raise TrainingDiverged(message, epoch + 1, step + 1) from None

    def validate(self) -> ClassificationReport:
        """Metrics on the validation split, given to the strategy (``after_validation``)."""
        report = self._evaluate(self.data.val)
        self.built.after_validation(report)
        return report

    def _evaluate(self, split: Any) -> ClassificationReport:
        """The model's metrics on ``split``; unreadable images met on the way are announced."""
        report = evaluate_model(
            self.model,
            split,
            self.data.distribution,
            self.device,
            num_workers=self.config.num_workers,
            logit_scale=logit_scale(self.built),
        )
        self._announce_bad_images()
        return report

    @property
    def selection_key(self) -> str:
        """The validation column the tested epoch is chosen by."""
        return "val_balanced_accuracy" if self.prior is None else "val_target_accuracy"

    def select(self) -> int:
        """The epoch whose model is tested (1-based), loaded into the model: the best validation
        epoch of the last stage that trained (or its last epoch without ``select_best``); after a
        post-hoc stage, that stage's adjusted model."""
        last = len(self.built.stages) - 1
        while last > 0 and not self.stage_rows(last):
            last -= 1
        rows = self.stage_rows(last)
        key = self.selection_key
        selected = best_epoch(rows, key) if self.config.select_best else int(rows[-1]["epoch"])
        post_hoc_last = last < len(self.built.stages) - 1
        if not post_hoc_last and selected != rows[-1]["epoch"]:
            self.model.load_state_dict(self.recorder.best_weights())
        return selected

    def test(self, selected: int) -> RunResult:
        """The run's result: the selected model's test metrics, written to ``metrics.json``."""
        data, recorder = self.data, self.recorder
        test = None
        if data.test is not None:
            report = self._evaluate(data.test)
            test = TestResult.from_report(report)
            if self.prior is not None:
                test.summary["target_accuracy"] = prior_accuracy(report.known_recall, self.prior)
        recorder.save_tested(self.model.state_dict())
        result = RunResult(
            recorder.identity,
            recorder.config,
            self.history,
            epochs_run=self.built.total_epochs - self.started_at,
            selected_epoch=selected,
            stages=[stage.summary() for stage in self.built.stages[1:]],
            test=test,
            unreadable_images=len(data.unreadable_images()),
        )
        result = RunResult.from_dict(result.to_dict())  # as the file holds it
        recorder.finish(result)
        return result

    def _announce_bad_images(self) -> None:
        for path, reason in self.data.new_unreadable_images().items():
            if self.rank == 0:
                log.warning(
                    "unreadable image %s (%s); replaced by another image of its class",
                    terminal_text(path),
                    terminal_text(reason),
                )


def _log_row(
    epoch: int, k: int, totals: EpochTotals, val: ClassificationReport, seconds: float
) -> dict[str, float]:
    """The ``log.csv`` row of epoch ``epoch`` of stage ``k`` (both 0-based here, 1-based in the
    file)."""
    vs = val.summary()
    seen = max(totals.seen, 1)
    return {
        "epoch": epoch + 1,
        "stage": k + 1,
        "train_loss": totals.loss.item() / seen,
        "train_accuracy": totals.correct.item() / seen,
        "val_accuracy": vs["accuracy"],
        "val_balanced_accuracy": vs["balanced_accuracy"],
        "val_macro_f1": vs["macro_f1"],
        "val_head_recall": vs["head_recall"],
        "val_tail_recall": vs["tail_recall"],
        "lr": totals.lr,
        "seconds": seconds,
    }


__all__ = [
    "Trainer",
    "TrainingDiverged",
    "classifier_head",
    "first_stage_config",
    "logit_scale",
    "resolved_config",
    "strategy_for_run",
]
