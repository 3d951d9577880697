"""The training loop: one strategy (sampler + loss), plain PyTorch, resumable, DDP-aware."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

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
from longtail.data.augment import PRESETS
from longtail.data.bundle import DataBundle
from longtail.data.loading import (
    OWN_TRANSFORMS,
    feed_device,
    install_augmentation,
    keyed_batches,
    loader_kwargs,
    resolve_augmentation,
)
from longtail.distribution import ClassDistribution
from longtail.metrics import ClassificationReport, MetricAccumulator
from longtail.strategies import build_strategy, parse_strategy
from longtail.training.checkpoint import load, save_atomic
from longtail.training.identity import check_identity, run_identity, saved_identity
from longtail.training.models import HEADS, build_model
from longtail.training.schedule import best_epoch, lr_factor

log = logging.getLogger("longtail")

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved beside its results)."""

    strategy: str = "instance+ce"
    model: str = "mlp"
    pretrained: str | None = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: int = 1
    select_best: bool = True
    head: str | None = None  # None: the strategy's head (cosine for ldam_drw), else linear
    augment: str | None = None  # None: "standard" for longtail's datasets, else their own
    seed: int = 0
    device: str = "auto"
    num_workers: int | None = None
    amp: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

        def number(name: str, positive: bool) -> None:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
                need = "> 0" if positive else ">= 0"
                raise ValueError(f"{name} must be a finite number {need}, got {value!r}")

        integer("epochs", 1)
        integer("batch_size", 1)
        integer("seed", 0)
        integer("warmup_epochs", 0)
        if self.num_workers is not None:
            integer("num_workers", 0)
        number("lr", True)
        number("weight_decay", False)
        number("momentum", False)
        if self.head not in (None, *HEADS):
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.augment not in (None, OWN_TRANSFORMS, *PRESETS):
            choices = ", ".join(PRESETS)
            raise ValueError(f"augment must be one of {choices}, got {self.augment!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")


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
    rank, world = (tdist.get_rank(), tdist.get_world_size()) if tdist.is_initialized() else (0, 1)
    part: Dataset = Subset(dataset, range(rank, len(dataset), world)) if world > 1 else dataset
    finish = feed_device(dataset, device)
    kw = loader_kwargs(dataset, device, num_workers)
    model.eval()
    acc = MetricAccumulator(distribution.num_classes)
    for x, y in DataLoader(part, batch_size=batch_size, shuffle=False, **kw):
        acc.update(model(finish(x.to(device, non_blocking=True))), y.to(device))
    if world > 1:
        state = acc.state().to(device)
        tdist.all_reduce(state)
        acc.load_state(state)
    return acc.compute(distribution)


def _autocast(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler | None]:
    if not enabled or device.type != "cuda":
        return torch.autocast(device.type, enabled=False), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


LOG_FIELDS = [
    "epoch",
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
    asked: str | None, strategy_head: tuple[str, float] | None, loss_params: dict[str, Any]
) -> tuple[str, float]:
    """(head, scale): the one asked for, else the strategy's, else a linear head. A cosine head
    asked for by the user has scale 30 unless the strategy scales its logits itself."""
    if asked is None:
        return strategy_head or ("linear", 1.0)
    if asked == "cosine":
        return "cosine", strategy_head[1] if strategy_head else COSINE_SCALE
    if strategy_head is not None and "s" not in loss_params:
        raise ValueError(
            "this loss scales cosine logits by s = 30; with --head linear give it s yourself, "
            "e.g. ldam_drw[s=1]"
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
    head, head_scale = classifier_head(config.head, built.head, strategy.loss_params)
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
    criterion = built.loss.module.to(device)
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=True,
        )
    else:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    if main:  # everything is built and checked: the folder now holds this run
        write_json(out / "config.json", {"identity": identity, "config": asdict(config)})
    install_augmentation(data.train, config.augment)
    finish = feed_device(data.train, device)
    kw = loader_kwargs(data.train, device, config.num_workers)
    batches, keyed = keyed_batches(
        built.sampler.loader_arguments(config.batch_size), config.seed, rank, world
    )
    loader = DataLoader(data.train, **batches, **kw)
    total_steps = max(2, len(loader) * config.epochs)
    warmup_steps = min(config.warmup_epochs * len(loader), total_steps - 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps)
    )
    autocast, scaler = _autocast(device, config.amp)
    start_epoch, history = 0, []
    if resume and ckpt_path.exists():
        state = load(ckpt_path)
        check_identity(state.get("identity"), identity, ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        built.load_state_dict(state["strategy"])
        start_epoch, history = state["epoch"] + 1, state["history"]

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

    with progress:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            seed_everything(config.seed * 100_003 + epoch)
            built.on_epoch_start(epoch)
            keyed.set_epoch(epoch)  # augmentation draws from (seed, epoch, position)
            ddp_model.train()
            task = progress.add_task(
                f"{escape(strategy.label)} epoch {epoch + 1}/{config.epochs}",
                total=len(loader),
                info="",
            )
            loss_sum, correct, seen = (
                torch.zeros((), device=device),
                torch.zeros((), device=device),
                0,
            )
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
                if best_epoch(history) == epoch + 1:  # before the checkpoint that records it
                    save_atomic({"epoch": epoch, "model": model.state_dict()}, out / BEST)
                _write_log(out / "log.csv", history)
                if board is not None:
                    for key, value in row.items():
                        if key != "epoch":
                            board.add_scalar(key, value, epoch + 1)
                    board.flush()
                save_atomic(
                    {
                        "identity": identity,
                        "config": asdict(config),
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "strategy": built.state_dict(),
                        "history": history,
                    },
                    ckpt_path,
                )
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)

    selected = best_epoch(history) if config.select_best else int(history[-1]["epoch"])
    if selected != history[-1]["epoch"]:  # test the model of the best validation epoch
        if world > 1:
            tdist.barrier()  # rank 0 has written it
        model.load_state_dict(load(out / BEST)["model"])
    result: dict[str, Any] = {
        "identity": identity,
        "config": asdict(config),
        "history": history,
        "epochs_run": config.epochs - start_epoch,
        "selected_epoch": selected,
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
