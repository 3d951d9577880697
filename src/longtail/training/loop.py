"""The training loop: one strategy (sampler + loss), plain PyTorch, resumable, DDP-aware."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from rich import get_console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from longtail._io import jsonable, write_json, write_text
from longtail._lock import folder_lock
from longtail.data.bundle import DataBundle
from longtail.data.loading import (
    feed_device,
    install_augmentation,
    keyed_batches,
    loader_kwargs,
    resolve_augmentation,
)
from longtail.distribution import ClassDistribution
from longtail.metrics import ClassificationReport, MetricAccumulator
from longtail.strategies import build_strategy, parse_strategy
from longtail.strategies.registry import ClassifierHead
from longtail.strategies.stages import StageContext
from longtail.training.checkpoint import load, save_atomic
from longtail.training.config import TrainConfig
from longtail.training.identity import check_identity, run_identity, saved_identity
from longtail.training.models import build_model, find_classifier
from longtail.training.schedule import best_epoch, lr_factor

log = logging.getLogger("longtail")

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


class TrainingDiverged(RuntimeError):
    """The loss became nan or infinite: the run stopped instead of reporting a broken model."""

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step


def _world() -> tuple[int, int]:
    """(rank, world size), initialising the process group when launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if tdist.is_available() and tdist.is_initialized():
        return tdist.get_rank(), tdist.get_world_size()
    return 0, 1


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU when there is one, else the CPU) or a torch device string that exists here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} was asked for but no CUDA GPU is available here; use --device cpu (or auto)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} is not available here; use --device cpu (or auto)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code that uses the global RNG
    torch.manual_seed(seed)


def _validation_batches(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    num_workers: int | None,
) -> Any:
    """(images on ``device``, ready for the model; labels) of this rank's share of ``dataset``,
    with ``model`` in eval mode."""
    rank, world = (tdist.get_rank(), tdist.get_world_size()) if tdist.is_initialized() else (0, 1)
    part: Dataset = Subset(dataset, range(rank, len(dataset), world)) if world > 1 else dataset
    finish = feed_device(dataset, device)
    kw = loader_kwargs(dataset, device, num_workers)
    model.eval()
    for x, y in DataLoader(part, batch_size=batch_size, shuffle=False, **kw):
        yield finish(x.to(device, non_blocking=True)), y.to(device)


def _reduced(accumulators: list[MetricAccumulator], device: torch.device) -> None:
    """Sum the accumulators' statistics over DDP ranks (in place)."""
    if tdist.is_initialized() and tdist.get_world_size() > 1:
        for acc in accumulators:
            state = acc.state().to(device)
            tdist.all_reduce(state)
            acc.load_state(state)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    distribution: ClassDistribution,
    device: torch.device,
    batch_size: int = 512,
    num_workers: int | None = None,
) -> ClassificationReport:
    """Metrics of ``model`` on ``dataset``; under DDP each rank evaluates its share and the
    statistics are summed across ranks, so every rank gets the same exact numbers."""
    acc = MetricAccumulator(distribution.num_classes)
    for x, y in _validation_batches(model, dataset, device, batch_size, num_workers):
        acc.update(model(x), y)
    _reduced([acc], device)
    return acc.compute(distribution)


@torch.no_grad()
def score_heads(
    model: nn.Module,
    classifier: nn.Module,
    heads: list[Callable[[torch.Tensor], torch.Tensor]],
    dataset: Dataset,
    distribution: ClassDistribution,
    device: torch.device,
    num_workers: int | None = None,
) -> list[float]:
    """Balanced accuracy on ``dataset`` of each candidate head: a function from ``classifier``'s
    input (the features ``model`` computes) to logits; one pass, exact under DDP."""
    features: list[torch.Tensor] = []
    hook = classifier.register_forward_hook(lambda module, args, out: features.append(args[0]))
    accs = [MetricAccumulator(distribution.num_classes) for _ in heads]
    try:
        for x, y in _validation_batches(model, dataset, device, 512, num_workers):
            features.clear()
            model(x)
            for acc, head in zip(accs, heads, strict=True):
                acc.update(head(features[0].float()), y)
    finally:
        hook.remove()
    _reduced(accs, device)
    return [acc.compute(distribution).summary()["balanced_accuracy"] for acc in accs]


def _autocast(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler | None]:
    if not enabled or device.type != "cuda":
        return torch.autocast(device.type, enabled=False), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


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


COSINE_SCALE = 30.0


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
        raise ValueError(
            f"{loss} scales {needed.kind} logits by its parameter {param}; with --head linear "
            f"give {param} yourself, e.g. {loss}[{param}=1]"
        )
    return "linear", 1.0


def resolved_config(config: TrainConfig, data: DataBundle) -> TrainConfig:
    """``config`` with what it leaves to the data filled in (the augmentation preset), as the
    run records it in its identity."""
    return replace(config, augment=resolve_augmentation(data.train, config.augment))


def train(
    config: TrainConfig,
    data: DataBundle,
    out: str | Path,
    *,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
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

    A non-finite loss stops the run with :class:`TrainingDiverged` (the last checkpoint is that of
    the last good epoch, and ``metrics.json`` records the divergence, not a result).
    """
    out = Path(out)
    rank, _ = _world()
    with folder_lock(out) if rank == 0 else contextlib.nullcontext():
        return _train(config, data, out, resume, on_epoch_end)


def _train(
    config: TrainConfig,
    data: DataBundle,
    out: Path,
    resume: bool,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None,
) -> dict[str, Any]:
    rank, world = _world()
    device = resolve_device(config.device)
    main = rank == 0
    config = resolved_config(config, data)
    strategy = parse_strategy(config.strategy)
    identity = run_identity(config, data.fingerprint())
    ckpt_path = out / CHECKPOINT
    if main:
        previous = saved_identity(out)
        if previous is not None or ckpt_path.exists():
            check_identity(previous, identity, out)
    dist = data.distribution

    built = build_strategy(
        strategy,
        data.train.targets,
        dist.counts,
        seed=config.seed,
        epochs=config.epochs,
        batch_size=config.batch_size,
    )
    head, head_scale = classifier_head(config.head, built.head, strategy.loss, strategy.loss_params)
    seed_everything(config.seed)
    model = build_model(
        config.model,
        dist.num_classes,
        data.in_channels,
        data.image_size,
        config.pretrained,
        head,
        head_scale,
    ).to(device)
    classifier_path = find_classifier(model)

    def set_classifier(module: nn.Module) -> None:
        parent, _, name = classifier_path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, name, module.to(device))

    ctx = StageContext(
        model,
        lambda: model.get_submodule(classifier_path),
        set_classifier,
        lambda heads: score_heads(
            model,
            model.get_submodule(classifier_path),
            heads,
            data.val,
            dist,
            device,
            config.num_workers,
        ),
    )
    if main:  # everything is built and checked: the folder now holds this run
        write_json(out / "config.json", {"identity": identity, "config": asdict(config)})
    install_augmentation(data.train, config.augment)
    finish = feed_device(data.train, device)
    kw = loader_kwargs(data.train, device, config.num_workers)
    autocast, scaler = _autocast(device, config.amp)
    bounds = built.stage_bounds()

    start_epoch, history, current, saved = 0, [], 0, None
    if resume and ckpt_path.exists():
        saved = load(ckpt_path)
        check_identity(saved.get("identity"), identity, ckpt_path)
        current = int(saved.get("stage", 0))
        for k in range(1, current + 1):  # the structure the saved model has
            built.stages[k].restore(ctx)
        model.load_state_dict(saved["model"])
        built.load_state_dict(saved["strategy"])
        start_epoch, history = saved["epoch"] + 1, saved["history"]

    console = get_console()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        disable=not (config.progress and main and console.is_terminal),
        transient=True,
    )
    board = _tensorboard(out) if main else None

    def announce_bad_images() -> None:
        for path, reason in data.new_unreadable_images().items():
            if main:
                log.warning(
                    "unreadable image %s (%s); replaced by another image of its class", path, reason
                )

    def checkpoint(epoch: int, stage: int, optimizer: Any = None, scheduler: Any = None) -> None:
        state = {
            "identity": identity,
            "config": asdict(config),
            "epoch": epoch,
            "stage": stage,
            "model": model.state_dict(),
            "strategy": built.state_dict(),
            "history": history,
        }
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
            state["scheduler"] = scheduler.state_dict()
        save_atomic(state, ckpt_path)

    def stage_rows(k: int) -> list[dict[str, float]]:
        return [row for row in history if row.get("stage", 1) == k + 1]

    with progress:
        for k in range(current, len(built.stages)):
            stage, (first, end) = built.stages[k], bounds[k]
            if k > current:  # end of stage k - 1: the next one begins on its chosen model
                if config.select_best and stage_rows(k - 1):
                    if world > 1:
                        tdist.barrier()  # rank 0 has written it
                    model.load_state_dict(load(out / BEST)["model"])
                seed_everything(config.seed * 100_003 + first)
                stage.begin(ctx)
                current = k
                if main:  # a resume continues inside this stage, without beginning it again
                    checkpoint(first - 1, k)
            if stage.epochs == 0 or start_epoch >= end:
                continue
            trainable = list(stage.parameters(ctx))
            learning = {id(p) for p in trainable}
            for p in model.parameters():
                p.requires_grad_(id(p) in learning)
            optimizer = _optimizer(
                config,
                trainable,
                config.lr * stage.lr_multiplier if stage.lr is None else stage.lr,
                config.weight_decay if stage.weight_decay is None else stage.weight_decay,
            )
            ddp_model: nn.Module = model
            if world > 1:
                ddp_model = nn.parallel.DistributedDataParallel(
                    model, device_ids=[device.index] if device.type == "cuda" else None
                )
            assert stage.sampler is not None and stage.loss is not None
            criterion = stage.loss.module.to(device)
            batches, keyed = keyed_batches(
                stage.sampler.loader_arguments(config.batch_size), config.seed, rank, world
            )
            loader = DataLoader(data.train, **batches, **kw)
            total_steps = max(2, len(loader) * stage.epochs)
            warmup = config.warmup_epochs * len(loader) if stage.lr_warmup else 0
            warmup_steps = min(warmup, total_steps - 1)
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step, t=total_steps, w=warmup_steps: lr_factor(step, t, w)
            )
            if saved is not None and int(saved.get("stage", 0)) == k and "optimizer" in saved:
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict(saved["scheduler"])
            for epoch in range(max(first, start_epoch), end):
                t0 = time.perf_counter()
                seed_everything(config.seed * 100_003 + epoch)
                built.on_epoch_start(epoch)
                keyed.set_epoch(epoch)  # augmentation draws from (seed, epoch, position)
                if stage.freezes_representation():
                    ddp_model.eval()  # batch-norm statistics and dropout of the frozen part
                    ctx.get_classifier().train()
                else:
                    ddp_model.train()
                label = strategy.label + (f" (stage {k + 1})" if len(built.stages) > 1 else "")
                task = progress.add_task(
                    f"{escape(label)} epoch {epoch + 1}/{built.total_epochs}",
                    total=len(loader),
                    info="",
                )
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), device=device)
                seen = 0
                for step, (x, y) in enumerate(loader):
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    x = finish(x)
                    with autocast:
                        logits = ddp_model(x)
                        loss = criterion(logits, y)
                    if not torch.isfinite(loss.detach()):
                        lr = optimizer.param_groups[0]["lr"]
                        message = (
                            f"training diverged: the loss of {strategy.label} became "
                            f"{loss.item()} at epoch {epoch + 1}, step {step + 1} (learning rate {lr:g}). "
                            f"Lower the learning rate (e.g. --lr {lr / 10:g}) or use a gentler loss; "
                            + (
                                f"the checkpoint of epoch {epoch} is kept"
                                if epoch
                                else "no epoch finished"
                            )
                        )
                        if main:
                            write_json(
                                out / "metrics.json",
                                {
                                    "identity": identity,
                                    "config": asdict(config),
                                    "history": history,
                                    "diverged": {
                                        "epoch": epoch + 1,
                                        "step": step + 1,
                                        "message": message,
                                    },
                                },
                            )
                        raise TrainingDiverged(message, epoch + 1, step + 1)
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        optimizer.step()
                    stage.after_step(ctx)
                    lr = optimizer.param_groups[0]["lr"]
                    scheduler.step()
                    loss_sum += loss.detach() * y.numel()
                    correct += (logits.argmax(1) == y).sum()
                    seen += y.numel()
                    if step % 20 == 0 or step == len(loader) - 1:
                        progress.update(
                            task,
                            completed=step + 1,
                            info=f"loss {loss_sum.item() / seen:.3f} acc {correct.item() / seen:.3f}",
                        )
                progress.remove_task(task)
                val = evaluate_model(model, data.val, dist, device, num_workers=config.num_workers)
                announce_bad_images()
                built.after_validation(val)
                vs = val.summary()
                row = {
                    "epoch": epoch + 1,
                    "stage": k + 1,
                    "train_loss": loss_sum.item() / max(seen, 1),
                    "train_accuracy": correct.item() / max(seen, 1),
                    "val_accuracy": vs["accuracy"],
                    "val_balanced_accuracy": vs["balanced_accuracy"],
                    "val_macro_f1": vs["macro_f1"],
                    "val_head_recall": vs["head_recall"],
                    "val_tail_recall": vs["tail_recall"],
                    "lr": lr,
                    "seconds": time.perf_counter() - t0,
                }
                history.append(row)
                if main:
                    if best_epoch(stage_rows(k)) == epoch + 1:  # before the checkpoint
                        save_atomic({"epoch": epoch, "model": model.state_dict()}, out / BEST)
                    _write_log(out / "log.csv", history)
                    if board is not None:
                        for key, value in row.items():
                            if key != "epoch":
                                board.add_scalar(key, value, epoch + 1)
                        board.flush()
                    checkpoint(epoch, k, optimizer, scheduler)
                if on_epoch_end is not None:
                    on_epoch_end(epoch, row)
            for p in model.parameters():
                p.requires_grad_(True)

    last = len(built.stages) - 1
    while last > 0 and not stage_rows(last):  # a post-hoc stage: tested on its stage's model
        last -= 1
    rows = stage_rows(last)
    selected = best_epoch(rows) if config.select_best else int(rows[-1]["epoch"])
    post_hoc_last = last < len(built.stages) - 1  # its adjusted model is the one to test
    if not post_hoc_last and selected != rows[-1]["epoch"]:  # the best validation epoch's model
        if world > 1:
            tdist.barrier()  # rank 0 has written it
        model.load_state_dict(load(out / BEST)["model"])
    result: dict[str, Any] = {
        "identity": identity,
        "config": asdict(config),
        "history": history,
        "epochs_run": built.total_epochs - start_epoch,
        "selected_epoch": selected,
        "stages": [st.summary() for st in built.stages[1:]],
    }
    if data.test is not None:
        test = evaluate_model(model, data.test, dist, device, num_workers=config.num_workers)
        result["test"] = test.to_dict()
    announce_bad_images()
    result["unreadable_images"] = len(data.unreadable_images())
    result = jsonable(result)
    if main:
        write_json(out / "metrics.json", result)
    return result


def _optimizer(
    config: TrainConfig, parameters: list[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=lr,
            momentum=config.momentum,
            weight_decay=weight_decay,
            nesterov=True,
        )
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def _tensorboard(out: Path) -> Any:
    """A TensorBoard writer in ``out/tensorboard`` when the tensorboard package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _write_log(path: Path, rows: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())
