"""Input checks shared by every public function: clear ``ValueError`` messages at the boundary."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from longtail.errors import LongtailError, shorten

_PART = re.compile(r"^([a-z_][a-z0-9_]*)(?:\[(.*)\])?$")


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_named(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME[key=value,...]`` as (name, parameters): numbers and true/false are
    read as such, anything else stays text; a key given twice is refused."""
    m = _PART.match(text.strip())
    if not m:
        raise LongtailError(f"cannot read {text!r}: expected NAME or NAME[key=value,...]")
    params: dict[str, Any] = {}
    if m.group(2):
        for item in m.group(2).split(","):
            if "=" not in item:
                raise LongtailError(f"parameter {item!r} in {text!r} is not key=value")
            k, v = (part.strip() for part in item.split("=", 1))
            if k in params:
                raise LongtailError(f"parameter {k!r} is given twice in {text!r}; give it once")
            params[k] = _value(v)
    return m.group(1), params


def as_labels(labels: Any, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Return ``labels`` (numpy, torch, list, or a dataset with ``targets``/``labels``) as an integer
    numpy array (its integer dtype is kept, so narrow labels stay narrow at 10^8 samples).

    Raises ``ValueError`` for empty, non-integer, negative or out-of-range labels.
    """
    labels = _unwrap_dataset(labels)
    if hasattr(labels, "detach"):  # torch.Tensor without importing torch here
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise LongtailError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise LongtailError(f"{name} is empty: at least one labelled sample is needed")
    if not np.issubdtype(arr.dtype, np.integer):
        if (
            np.issubdtype(arr.dtype, np.floating)
            and np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
        ):
            arr = arr.astype(np.int64)
        else:
            raise LongtailError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    if arr.dtype == np.uint64:
        arr = arr.astype(np.int64)
    low = int(arr.min())
    if low < 0:
        raise LongtailError(f"{name} contains a negative class index ({low}); classes are 0..K-1")
    if num_classes is not None:
        high = int(arr.max())
        if high >= num_classes:
            raise LongtailError(
                f"{name} contains class index {high}, out of range for num_classes={num_classes}; "
                f"pass num_classes > {high} or fix the labels"
            )
    return arr


def _unwrap_dataset(obj: Any) -> Any:
    for attr in ("targets", "labels"):
        if (
            not isinstance(obj, (np.ndarray, list, tuple))
            and hasattr(obj, attr)
            and not callable(getattr(obj, attr))
        ):
            return getattr(obj, attr)
    return obj


def as_counts(counts: Any, name: str = "counts") -> np.ndarray:
    """Return per-class counts as int64, rejecting negative, fractional or empty input."""
    if hasattr(counts, "detach"):
        counts = counts.detach().cpu().numpy()
    arr = np.asarray(counts)
    if arr.ndim != 1 or arr.size == 0:
        raise LongtailError(
            f"{name} must be a non-empty 1-D sequence of per-class counts, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr)).tolist()
        raise LongtailError(f"{name} contains nan or inf (classes {shorten(bad)})")
    if np.any(arr < 0):
        bad = np.flatnonzero(arr < 0).tolist()
        raise LongtailError(f"{name} must be >= 0; classes {shorten(bad)} are negative")
    if np.any(arr != np.round(arr)):
        bad = np.flatnonzero(arr != np.round(arr)).tolist()
        raise LongtailError(f"{name} must be whole numbers of samples (classes {shorten(bad)})")
    return arr.astype(np.int64)


def check_names(names: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
    """Class names, defaulting to ``"0" .. "K-1"``; their number must match ``num_classes``."""
    if names is None:
        return tuple(str(i) for i in range(num_classes))
    names = tuple(str(n) for n in names)
    if len(names) != num_classes:
        raise LongtailError(f"got {len(names)} class names for {num_classes} classes")
    if len(set(names)) != len(names):
        raise LongtailError("class names must be unique")
    return names


def check_probability_vector(weights: Any, name: str = "weights") -> np.ndarray:
    """Non-negative finite weights with a positive sum, as float64."""
    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().numpy()
    arr = np.asarray(weights, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise LongtailError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise LongtailError(f"{name} contains nan or inf")
    if np.any(arr < 0):
        raise LongtailError(f"{name} must be >= 0; found {arr.min()}")
    if arr.sum() <= 0:
        raise LongtailError(f"{name} are all zero: at least one must be positive")
    return arr


def check_int(value: Any, name: str, low: int = 0, high: int | None = None) -> int:
    """``value`` as an int when it is an integer (not a bool) in [low, high], else ``ValueError``
    naming ``name`` and the range."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < low or (high is not None and value > high):
        most = "" if high is None else f" (at most {high:,})"
        raise LongtailError(f"{name} must be an integer >= {low}{most}, got {repr(value)[:40]}")
    return int(value)


FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest number torch stores in float32 (about 3.4e38): settings end up there."""


def check_number(value: Any, name: str, positive: bool = False) -> float:
    """``value`` as a float when it is a finite number >= 0 (> 0 with ``positive``) and at most
    :data:`FLOAT32_MAX` (larger ones become infinite in torch), else ``ValueError`` naming
    ``name``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    try:
        finite = ok and abs(float(value)) <= FLOAT32_MAX
    except OverflowError:  # an integer beyond any float
        finite = False
    if not finite or value < 0 or (positive and value == 0):
        raise LongtailError(
            f"{name} must be a finite number {'> 0' if positive else '>= 0'} (at most "
            f"{FLOAT32_MAX:.3g}, float32's largest), got {repr(value)[:40]}"
        )
    return float(value)


__all__ = [
    "FLOAT32_MAX",
    "as_counts",
    "check_int",
    "check_number",
    "as_labels",
    "check_names",
    "check_probability_vector",
    "parse_named",
]
