"""What a run is, before it trains: its config resolved against the data (the augmentation preset,
the target prior's table), its strategy built for the data, its classifier head, and the config of
its first stage trained alone. Used by the loop and by the comparison's plan alike."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from longtail.data.bundle import DataBundle
from longtail.data.loading import resolve_augmentation
from longtail.errors import LongtailError
from longtail.priors import canonical_target, target_prior
from longtail.strategies import BuiltStrategy, Strategy, build_strategy, parse_strategy
from longtail.strategies.registry import ClassifierHead
from longtail.training.config import TrainConfig
from longtail.training.models import default_augment

COSINE_SCALE = 30.0
"""The scale of a cosine classifier head asked for by the user (Wang et al., CosFace, 2018)."""


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


__all__ = [
    "COSINE_SCALE",
    "classifier_head",
    "first_stage_config",
    "resolved_config",
    "strategy_for_run",
]
