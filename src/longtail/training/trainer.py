"""The training loop as named steps: build a stage, run an epoch, one optimisation step, validate,
select the tested epoch, test. A :class:`Trainer` trains one strategy on one data bundle; what it
writes goes through its :class:`~longtail.training.recorder.RunRecorder`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich import get_console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn
from torch.utils.data import DataLoader

from longtail._text import console_text, terminal_text
from longtail.data.bundle import DataBundle
from longtail.data.loading import device_view, keyed_batches, loader_kwargs, resolve_augmentation
from longtail.errors import LongtailError
from longtail.metrics import ClassificationReport
from longtail.mixing import parse_mix
from longtail.priors import canonical_target, prior_accuracy, target_prior
from longtail.strategies import BuiltStrategy, Strategy, build_strategy, parse_strategy
from longtail.strategies.registry import ClassifierHead
from longtail.strategies.stages import Stage, StageContext
from longtail.training.checkpoint import load, restoring
from longtail.training.config import TrainConfig
from longtail.training.evaluation import evaluate_model, score_heads
from longtail.training.identity import differences, run_identity
from longtail.training.models import build_model, default_augment, find_classifier
from longtail.training.recorder import CHECKPOINT, TESTED, RunRecorder
from longtail.training.results import Divergence, RunResult, TestResult
from longtail.training.runtime import (
    autocast,
    epoch_seed,
    join_process_group,
    resolve_device,
    seed_everything,
)
from longtail.training.schedule import best_epoch, lr_factor
from longtail.training.sharpness import build_optimizer, parse_optimizer
from longtail.training.step import EpochTotals, NonFiniteLoss, StageRun, StepRunner

log = logging.getLogger("longtail")

COSINE_SCALE = 30.0
EpochCallback = Callable[[int, dict[str, float]], None]


class TrainingDiverged(RuntimeError):
    """The loss became nan or infinite: the run stopped instead of reporting a broken model."""

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step

    @property
    def divergence(self) -> Divergence:
        return Divergence(str(self), self.epoch or None, self.step or None)


def classifier_head(
    asked: str | None, needed: ClassifierHead | None, loss: str, loss_params: dict[str, Any]
) -> tuple[str, float]:
    """(head, scale): the one asked for, else the one the loss ``needed``, else a linear head. A
    cosine head asked for by the user has scale 30 unless the loss scales its logits itself."""
    if asked is None:
        return (needed.kind, needed.scale) if needed else ("linear", 1.0)
    if asked == "cosine":
        return "cosine", needed.scale if needed else COSINE_SCALE
    if needed is not None and needed.scale_param not in loss_params:
        param = needed.scale_param
        raise LongtailError(
            f"{loss} scales {needed.kind} logits by its parameter {param}; with --head linear "
            f"give {param} yourself, e.g. {loss}[{param}=1]"
        )
    return "linear", 1.0


def strategy_for_run(strategy: Strategy, config: TrainConfig, data: DataBundle) -> BuiltStrategy:
    """``strategy`` built for a run of ``config`` on ``data`` (its targets, class counts, class
    tree and the target prior)."""
    dist = data.distribution
    return build_strategy(
        strategy,
        data.train.targets,
        dist.counts,
        seed=config.seed,
        epochs=config.epochs,
        batch_size=config.batch_size,
        tree=dist.tree_paths(),
        prior=target_prior(config.target_prior, dist.counts, dist.class_names),
    )


def first_stage_config(config: TrainConfig, built: BuiltStrategy) -> TrainConfig:
    """The config of ``config``'s first stage trained alone: the strategy without its second
    stage, with the settings that stage asks of the first (weight balancing's weight decay)."""
    label = parse_strategy(config.strategy).first_stage
    return replace(config, strategy=label, **built.first_stage_settings())


def resolved_config(config: TrainConfig, data: DataBundle) -> TrainConfig:
    """``config`` with what it leaves to the data and model filled in (the augmentation preset:
    :func:`~longtail.training.models.default_augment`) and a
    target prior file read into its table, as the run records it in its identity."""
    return replace(
        config,
        augment=resolve_augmentation(data.train, config.augment, default_augment(config.model)),
        target_prior=canonical_target(config.target_prior),
    )


class Trainer:
    """Trains ``config.strategy`` on ``data`` into the run folder ``out`` (see
    :func:`longtail.training.loop.train` for what it writes and how it resumes)."""

    def __init__(
        self,
        config: TrainConfig,
        data: DataBundle,
        out: Path,
        resume: bool = False,
        on_epoch_end: EpochCallback | None = None,
        first_stage: Path | None = None,
    ) -> None:
        self.rank, self.world = join_process_group()
        self.device = resolve_device(config.device)
        self.config = config = resolved_config(config, data)
        dist = data.distribution
        self.prior = target_prior(config.target_prior, dist.counts, dist.class_names)
        self.data, self.on_epoch_end = data, on_epoch_end
        self.strategy = parse_strategy(config.strategy)
        self.fingerprint = data.fingerprint()
        identity = run_identity(config, self.fingerprint)
        self.recorder = RunRecorder(out, identity, asdict(config), self.rank == 0, self.world)
        self.recorder.check_folder()
        self.built = strategy_for_run(self.strategy, config, data)
        self.model = self._build_model()
        self.ctx = self._stage_context()
        self.recorder.start()  # everything is built and checked: the folder now holds this run
        self.train_set, self.finish = device_view(data.train, self.device, config.augment)
        self.loader_kw = loader_kwargs(self.train_set, self.device, config.num_workers)
        amp, scaler = autocast(self.device, config.amp)
        self.steps = StepRunner(
            self.device,
            self.finish,
            config.seed,
            self.rank,
            torch.tensor(data.distribution.counts, device=self.device),
            torch.as_tensor(np.asarray(dist.groups) == "tail", device=self.device),  # ImbSAM's
            amp,
            scaler,
        )
        self.history: list[dict[str, float]] = []
        self.start_epoch, self.current = 0, 0
        self.saved = self._restore() if resume else None
        self.imported = False  # the first stage came from another run's folder
        if self.saved is None and first_stage is not None:
            self._import_first_stage(first_stage)
        self.progress = _progress_view(config.progress and self.rank == 0)

    # --- building -------------------------------------------------------------------------

    def _build_model(self) -> nn.Module:
        config, dist = self.config, self.data.distribution
        head, scale = classifier_head(
            config.head, self.built.head, self.strategy.loss, self.strategy.loss_params
        )
        seed_everything(config.seed)
        model = build_model(
            config.model,
            dist.num_classes,
            self.data.in_channels,
            self.data.image_size,
            config.pretrained,
            head,
            scale,
        )
        return model.to(self.device)

    def _stage_context(self) -> StageContext:
        path = find_classifier(self.model)
        model = self.model

        def set_classifier(module: nn.Module) -> None:
            parent, _, name = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, name, module.to(self.device))

        def score(heads: list[Callable[[Tensor], Tensor]]) -> list[float]:
            return score_heads(
                model,
                model.get_submodule(path),
                heads,
                self.data.val,
                self.data.distribution,
                self.device,
                self.config.num_workers,
                self.prior,
            )

        return StageContext(model, lambda: model.get_submodule(path), set_classifier, score)

    def _restore(self) -> dict[str, Any] | None:
        """Continue from the folder's checkpoint, if any: the stage it was in (with the model's
        structure of that stage), the weights, the strategy's state and the history."""
        saved = self.recorder.saved_checkpoint()
        if saved is None:
            return None
        with restoring(self.recorder.out / CHECKPOINT):
            self.current = int(saved.get("stage", 0))
            for k in range(1, self.current + 1):
                self.built.stages[k].restore(self.ctx)
            self.model.load_state_dict(saved["model"])
            self.built.load_state_dict(saved["strategy"])
            self.start_epoch, self.history = int(saved["epoch"]) + 1, list(saved["history"])
        return saved

    def _import_first_stage(self, folder: Path) -> None:
        """Start from the finished first stage in ``folder`` (a run of this strategy's first
        stage alone): its tested model and its history; only the second stage runs here."""
        if len(self.built.stages) < 2:
            raise LongtailError(f"{self.strategy.label} has no second stage to follow {folder}")
        first = first_stage_config(self.config, self.built)
        expected = run_identity(first, self.fingerprint)
        result = RunResult.load(folder / "metrics.json")
        if result.identity != expected or result.diverged is not None or result.test is None:
            diff = "; ".join(differences(result.identity, expected)[:3]) or "it did not finish"
            raise LongtailError(
                f"{folder} does not hold the finished first stage {first.strategy} of "
                f"{self.strategy.label} ({diff}); train it there first"
            )
        with restoring(folder / TESTED):
            self.model.load_state_dict(load(folder / TESTED)["model"])
        self.history = list(result.history)
        self.start_epoch = self.built.stage_bounds()[0][1]
        self.imported = True

    # --- the run --------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Train every stage from where the run stands, then test the selected model."""
        with self.recorder, self.progress:
            for k in range(self.current, len(self.built.stages)):
                if k > self.current:
                    self.begin_stage(k)
                first, end = self.built.stage_bounds()[k]
                if self.built.stages[k].epochs > 0 and self.start_epoch < end:
                    self.train_stage(k, max(first, self.start_epoch), end)
            return self.test(self.select())

    def stage_rows(self, k: int) -> list[dict[str, float]]:
        """The history rows of stage ``k`` (0-based)."""
        return [row for row in self.history if row.get("stage", 1) == k + 1]

    def begin_stage(self, k: int) -> None:
        """End of stage ``k - 1``: stage ``k`` begins on the chosen model of the one before."""
        if self.config.select_best and self.stage_rows(k - 1) and not self.imported:
            self.model.load_state_dict(self.recorder.best_weights())
        first = self.built.stage_bounds()[k][0]
        seed_everything(epoch_seed(self.config.seed, first))
        self.built.stages[k].begin(self.ctx)
        self.current = k
        self._checkpoint(first - 1)  # a resume continues inside this stage without beginning it

    def train_stage(self, k: int, first: int, end: int) -> None:
        """Epochs [first, end) of stage ``k``, with only what the stage trains learning."""
        stage = self.built.stages[k]
        run = self.stage_run(stage)
        if self.saved is not None and int(self.saved.get("stage", 0)) == k:
            if "optimizer" in self.saved:
                with restoring(self.recorder.out / CHECKPOINT):
                    run.optimizer.load_state_dict(self.saved["optimizer"])
                    run.scheduler.load_state_dict(self.saved["scheduler"])
        try:
            for epoch in range(first, end):
                self.run_epoch(k, epoch, run)
        finally:
            for p in self.model.parameters():
                p.requires_grad_(True)

    def stage_run(self, stage: Stage) -> StageRun:
        """The optimiser, schedule, loss and loader of ``stage``; freezes what it does not train."""
        config = self.config
        trainable = list(stage.parameters(self.ctx))
        learning = {id(p) for p in trainable}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in learning)
        lr = config.lr * stage.lr_multiplier if stage.lr is None else stage.lr
        decay = config.weight_decay if stage.weight_decay is None else stage.weight_decay
        spec = parse_optimizer(config.optimizer)
        optimizer = build_optimizer(spec, trainable, lr, decay, config.momentum)
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
        """One epoch of stage ``k``: its steps, validation, the log row and the checkpoint."""
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
        totals = EpochTotals.zeros(self.device, run.optimizer.param_groups[0]["lr"])
        task = self.progress.add_task(self._epoch_label(k, epoch), total=len(run.loader), info="")
        for step, batch in enumerate(run.loader):
            try:
                self.steps.step(
                    run, batch, (epoch, step), totals, lambda: stage.after_step(self.ctx)
                )
            except NonFiniteLoss as bad:
                self.diverge(bad.value, epoch, step, bad.lr)
            if step % 20 == 0 or step == len(run.loader) - 1:
                seen = totals.seen
                info = (
                    f"loss {totals.loss.item() / seen:.3f} acc {totals.correct.item() / seen:.3f}"
                )
                self.progress.update(task, completed=step + 1, info=info)
        self.progress.remove_task(task)
        report = self.validate()
        row = _log_row(epoch, k, totals, report, time.perf_counter() - t0)
        if self.prior is not None:
            row["val_target_accuracy"] = prior_accuracy(report.known_recall, self.prior)
        self.history.append(row)
        self._log_line(k, epoch, row)
        self.epoch_done(k, epoch, run)

    def diverge(self, value: float, epoch: int, step: int, lr: float) -> None:
        """Record the divergence in ``metrics.json`` and stop with :class:`TrainingDiverged`."""
        kept = f"the checkpoint of epoch {epoch} is kept" if epoch else "no epoch finished"
        message = (
            f"training diverged: the loss of {self.strategy.label} became {value} at epoch "
            f"{epoch + 1}, step {step + 1} (learning rate {lr:g}). Lower the learning rate "
            f"(e.g. --lr {lr / 10:g}) or use a gentler loss; {kept}"
        )
        recorder = self.recorder
        divergence = Divergence(message, epoch + 1, step + 1)
        recorder.finish(
            RunResult(recorder.identity, recorder.config, self.history, diverged=divergence)
        )
        raise TrainingDiverged(message, epoch + 1, step + 1)

    def validate(self) -> ClassificationReport:
        """Metrics on the validation split, given to the strategy (``after_validation``)."""
        data, config = self.data, self.config
        report = evaluate_model(
            self.model,
            data.val,
            data.distribution,
            self.device,
            num_workers=config.num_workers,
            logit_scale=self.logit_scale(),
        )
        self._announce_bad_images()
        self.built.after_validation(report)
        return report

    def logit_scale(self) -> float:
        """The factor the loss of the last stage that trained puts on the model's logits (LDAM's
        s on cosine logits; 1 for most losses): the model's probabilities are
        softmax(factor x logits), which calibration and the tree roll-up read."""
        param = self.built.head.scale_param if self.built.head is not None else None
        trained = [stage for stage in self.built.stages if stage.epochs > 0]
        last = trained[-1] if trained else self.built.stages[0]
        module = last.loss.module if last.loss is not None else None
        return float(getattr(module, param, 1.0)) if param else 1.0

    @property
    def selection_key(self) -> str:
        """The validation column the tested epoch is chosen by."""
        return "val_balanced_accuracy" if self.prior is None else "val_target_accuracy"

    def epoch_done(self, k: int, epoch: int, run: StageRun) -> None:
        """Keep the best epoch's weights, write the log and the checkpoint, call back."""
        if best_epoch(self.stage_rows(k), self.selection_key) == epoch + 1:  # before the checkpoint
            self.recorder.save_best(epoch, self.model.state_dict())
        self.recorder.epoch_done(self.history)
        self._checkpoint(epoch, run)
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch, self.history[-1])

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
            report = evaluate_model(
                self.model,
                data.test,
                data.distribution,
                self.device,
                num_workers=self.config.num_workers,
                logit_scale=self.logit_scale(),
            )
            test = TestResult.from_report(report)
            if self.prior is not None:
                test.summary["target_accuracy"] = prior_accuracy(report.known_recall, self.prior)
        recorder.save_tested(self.model.state_dict())
        self._announce_bad_images()
        result = RunResult(
            recorder.identity,
            recorder.config,
            self.history,
            epochs_run=self.built.total_epochs - self.start_epoch,
            selected_epoch=selected,
            stages=[stage.summary() for stage in self.built.stages[1:]],
            test=test,
            unreadable_images=len(data.unreadable_images()),
        )
        result = RunResult.from_dict(result.to_dict())  # as the file holds it
        recorder.finish(result)
        return result

    # --- helpers --------------------------------------------------------------------------

    def _checkpoint(self, epoch: int, run: StageRun | None = None) -> None:
        state: dict[str, Any] = {
            "epoch": epoch,
            "stage": self.current,
            "model": self.model.state_dict(),
            "strategy": self.built.state_dict(),
            "history": self.history,
        }
        if run is not None:
            state["optimizer"] = run.optimizer.state_dict()
            state["scheduler"] = run.scheduler.state_dict()
        self.recorder.checkpoint(state)

    def _log_line(self, k: int, epoch: int, row: dict[str, float]) -> None:
        """Without a terminal (a job log, a pipe), one plain line per epoch in place of the bars:
        the epoch, its loss and validation balanced accuracy, the time and an estimate of what
        is left."""
        if not self.config.progress or self.rank != 0 or get_console().is_terminal:
            return
        spent = [r["seconds"] for r in self.history]
        left = (self.built.total_epochs - epoch - 1) * sum(spent) / len(spent)
        print(
            f"{self._epoch_label(k, epoch, markup=False)}: loss {row['train_loss']:.3f}, "
            f"val balanced accuracy {100 * row['val_balanced_accuracy']:.1f}%, "
            f"{row['seconds']:.1f}s, about {left:.0f}s left",
            flush=True,
        )

    def _epoch_label(self, k: int, epoch: int, markup: bool = True) -> str:
        stages = len(self.built.stages)
        label = self.strategy.label + (f" (stage {k + 1})" if stages > 1 else "")
        shown = console_text(label) if markup else label
        return f"{shown} epoch {epoch + 1}/{self.built.total_epochs}"

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


def _progress_view(enabled: bool) -> Progress:
    """Progress bars on a terminal (none when disabled or not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        disable=not (enabled and get_console().is_terminal),
        transient=True,
    )


__all__ = [
    "Trainer",
    "TrainingDiverged",
    "classifier_head",
    "first_stage_config",
    "resolved_config",
    "strategy_for_run",
]
