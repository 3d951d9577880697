"""Building what a run trains and where it starts: the model, the context stages act on, the step
runner, and the state a checkpoint or another run's first stage hands over. Pure construction
and restoring: the loop (:mod:`longtail.training.trainer`) calls these while it sets a run up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from longtail.data.bundle import DataBundle
from longtail.errors import LongtailError
from longtail.strategies import BuiltStrategy, Strategy
from longtail.strategies.stages import StageContext
from longtail.training.backbones import add_lora, parse_tune
from longtail.training.checkpoint import load, restoring
from longtail.training.config import TrainConfig
from longtail.training.evaluation import score_heads
from longtail.training.identity import differences
from longtail.training.models import build_model, feature_head, find_classifier
from longtail.training.recorder import TESTED
from longtail.training.resolve import classifier_head
from longtail.training.results import RunResult
from longtail.training.runtime import autocast, seed_everything
from longtail.training.state import RunState
from longtail.training.step import StepRunner

BuiltRun = tuple[nn.Module, BuiltStrategy]
"""A run's model and its strategy built for the data."""
PendingOptimizer = tuple[int, dict[str, Any], dict[str, Any]]
"""(stage, optimiser state, schedule state) a checkpoint holds for the stage it was in."""


def run_model(
    config: TrainConfig, data: DataBundle, built: BuiltStrategy, strategy: Strategy, device: Any
) -> nn.Module:
    """The run's model with the head its loss needs, initialised from ``config.seed``, with
    LoRA adapters when ``config.tune`` asks for them."""
    head, scale = classifier_head(config.head, built.head, strategy.loss, strategy.loss_params)
    seed_everything(config.seed)
    features = data.extras.get("feature_dim")
    if features is not None:  # features computed once: the head alone trains
        return feature_head(features, data.distribution.num_classes, head, scale).to(device)
    model = build_model(
        config.model,
        data.distribution.num_classes,
        data.in_channels,
        data.image_size,
        config.pretrained,
        head,
        scale,
    )
    tuning = parse_tune(config.tune)
    if tuning.kind == "lora":
        model = add_lora(model, tuning)
    return model.to(device)


def stage_context(
    model: nn.Module, device: Any, data: DataBundle, num_workers: int, prior: np.ndarray | None
) -> StageContext:
    """What a second stage acts on: the model, its classifier (to read and replace) and a
    scorer of candidate heads on the validation split (under the target ``prior``)."""
    path = find_classifier(model)

    def set_classifier(module: nn.Module) -> None:
        parent, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, name, module.to(device))

    def score(heads: list[Callable[[Tensor], Tensor]]) -> list[float]:
        classifier = model.get_submodule(path)
        dist = data.distribution
        return score_heads(model, classifier, heads, data.val, dist, device, num_workers, prior)

    return StageContext(model, lambda: model.get_submodule(path), set_classifier, score)


def step_runner(
    config: TrainConfig,
    data: DataBundle,
    device: torch.device,
    rank: int,
    finish: Callable[[Tensor], Tensor],
) -> StepRunner:
    """The run's step runner: AMP as ``config.amp`` asks, the class counts (Remix) and tail
    classes (ImbSAM) of the training distribution."""
    dist = data.distribution
    amp, scaler = autocast(device, config.amp)
    tail = torch.as_tensor(np.asarray(dist.groups) == "tail", device=device)
    counts = torch.tensor(dist.counts, device=device)
    return StepRunner(device, finish, config.seed, rank, counts, tail, amp, scaler)


def restore(
    saved: dict[str, Any], path: Path, model: nn.Module, built: BuiltStrategy, ctx: StageContext
) -> tuple[RunState, list[dict[str, float]], PendingOptimizer | None]:
    """Continue from the checkpoint ``saved`` (read from ``path``): the stage it was in (with
    the model's structure of that stage), the weights and the strategy's state restored; returns
    the state, the history and the optimiser state of the stage it was in."""
    with restoring(path):
        state = RunState.from_checkpoint(saved)
        for k in range(1, state.stage + 1):
            built.stages[k].restore(ctx)
        model.load_state_dict(saved["model"])
        built.load_state_dict(saved["strategy"])
        history = list(saved["history"])
        pending = None
        if "optimizer" in saved:
            pending = (state.stage, saved["optimizer"], saved["scheduler"])
    return state, history, pending


def import_first_stage(
    folder: Path, first: TrainConfig, expected: dict[str, Any], label: str, run: BuiltRun
) -> tuple[RunState, list[dict[str, float]]]:
    """Start the strategy ``label`` from the finished first stage in ``folder`` (a run of
    ``first``, its first stage alone, of identity ``expected``): its tested model loaded into
    ``run``'s model, its history; only the second stage runs."""
    model, built = run
    if len(built.stages) < 2:
        raise LongtailError(f"{label} has no second stage to follow {folder}")
    result = RunResult.load(folder / "metrics.json")
    if result.identity != expected or result.diverged is not None or result.test is None:
        diff = "; ".join(differences(result.identity, expected)[:3]) or "it did not finish"
        raise LongtailError(
            f"{folder} does not hold the finished first stage {first.strategy} of {label} "
            f"({diff}); train it there first"
        )
    with restoring(folder / TESTED):
        model.load_state_dict(load(folder / TESTED)["model"])
    return RunState(0, built.stage_bounds()[0][1], "imported"), list(result.history)


__all__ = [
    "BuiltRun",
    "PendingOptimizer",
    "import_first_stage",
    "restore",
    "run_model",
    "stage_context",
    "step_runner",
]
