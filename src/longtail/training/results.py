"""What a run and a comparison produce, as dataclasses with a strict JSON round trip.

``RunResult.to_dict()`` is exactly what a run's ``metrics.json`` holds (and has held), and
``RunResult.from_dict`` reads such a file back, refusing a key it does not know; the same holds
for :class:`~longtail.experiments.comparison.Comparison` and ``results.json``, which are made
beside the statistics that fill them. Layers above the loop read attributes of these, never
keys of nested dictionaries. A value that is not a number (a recall without test images) is
``None`` in JSON and nan in the arrays these give.
"""

from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass
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


class JsonRecord:
    """``save(path)`` / ``load(path)`` for a record with ``to_dict`` / ``from_dict``: strict
    JSON written atomically, read through :func:`load_record`."""

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())  # type: ignore[attr-defined]

    @classmethod
    def load(cls, path: Path) -> Any:
        return load_record(cls, path)


def strict_fields(cls: type, record: Any, required: tuple[str, ...] = ()) -> dict[str, Any]:
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


def number_or_nan(value: float | None) -> float:
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
        return cls(**strict_fields(cls, record, ("message",)))


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
        kw = strict_fields(cls, record, ("summary", "per_class", "confusion"))
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
        return number_or_nan(self.summary.get(name))

    @property
    def recall(self) -> np.ndarray:
        """Per-class recall [K] (nan for a class without test images)."""
        return np.array([number_or_nan(row["recall"]) for row in self.per_class], dtype=np.float64)

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
class RunResult(JsonRecord):
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
        kw = strict_fields(cls, record, ("identity", "config"))
        if kw.get("test") is not None:
            kw["test"] = TestResult.from_dict(kw["test"])
        if kw.get("diverged") is not None:
            kw["diverged"] = Divergence.from_dict(kw["diverged"])
        return cls(**kw)


__all__ = [
    "Divergence",
    "JsonRecord",
    "MAX_RECORD_BYTES",
    "RunResult",
    "TestResult",
    "fits",
    "load_record",
    "number_or_nan",
    "strict_fields",
]
