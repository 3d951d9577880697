"""A comparison as a graph of trainings: first stages, shared by every strategy with the same
first stage and seed, then the second stages that start from them.

``sqrt+ce:crt`` and ``sqrt+ce:logit_adjust`` with seed 0 both start from one training of
``sqrt+ce`` with seed 0 (the same run as the strategy ``sqrt+ce`` itself, when it is compared
too); a post-hoc second stage (``tau_norm``, ``logit_adjust``) trains nothing and is an
evaluation of its first stage's model. Each training has its own identity and run folder, so it
is reused or resumed exactly as a single run is.

A row of a comparison is a strategy with, after ``@``, the training settings it has of its own
on top of the comparison's: ``weighted+ce@mix=remix[alpha=0.2]`` or
``instance+balanced_softmax@optimizer=sam[rho=0.1,base=adamw]@lr=0.002``. The model, its
epochs and the target prior are the same for every row
(:func:`~longtail.training.config.parse_setting`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from longtail._io import refuse_links_below
from longtail.data.bundle import DataBundle
from longtail.errors import LongtailError
from longtail.strategies import Strategy, parse_strategy, split_outside_brackets
from longtail.training.config import TrainConfig, parse_setting
from longtail.training.identity import run_identity
from longtail.training.resolve import first_stage_config, resolved_config, strategy_for_run

DEFAULT_STRATEGIES = (
    "instance+ce",
    "weighted+ce",
    "weighted[scheme=smooth_inverse,alpha=500]+ce",
    "weighted[scheme=effective_number,beta=0.999]+ce",
    "hybrid+ce",
    "curriculum+ce",
    "instance+focal",
    "class_balanced+focal",
    "instance+balanced_softmax",
    "instance+ldam_drw",
    "sqrt+ce:crt",
    "weighted+ce:lws",
    "sqrt+ce:logit_adjust",
    "instance+ce:weight_balancing",
    "weighted+ce@mix=remix[alpha=0.2]",
    "weighted+ce@optimizer=sam[rho=0.05,base=adamw]",
)
"""What ``longtail compare`` runs by default: plain training, inverse / smoothed-inverse /
class-balanced (effective number) weighted sampling, hybrid and curriculum sampling, focal loss,
class-balanced sampling with focal loss, two of the strongest published losses (balanced
softmax, LDAM with deferred re-weighting), and the decoupled second stages in their strongest
pairing on the demo (classifier re-training and post-hoc logit adjustment after square-root
sampling, learnable weight scaling after inverse-frequency sampling, weight balancing), and
inverse-frequency sampling with the two first-stage recipes that helped it most in
``benchmarks/balanced_reference.py`` (Remix, sharpness-aware steps): a row of
``longtail compare`` may carry settings after ``@``."""


@dataclass(frozen=True)
class Row:
    """One row of a comparison: ``strategy`` trained with the settings ``recipe`` (name, value)
    on top of the comparison's; ``label`` names it in every table."""

    strategy: Strategy
    recipe: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    @property
    def slug(self) -> str:
        """A file-system friendly name."""
        return _slug(self.label)


def parse_row(text: str) -> Row:
    """The row written as ``STRATEGY[@setting=value]...`` (see the module docstring)."""
    label = text.strip()
    if not label or label.startswith("@"):
        raise LongtailError(f"{text!r}: a row starts with its strategy, e.g. weighted+ce@lr=0.002")
    spec, *settings = split_outside_brackets(label, "@")
    recipe: dict[str, Any] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise LongtailError(f"{text!r}: write a row's setting as @name=value, got @{item}")
        if name in recipe:
            raise LongtailError(f"{text!r} sets {name} twice")
        try:
            recipe[name] = parse_setting(name, value.strip())
        except LongtailError as err:
            raise LongtailError(f"{text!r}: {err}") from None
    return Row(parse_strategy(spec), tuple(recipe.items()), label)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text).strip("_")


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


def _folder(out: Path, label: str, seed: int, settings: dict[str, Any]) -> Path:
    slug = _slug(label)
    if settings:  # a first stage trained with settings of its own (weight balancing's decay)
        slug += "~" + ",".join(f"{k}={_slug(str(v))}" for k, v in sorted(settings.items()))
    return out / "runs" / slug / f"seed{seed}"


def plan_comparison(
    data: DataBundle,
    rows: Sequence[Row],
    seeds: Sequence[int],
    base: TrainConfig,
    out: Path,
) -> ComparisonPlan:
    """The trainings of every row with every seed, first stages shared; a strategy that
    cannot be built for this data (a bad parameter) fails now, not after hours of other runs."""
    plan = ComparisonPlan()
    fingerprint = data.fingerprint()
    for row in rows:
        strategy, row_base = row.strategy, replace(base, **dict(row.recipe))
        try:
            built = strategy_for_run(strategy, row_base, data)
        except LongtailError as err:
            raise LongtailError(f"strategy {row.label}: {err}") from None
        for seed in seeds:
            config = resolved_config(replace(row_base, strategy=strategy.label, seed=seed), data)
            identity = run_identity(config, fingerprint)
            run_dir = refuse_links_below(out, _folder(out, row.label, seed, {}))
            if strategy.stage is None:
                training = plan.add(Training(config, run_dir, identity))
            else:
                first_config = first_stage_config(config, built)
                settings = {**built.first_stage_settings(), **dict(row.recipe)}
                first_dir = refuse_links_below(
                    out, _folder(out, first_config.strategy, seed, settings)
                )
                first = plan.add(
                    Training(first_config, first_dir, run_identity(first_config, fingerprint))
                )
                trains = built.stages[1].epochs > 0
                training = plan.add(Training(config, run_dir, identity, first, trains))
            plan.results[(row.label, seed)] = training
    return plan


__all__ = [
    "DEFAULT_STRATEGIES",
    "ComparisonPlan",
    "Row",
    "Training",
    "parse_row",
    "plan_comparison",
]
