"""How sure a comparison is: intervals over seeds, over test images, and for paired differences.

- Over seeds: the Student-t interval mean +- t_{n-1} s / sqrt(n), s the sample std (ddof = 1).
- Over test images: a parametric bootstrap of the test split, class by class: a class with n_c
  test images and recall r_c gets c* ~ Binomial(n_c, r_c) right in each draw (exactly what
  re-sampling its n_c images with replacement does to its recall), and the metric (balanced
  accuracy, or the accuracy under a prior) is recomputed; a strategy's draw averages its seeds'.
  The interval is the draws' 2.5 and 97.5 percentiles (Efron & Tibshirani, "An Introduction to
  the Bootstrap", 1993).
- Paired: two strategies trained with the same seeds are compared seed by seed; the t interval
  of the differences says whether the data can tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from longtail.errors import LongtailError

# two-sided 95% quantiles t_{0.975, df} of Student's t for df = 1..30 (beyond: the normal 1.960)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """t_{0.975} with ``df`` degrees of freedom (>= 1)."""
    if df < 1:
        raise LongtailError(f"a t interval needs at least 2 values, got df = {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.960


def seed_interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95% t interval of the mean of ``values`` (nan, nan with fewer than two)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size < 2:
        return float("nan"), float("nan")
    half = t_quantile(v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


def bootstrap_interval(
    confusions: Sequence[Any],
    prior: np.ndarray | None = None,
    draws: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """The 95% bootstrap interval over test images of the mean over seeds of balanced accuracy
    (or, given ``prior``, the accuracy under it), from each seed's confusion matrix [K, K]."""
    rng = np.random.default_rng(seed)
    means = np.zeros(draws)
    for cm in confusions:
        cm = np.asarray(cm, dtype=np.int64)
        support = cm.sum(axis=1)
        present = support > 0
        recall = np.divide(np.diag(cm), support, out=np.zeros(len(cm)), where=present)
        right = rng.binomial(support[present], recall[present], size=(draws, int(present.sum())))
        drawn = right / support[present]
        if prior is None:
            means += drawn.mean(axis=1)
        else:
            q = np.asarray(prior, dtype=np.float64)[present]
            means += drawn @ q / q.sum()
    means /= len(confusions)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_interval(first: Sequence[float], second: Sequence[float]) -> tuple[float, float, float]:
    """(mean difference, low, high): the 95% t interval of ``first - second`` seed by seed."""
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape:
        raise LongtailError(f"paired values differ in number: {a.size} and {b.size}")
    d = a - b
    low, high = seed_interval(d.tolist())
    return float(np.nanmean(d)) if d.size else float("nan"), low, high


MIN_PAIRED_SEEDS = 3
"""The fewest seeds whose paired interval can declare a tie (with 2, t_1 = 12.7 holds 0 for
almost any difference); fewer seeds decide by the overlap of mean +- std alone."""


def seeds_overlap(first: Sequence[float], second: Sequence[float]) -> bool:
    """Whether the two sets of seed values overlap as mean +- std (ddof = 0)."""
    a = np.asarray([x for x in first if np.isfinite(x)], dtype=np.float64)
    b = np.asarray([x for x in second if np.isfinite(x)], dtype=np.float64)
    return bool(a.size and b.size and abs(a.mean() - b.mean()) <= a.std() + b.std())


def indistinct(first: Sequence[float], second: Sequence[float]) -> bool:
    """Whether the seeds cannot tell two strategies apart: they overlap
    (:func:`seeds_overlap`) or, with :data:`MIN_PAIRED_SEEDS` paired seeds or more, the 95%
    interval of the seed-by-seed difference holds 0."""
    if seeds_overlap(first, second):
        return True
    if len(first) != len(second) or len(first) < MIN_PAIRED_SEEDS:
        return False
    _, low, high = paired_interval(first, second)
    return bool(low <= 0 <= high)


__all__ = [
    "MIN_PAIRED_SEEDS",
    "bootstrap_interval",
    "indistinct",
    "paired_interval",
    "seed_interval",
    "seeds_overlap",
    "t_quantile",
]
