"""Stratified splits that keep every class in every split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from longtail._checks import as_labels
from longtail._text import terminal_text
from longtail.errors import LongtailError, shorten


def random_rank_within_class(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random order of the samples grouped by class, and each position's rank within its
    class: taking ``order[rank < n_j]`` draws n_j images of class j uniformly without replacement."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(labels.size), labels))
    counts = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, np.arange(labels.size) - np.repeat(starts, counts)


def stratified_split(
    labels: Any,
    fractions: Sequence[float],
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """Split sample indices into ``len(fractions) + 1`` parts: part i (i < len(fractions)) holds
    max(1, round(f_i * n_j)) images of every class j, the last part the rest (at least one per class).

    Raises ``ValueError`` naming any class too small to appear in every part.
    """
    y = as_labels(labels)
    if any(not 0 < f < 1 for f in fractions) or sum(fractions) >= 1:
        raise LongtailError(
            f"fractions must each lie in (0, 1) and sum to < 1, got {list(fractions)}"
        )
    counts = np.bincount(y)
    parts = len(fractions) + 1
    present = counts > 0
    small = np.flatnonzero(present & (counts < parts))
    if small.size:
        names = [class_names[i] if class_names else str(i) for i in small]
        raise LongtailError(
            f"{len(names):,} classes ({terminal_text(shorten(names))}) have fewer than {parts} images, so they cannot appear in every split; "
            "add images or merge/remove these classes"
        )
    sizes = np.stack([np.maximum(1, np.round(f * counts)).astype(np.int64) for f in fractions])
    sizes[:, ~present] = 0
    order, rank = random_rank_within_class(y, seed)
    bounds = np.cumsum(sizes, axis=0)  # [parts-1, K]
    part_of = (rank[None, :] >= np.repeat(bounds, counts, axis=1)).sum(0)
    return [np.sort(order[part_of == p]) for p in range(parts)]


__all__ = [
    "random_rank_within_class",
    "stratified_split",
]
