"""A comparison as a graph of trainings: first stages, shared by every strategy with the same
first stage and seed, then the second stages that start from them.

``sqrt+ce:crt`` and ``sqrt+ce:logit_adjust`` with seed 0 both start from one training of
``sqrt+ce`` with seed 0 (the same run as the strategy ``sqrt+ce`` itself, when it is compared
too); a post-hoc second stage (``tau_norm``, ``logit_adjust``) trains nothing and is an
evaluation of its first stage's model. Each training has its own identity and run folder, so it
is reused or resumed exactly as a single run is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from longtail.data.bundle import DataBundle
from longtail.strategies import Strategy
from longtail.training.config import TrainConfig
from longtail.training.identity import run_identity
from longtail.training.trainer import first_stage_config, resolved_config, strategy_for_run


@dataclass(eq=False)
class Training:
    """One training of a comparison: its config, run folder and identity, and the first stage
    it starts from (None: it starts from scratch). ``trains`` is false for a post-hoc second
    stage, which only evaluates its first stage's model."""

    config: TrainConfig
    run_dir: Path
    identity: dict[str, Any]
    first: Training | None = None
    trains: bool = True

    @property
    def name(self) -> str:
        """The strategy and seed, as the progress lines show it."""
        return f"{self.config.strategy} seed {self.config.seed}"


@dataclass
class ComparisonPlan:
    """Every training of a comparison in dependency order (a first stage before the stages that
    follow it), and for each (strategy label, seed) the training whose result is that run's."""

    trainings: list[Training] = field(default_factory=list)
    results: dict[tuple[str, int], Training] = field(default_factory=dict)
    _by_identity: dict[str, Training] = field(default_factory=dict, repr=False)

    @property
    def grid(self) -> int:
        """Strategies x seeds: the trainings a comparison without sharing would need."""
        return len(self.results)

    def add(self, training: Training) -> Training:
        """``training``, or the one already planned with its identity."""
        key = json.dumps(training.identity, sort_keys=True)
        if key not in self._by_identity:
            self._by_identity[key] = training
            self.trainings.append(training)
        return self._by_identity[key]


def _folder(out: Path, strategy: Strategy | str, seed: int, settings: dict[str, Any]) -> Path:
    slug = strategy.slug if isinstance(strategy, Strategy) else strategy
    if settings:  # a first stage trained with settings of its own (weight balancing's decay)
        slug += "~" + ",".join(f"{k}={v}" for k, v in sorted(settings.items()))
    return out / "runs" / slug / f"seed{seed}"


def plan_comparison(
    data: DataBundle,
    strategies: Sequence[Strategy],
    seeds: Sequence[int],
    base: TrainConfig,
    out: Path,
) -> ComparisonPlan:
    """The trainings of every strategy with every seed, first stages shared; a strategy that
    cannot be built for this data (a bad parameter) fails now, not after hours of other runs."""
    plan = ComparisonPlan()
    fingerprint = data.fingerprint()
    for strategy in strategies:
        try:
            built = strategy_for_run(strategy, base, data)
        except ValueError as err:
            raise ValueError(f"strategy {strategy.label}: {err}") from None
        for seed in seeds:
            config = resolved_config(replace(base, strategy=strategy.label, seed=seed), data)
            identity = run_identity(config, fingerprint)
            run_dir = _folder(out, strategy, seed, {})
            if strategy.stage is None:
                training = plan.add(Training(config, run_dir, identity))
            else:
                first_config = first_stage_config(config, built)
                first_dir = _folder(
                    out,
                    Strategy(label=first_config.strategy).slug,
                    seed,
                    built.first_stage_settings(),
                )
                first = plan.add(
                    Training(first_config, first_dir, run_identity(first_config, fingerprint))
                )
                trains = built.stages[1].epochs > 0
                training = plan.add(Training(config, run_dir, identity, first, trains))
            plan.results[(strategy.label, seed)] = training
    return plan


__all__ = ["ComparisonPlan", "Training", "plan_comparison"]
