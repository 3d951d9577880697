"""A comparison's results: the records ``results.json`` holds (:class:`Comparison`, its view at
each level of the class tree, the per-metric :class:`Stat`, the :class:`Uncertainty` of the
headline and the :class:`PriorShift` curves) and the statistics that make them from the runs of
each strategy x seed (:class:`Collected`). The comparison's orchestration is
:mod:`longtail.experiments.compare`, its files :mod:`longtail.experiments.outputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from longtail._io import jsonable
from longtail.data.bundle import DataBundle
from longtail.distribution import ClassDistribution
from longtail.errors import LongtailError
from longtail.experiments.plan import Row
from longtail.metrics import HEADLINE, compare_runs
from longtail.priors import SHIFT_EXPONENTS, shift_label, shifted_accuracies, target_prior
from longtail.training.loop import TrainConfig, TrainingDiverged, resolved_config
from longtail.training.results import (
    JsonRecord,
    RunResult,
    TestResult,
    number_or_nan,
    strict_fields,
)
from longtail.uncertainty import bootstrap_interval, indistinct, paired_interval, seed_interval


@dataclass(frozen=True)
class Stat:
    """One metric of one strategy over seeds: mean, std, number of seeds, each seed's value, and
    the change of the
    mean against the baseline, in percentage points for a share and in the metric's unit
    otherwise (None when the baseline has no value)."""

    mean: float
    std: float
    n: int
    delta_points: float | None = None
    values: list[float] = field(default_factory=list)  # each seed's, in seed order

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean, "std": self.std, "n": self.n}
        if self.delta_points is not None:
            out["delta_points"] = self.delta_points
        return {**out, "values": self.values} if self.values else out

    @classmethod
    def from_dict(cls, record: Any) -> Stat:
        kw = strict_fields(cls, record, ("mean", "std", "n"))
        values = [number_or_nan(v) for v in kw.pop("values", [])]
        kw = {k: v if k == "n" or v is not None else float("nan") for k, v in kw.items()}
        return cls(**kw, values=values)


def _stats(table: Any) -> dict[str, dict[str, Stat]]:
    if not isinstance(table, dict):
        raise LongtailError("metrics must be an object: metric -> strategy -> statistics")
    return {m: {n: Stat.from_dict(s) for n, s in row.items()} for m, row in table.items()}


@dataclass
class LevelComparison:
    """The strategies judged at one coarser level of the class tree (1 = the top): its
    ``classes`` (the tree's nodes there) and ``metrics[metric][strategy]``, as in
    :class:`Comparison`, from each run's predictions rolled up the tree."""

    level: int
    classes: list[str]
    metrics: dict[str, dict[str, Stat]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "classes": self.classes,
            "metrics": {m: {n: s.to_dict() for n, s in r.items()} for m, r in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, record: Any) -> LevelComparison:
        kw = strict_fields(cls, record, ("level", "classes", "metrics"))
        return cls(int(kw["level"]), list(kw["classes"]), _stats(kw["metrics"]))


@dataclass
class PriorShift:
    """Each strategy's test accuracy under shifted class priors q ~ pi^t (pi the training
    prior; :mod:`longtail.priors`): ``exponents`` t, their ``labels`` and, per strategy, a
    :class:`Stat` over seeds at each exponent (computed exactly from per-class recall)."""

    exponents: list[float]
    labels: list[str]
    accuracy: dict[str, list[Stat]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "exponents": self.exponents,
            "labels": self.labels,
            "accuracy": {n: [s.to_dict() for s in row] for n, row in self.accuracy.items()},
        }

    @classmethod
    def from_dict(cls, record: Any) -> PriorShift:
        kw = strict_fields(cls, record, ("exponents", "labels", "accuracy"))
        accuracy = {n: [Stat.from_dict(s) for s in row] for n, row in kw["accuracy"].items()}
        return cls([float(t) for t in kw["exponents"]], list(kw["labels"]), accuracy)

    def mean(self, strategy: str) -> np.ndarray:
        return np.array([s.mean for s in self.accuracy[strategy]], dtype=np.float64)


@dataclass(frozen=True)
class Uncertainty:
    """How sure the headline metric of one strategy is (:mod:`longtail.uncertainty`): the 95%
    interval of its mean over seeds and over test images (bootstrap), the difference from the
    best strategy seed by seed with its 95% interval, and whether the two are ``tied``: their
    mean +- std over seeds overlap, or (with 3 seeds or more) the paired interval holds 0."""

    strategy: str
    mean: float
    seed_low: float
    seed_high: float
    image_low: float
    image_high: float
    vs_best: float
    vs_best_low: float
    vs_best_high: float
    tied: bool

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, record: Any) -> Uncertainty:
        kw = strict_fields(cls, record, tuple(f.name for f in fields(cls)))
        return cls(
            **{k: v if k in ("strategy", "tied") else number_or_nan(v) for k, v in kw.items()}
        )


@dataclass
class Comparison(JsonRecord):
    """Strategies compared under identical conditions: what ``results.json`` holds.

    ``metrics[metric][strategy]`` is a :class:`Stat` (test split, over ``seeds``); ``diverged``
    maps a strategy that diverged in any seed to its first message; ``per_class_recall`` holds
    each strategy's mean per-class recall; ``trainings`` counts the stage trainings this call
    ran, ``reused`` the finished ones it took as they were, ``grid`` strategies x seeds (first
    stages are shared, and a post-hoc second stage is an evaluation, not a training); on data
    with a class tree, ``levels`` holds the same table at each coarser level; ``small_test``
    names the classes with fewer than 5 test images, whose recall moves in steps of 20 points
    or more, and the metrics they move are marked in every table."""

    baseline: str
    strategies: list[str]
    metrics: dict[str, dict[str, Stat]]
    diverged: dict[str, str] = field(default_factory=dict)
    unreadable_images: int = 0
    selected_epochs: dict[str, list[int | None]] = field(default_factory=dict)
    chosen_tau: dict[str, list[float]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    per_class_recall: dict[str, list[float | None]] = field(default_factory=dict)
    trainings: int = 0
    reused: int = 0
    grid: int = 0
    levels: list[LevelComparison] = field(default_factory=list)
    prior_shift: PriorShift | None = None
    small_test: dict[str, int] = field(default_factory=dict)  # class -> test images, when < 5
    small_test_groups: list[str] = field(default_factory=list)  # the groups those classes are in
    uncertainty: list[Uncertainty] = field(default_factory=list)  # of the headline metric
    costs: dict[str, int] = field(default_factory=dict)  # stage trainings per seed
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)  # a row's own settings
    chance: float = 0.0  # the headline of a model that learned nothing (0: not known)

    SMALL_MOVES = ("balanced_accuracy", "macro_f1", "target_accuracy")

    def moved_by_small_test(self, metric: str) -> bool:
        """Whether ``metric`` averages over a class with fewer than 5 test images."""
        if not self.small_test:
            return False
        groups = {f"{g}_{m}" for g in self.small_test_groups for m in ("recall", "f1")}
        return metric in self.SMALL_MOVES or metric in groups

    @classmethod
    def from_table(cls, table: dict[str, Any], **rest: Any) -> Comparison:
        """From :func:`longtail.metrics.compare_runs`'s table and the other fields (``levels``
        as :class:`LevelComparison` records)."""
        typed = {k: rest.pop(k) for k in ("levels", "prior_shift", "uncertainty") if k in rest}
        return replace(cls.from_dict({**table, **rest}), **typed)

    def stat(self, metric: str, strategy: str) -> Stat | None:
        return self.metrics.get(metric, {}).get(strategy)

    def at_level(self, level: LevelComparison) -> Comparison:
        """This comparison as judged at ``level``: its metrics and classes, the rest as is."""
        return replace(
            self,
            metrics=level.metrics,
            classes=level.classes,
            levels=[],
            prior_shift=None,
            small_test={},
            small_test_groups=[],
            uncertainty=[],
            chance=0.0,
        )

    @property
    def at_chance(self) -> list[str]:
        """The strategies whose headline cannot be told from :attr:`chance`: the 95% interval
        of their mean over test images (bootstrap) reaches it. ``chance`` is what a model that
        ignores its input scores: 1/K for balanced accuracy, the largest target share for the
        accuracy under a target prior (always predicting that class)."""
        if self.chance <= 0:
            return []
        return [u.strategy for u in self.uncertainty if u.image_low <= self.chance]

    @property
    def settings(self) -> TrainConfig:
        """The training settings every row shares, as the typed record (``config`` holds them
        as JSON; a row's own settings are in ``recipes``)."""
        return TrainConfig(**self.config)

    @property
    def headline(self) -> str:
        """The metric strategies are ranked by: the accuracy under the target prior when the
        runs had one (``--target-prior``), balanced accuracy otherwise."""
        return "target_accuracy" if "target_accuracy" in self.metrics else "balanced_accuracy"

    def best(self, metric: str) -> str | None:
        """The strategy with the largest finite mean of ``metric`` (None when none is finite)."""
        row = {n: s.mean for n, s in self.metrics.get(metric, {}).items() if np.isfinite(s.mean)}
        return max(row, key=row.__getitem__) if row else None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["metrics"] = {
            m: {n: s.to_dict() for n, s in row.items()} for m, row in self.metrics.items()
        }
        out["levels"] = [level.to_dict() for level in self.levels]
        if not self.levels:
            del out["levels"]
        if self.prior_shift is None:
            del out["prior_shift"]
        else:
            out["prior_shift"] = self.prior_shift.to_dict()
        out["uncertainty"] = [u.to_dict() for u in self.uncertainty]
        return jsonable(out)

    @classmethod
    def from_dict(cls, record: Any) -> Comparison:
        kw = strict_fields(cls, record, ("baseline", "strategies", "metrics"))
        kw["metrics"] = _stats(kw["metrics"])
        kw["levels"] = [LevelComparison.from_dict(level) for level in kw.get("levels", [])]
        if kw.get("prior_shift") is not None:
            kw["prior_shift"] = PriorShift.from_dict(kw["prior_shift"])
        kw["uncertainty"] = [Uncertainty.from_dict(u) for u in kw.get("uncertainty", [])]
        return cls(**kw)


@dataclass
class Collected:
    """The results of a comparison's runs as they come in: per strategy, the finished runs
    (in seed order), the first divergence message, and the wall time over its seeds."""

    runs: dict[str, list[RunResult]] = field(default_factory=dict)
    diverged: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    trainings: int = 0
    reused: int = 0
    grid: int = 0
    costs: dict[str, int] = field(default_factory=dict)  # stage trainings per seed

    def add(self, label: str, result: RunResult, seconds: float) -> None:
        self.timings[label] = self.timings.get(label, 0.0) + seconds
        if result.diverged is not None:
            self.diverged.setdefault(label, result.diverged.message)
        else:
            self.runs.setdefault(label, []).append(result)

    def converged(self, labels: list[str]) -> list[str]:
        return [n for n in labels if n in self.runs and n not in self.diverged]

    def mean_recall(self, label: str) -> np.ndarray:
        return np.mean([r.test.recall for r in self.runs[label]], axis=0)

    def confusion(self, label: str) -> np.ndarray:
        return sum(r.test.confusion_matrix for r in self.runs[label])


def build_comparison(
    collected: Collected,
    parsed: list[Row],
    seeds: Sequence[int],
    base: TrainConfig,
    data: DataBundle,
    seconds: float,
) -> Comparison:
    labels = [p.label for p in parsed]
    converged = collected.converged(labels)
    if not converged:
        raise TrainingDiverged(
            "every strategy diverged (non-finite loss); lower the learning rate, e.g. "
            f"--lr {base.lr / 10:g}. First message: {next(iter(collected.diverged.values()))}",
            0,
            0,
        )
    summaries = {n: [r.test.summary for r in collected.runs[n]] for n in converged}
    config = asdict(resolved_config(base, data))
    table = compare_runs(summaries, metrics=HEADLINE)
    prior = target_prior(
        config["target_prior"], data.distribution.counts, data.distribution.class_names
    )
    return Comparison.from_table(
        table,
        uncertainty=uncertainties(Comparison.from_table(table), collected, prior),
        chance=chance_level(prior, data.distribution.num_classes),
        costs=collected.costs,
        recipes={row.label: dict(row.recipe) for row in parsed if row.recipe},
        strategies=labels,
        diverged=collected.diverged,
        unreadable_images=len(data.unreadable_images()),
        selected_epochs={n: [r.selected_epoch for r in collected.runs[n]] for n in converged},
        chosen_tau={
            n: taus
            for n in converged
            if (taus := [t for r in collected.runs[n] for t in r.chosen_taus])
        },
        seeds=list(seeds),
        config={k: v for k, v in config.items() if k not in ("strategy", "seed", "progress")},
        data=data.name,
        seconds=seconds,
        classes=list(data.distribution.class_names),
        class_counts=data.distribution.counts.tolist(),
        per_class_recall={n: collected.mean_recall(n).tolist() for n in converged},
        trainings=collected.trainings,
        reused=collected.reused,
        grid=collected.grid,
        levels=level_comparisons(
            {n: [r.test for r in collected.runs[n]] for n in converged}, data.distribution
        ),
        prior_shift=prior_shift(
            {n: [r.test for r in collected.runs[n]] for n in converged}, data.distribution
        ),
        **_small_test(collected.runs[converged[0]][0].test, data.distribution),
    )


MIN_TEST_IMAGES = 5
"""A class with fewer test images than this has a recall too coarse to read alone."""


def _small_test(test: TestResult, dist: ClassDistribution) -> dict[str, Any]:
    """The classes with fewer than :data:`MIN_TEST_IMAGES` test images, and their groups."""
    support = np.array([row["support"] for row in test.per_class])
    few = np.flatnonzero(support < MIN_TEST_IMAGES)
    return {
        "small_test": {dist.class_names[i]: int(support[i]) for i in few},
        "small_test_groups": sorted({str(dist.groups[i]) for i in few}),
    }


def chance_level(prior: np.ndarray | None, num_classes: int) -> float:
    """The headline of a model that learned nothing: 1/K for balanced accuracy (``prior``
    None), else the largest share of the target ``prior`` (a model that always names its most
    likely class)."""
    return float(np.max(prior)) if prior is not None else 1.0 / num_classes


def uncertainties(
    comparison: Comparison, collected: Collected, prior: np.ndarray | None
) -> list[Uncertainty]:
    """How sure each strategy's headline number is, and whether it is tied with the best."""
    metric = comparison.headline
    best = comparison.best(metric)
    if best is None:
        return []
    row = comparison.metrics[metric]
    out = []
    for name, stat in row.items():
        confusions = [r.test.confusion_matrix for r in collected.runs[name]]
        diff, low, high = paired_interval(row[best].values, stat.values)
        out.append(
            Uncertainty(
                name,
                stat.mean,
                *seed_interval(stat.values),
                *bootstrap_interval(confusions, prior),
                diff,
                low,
                high,
                name != best and indistinct(row[best].values, stat.values),
            )
        )
    return out


def prior_shift(tests: dict[str, list[TestResult]], dist: ClassDistribution) -> PriorShift:
    """Each strategy's accuracy under the shifted test priors of :data:`SHIFT_EXPONENTS`, from
    its per-class test recall, mean and std over seeds."""
    accuracy = {}
    for name, runs in tests.items():
        curves = np.array([shifted_accuracies(t.known_recall, dist.counts) for t in runs])
        accuracy[name] = [
            Stat(float(col.mean()), float(col.std()), len(col), values=col.tolist())
            for col in curves.T
        ]
    labels = [shift_label(t, dist.imbalance_ratio) for t in SHIFT_EXPONENTS]
    return PriorShift(list(SHIFT_EXPONENTS), labels, accuracy)


def level_comparisons(
    tests: dict[str, list[TestResult]], dist: ClassDistribution
) -> list[LevelComparison]:
    """The strategies' test results (``tests[strategy]``, one per seed) compared at each coarser
    level of ``dist``'s class tree, top first."""
    out = []
    for level in range(1, dist.num_levels):
        summaries = {n: [t.levels[str(level)].summary for t in runs] for n, runs in tests.items()}
        table = compare_runs(summaries, metrics=HEADLINE)
        classes = list(dist.at_level(level).class_names)
        out.append(LevelComparison(level, classes, Comparison.from_dict(table).metrics))
    return out


__all__ = [
    "MIN_TEST_IMAGES",
    "Collected",
    "Comparison",
    "LevelComparison",
    "PriorShift",
    "Stat",
    "Uncertainty",
    "build_comparison",
    "chance_level",
    "level_comparisons",
    "prior_shift",
    "uncertainties",
]
