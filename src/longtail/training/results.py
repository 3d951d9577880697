"""What a run and a comparison produce, as dataclasses with a strict JSON round trip.

``RunResult.to_dict()`` is exactly what a run's ``metrics.json`` holds (and has held), and
``RunResult.from_dict`` reads such a file back, refusing a key it does not know; the same holds
for :class:`Comparison` and ``results.json``. Layers above the loop read attributes of these, never
keys of nested dictionaries. A value that is not a number (a recall without test images) is
``None`` in JSON and nan in the arrays these give.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np

from longtail._io import jsonable, read_json, write_json
from longtail.errors import LongtailError
from longtail.metrics import ClassificationReport

Record = TypeVar("Record")

MAX_RECORD_BYTES = 1 << 28
"""The largest ``metrics.json`` or ``results.json`` read (256 MiB)."""


def load_record(cls: type[Record], path: Path) -> Record:
    """The record of type ``cls`` (its ``from_dict``) in the JSON file at ``path``, read through
    :func:`~longtail._io.read_json`; a file that is not such a record is a
    :class:`~longtail.errors.LongtailError` naming it."""
    record = read_json(path, MAX_RECORD_BYTES, f"the {cls.__name__} file")
    try:
        return cls.from_dict(record)  # type: ignore[attr-defined]
    except LongtailError as err:
        raise LongtailError(f"{path} is not a {cls.__name__} longtail wrote: {err}") from None


def _strict(cls: type, record: Any, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """``record`` as keyword arguments of ``cls``: an unknown or missing key, or a value that
    does not fit its field's type (:func:`fits`), raises :class:`~longtail.errors.LongtailError`."""
    if not isinstance(record, dict):
        raise LongtailError(f"{cls.__name__}: expected an object, got {type(record).__name__}")
    hints = get_type_hints(cls)
    unknown = sorted(set(record) - set(hints))
    missing = [k for k in required if k not in record]
    if unknown or missing:
        raise LongtailError(
            f"{cls.__name__}: unknown keys {unknown} / missing keys {missing}; written by "
            "another version of longtail?"
        )
    for key, value in record.items():
        if not fits(value, hints[key]):
            raise LongtailError(
                f"{cls.__name__}: {key} must be {hints[key]}, got {repr(value)[:60]}"
            )
    return dict(record)


def fits(value: Any, hint: Any) -> bool:
    """Whether the JSON ``value`` fits the field type ``hint``: numbers, text, lists and objects
    checked all the way down; a float may be null (a non-finite number, as written); a record
    (a dataclass) must be an object, which its own ``from_dict`` checks."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, UnionType):
        return any(fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return value is None or isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    if origin is list or hint is list:
        return isinstance(value, list) and (not args or all(fits(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict) and (
            not args or all(fits(k, args[0]) and fits(v, args[1]) for k, v in value.items())
        )
    return isinstance(value, dict) if is_dataclass(hint) else True


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


@dataclass(frozen=True)
class Divergence:
    """A run stopped by a non-finite loss: where (1-based epoch and step) and the message."""

    message: str
    epoch: int | None = None
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "message": self.message}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, record: Any) -> Divergence:
        return cls(**_strict(cls, record, ("message",)))


@dataclass(frozen=True)
class TestResult:
    """Metrics of a run's tested model: ``summary`` (headline numbers), one row per class
    (``per_class``: class, precision, recall, f1, support, group), the confusion matrix and, on
    data with a class tree, ``levels``: the same for each coarser level ("1" = the top), from
    the model's predictions rolled up the tree."""

    __test__ = False  # not a test case, whatever its name

    summary: dict[str, float | None]
    per_class: list[dict[str, Any]]
    confusion: list[list[int]]
    levels: dict[str, TestResult] = field(default_factory=dict)

    @classmethod
    def from_report(cls, report: ClassificationReport) -> TestResult:
        return cls.from_dict(jsonable(report.to_dict()))

    @classmethod
    def from_dict(cls, record: Any) -> TestResult:
        kw = _strict(cls, record, ("summary", "per_class", "confusion"))
        if "levels" in kw:
            if not isinstance(kw["levels"], dict):
                raise LongtailError("TestResult: levels must be an object keyed by level number")
            kw["levels"] = {n: TestResult.from_dict(r) for n, r in kw["levels"].items()}
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        out = {"summary": self.summary, "per_class": self.per_class, "confusion": self.confusion}
        if self.levels:
            out["levels"] = {n: r.to_dict() for n, r in self.levels.items()}
        return out

    def metric(self, name: str) -> float:
        """A headline number (nan when it has no value, e.g. a group without classes)."""
        return _number(self.summary.get(name))

    @property
    def recall(self) -> np.ndarray:
        """Per-class recall [K] (nan for a class without test images)."""
        return np.array([_number(row["recall"]) for row in self.per_class], dtype=np.float64)

    @property
    def confusion_matrix(self) -> np.ndarray:
        return np.array(self.confusion, dtype=np.int64)

    @property
    def known_recall(self) -> np.ndarray:
        """Per-class recall [K], nan for a class without test images (whose recall of 0 is a
        convention, not a measurement)."""
        support = np.array([row["support"] for row in self.per_class])
        return np.where(support > 0, self.recall, np.nan)


@dataclass
class RunResult:
    """A finished run (``test`` set when the data has a test split) or a diverged one
    (``diverged`` set): what its ``metrics.json`` holds."""

    identity: dict[str, Any]
    config: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_run: int | None = None
    selected_epoch: int | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    test: TestResult | None = None
    unreadable_images: int = 0
    diverged: Divergence | None = None

    @property
    def chosen_taus(self) -> list[float]:
        """The tau each second stage chose on validation (for stages that choose one)."""
        return [float(s["tau"]) for s in self.stages if s.get("tau") is not None]

    def to_dict(self) -> dict[str, Any]:
        head = {"identity": self.identity, "config": self.config, "history": self.history}
        if self.diverged is not None:
            return jsonable({**head, "diverged": self.diverged.to_dict()})
        out: dict[str, Any] = {
            **head,
            "epochs_run": self.epochs_run,
            "selected_epoch": self.selected_epoch,
            "stages": self.stages,
        }
        if self.test is not None:
            out["test"] = self.test.to_dict()
        out["unreadable_images"] = self.unreadable_images
        return jsonable(out)

    @classmethod
    def from_dict(cls, record: Any) -> RunResult:
        kw = _strict(cls, record, ("identity", "config"))
        if kw.get("test") is not None:
            kw["test"] = TestResult.from_dict(kw["test"])
        if kw.get("diverged") is not None:
            kw["diverged"] = Divergence.from_dict(kw["diverged"])
        return cls(**kw)

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> RunResult:
        return load_record(cls, path)


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
        kw = _strict(cls, record, ("mean", "std", "n"))
        values = [_number(v) for v in kw.pop("values", [])]
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
        kw = _strict(cls, record, ("level", "classes", "metrics"))
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
        kw = _strict(cls, record, ("exponents", "labels", "accuracy"))
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
        kw = _strict(cls, record, tuple(f.name for f in fields(cls)))
        return cls(**{k: v if k in ("strategy", "tied") else _number(v) for k, v in kw.items()})


@dataclass
class Comparison:
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
        )

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
        kw = _strict(cls, record, ("baseline", "strategies", "metrics"))
        kw["metrics"] = _stats(kw["metrics"])
        kw["levels"] = [LevelComparison.from_dict(level) for level in kw.get("levels", [])]
        if kw.get("prior_shift") is not None:
            kw["prior_shift"] = PriorShift.from_dict(kw["prior_shift"])
        kw["uncertainty"] = [Uncertainty.from_dict(u) for u in kw.get("uncertainty", [])]
        return cls(**kw)

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> Comparison:
        return load_record(cls, path)


__all__ = [
    "Comparison",
    "Divergence",
    "LevelComparison",
    "PriorShift",
    "RunResult",
    "Stat",
    "TestResult",
    "Uncertainty",
]
