"""Long-tailed subsets of balanced data sets (CIFAR-LT / ImageNet-LT style benchmarks).

Profiles (K classes, ordered by ``class_order``, i = 0..K-1):

- ``exponential`` (Cui et al., CVPR 2019; Cao et al., NeurIPS 2019): n_i = floor(n_max * IR^(-i/(K-1)));
- ``step`` (Buda et al., 2018; Cao et al., NeurIPS 2019): the first ``(1 - minority_fraction) * K``
  classes keep n_max, the others floor(n_max / IR).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from longtail._checks import as_labels
from longtail.data.splits import random_rank_within_class
from longtail.errors import LongtailError, shorten

Profile = Literal["exponential", "step"]


def long_tailed_counts(
    num_classes: int,
    n_max: int,
    imbalance_ratio: float,
    profile: Profile = "exponential",
    minority_fraction: float = 0.5,
) -> np.ndarray:
    """Target count of each class position i = 0..K-1 (largest first)."""
    if num_classes < 1:
        raise LongtailError(f"num_classes must be >= 1, got {num_classes}")
    if n_max < 1:
        raise LongtailError(f"n_max must be >= 1, got {n_max}")
    if not imbalance_ratio >= 1:
        raise LongtailError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    if profile == "exponential":
        i = np.arange(num_classes)
        exponent = -i / max(num_classes - 1, 1)
        counts = np.floor(n_max * np.power(float(imbalance_ratio), exponent) + 1e-9)
    elif profile == "step":
        if not 0 <= minority_fraction <= 1:
            raise LongtailError(f"minority_fraction must lie in [0, 1], got {minority_fraction}")
        n_major = num_classes - int(round(minority_fraction * num_classes))
        counts = np.full(num_classes, float(n_max))
        counts[n_major:] = np.floor(n_max / imbalance_ratio + 1e-9)
    else:
        raise LongtailError(f"profile must be 'exponential' or 'step', got {profile!r}")
    return np.maximum(counts, 1).astype(np.int64)


def make_long_tailed(
    labels: Any,
    imbalance_ratio: float,
    *,
    n_max: int | None = None,
    profile: Profile = "exponential",
    class_order: Sequence[int] | None = None,
    minority_fraction: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Indices (sorted, int64) of a seeded long-tailed subset of a labelled data set.

    The class at position i of ``class_order`` (default 0..K-1) keeps
    :func:`long_tailed_counts`\\ [i] images, drawn uniformly without replacement. ``n_max`` defaults
    to the size of the smallest class, so every class can give what it is asked for.

    Example:
        >>> y = np.repeat(np.arange(3), 100)
        >>> np.bincount(y[make_long_tailed(y, 10, seed=0)]).tolist()
        [100, 31, 10]
    """
    y = as_labels(labels)
    k = int(y.max()) + 1
    available = np.bincount(y, minlength=k)
    order = np.arange(k) if class_order is None else np.asarray(class_order, dtype=np.int64)
    if sorted(order.tolist()) != list(range(k)):
        raise LongtailError(f"class_order must be a permutation of 0..{k - 1}, got {list(order)}")
    if n_max is None:
        n_max = int(available.min())
    target = np.zeros(k, dtype=np.int64)
    target[order] = long_tailed_counts(k, n_max, imbalance_ratio, profile, minority_fraction)
    short = np.flatnonzero(target > available)
    if short.size:
        raise LongtailError(
            f"classes {shorten(short.tolist())} have {shorten(available[short].tolist())} images "
            f"but the profile asks for {shorten(target[short].tolist())}; lower n_max or "
            "reorder the classes"
        )
    order, rank = random_rank_within_class(y, seed)
    return np.sort(order[rank < np.repeat(target, available)])


__all__ = [
    "long_tailed_counts",
    "make_long_tailed",
    "Profile",
]
