"""The class tree: how far apart two classes are, and how bad a model's mistakes are.

The tree is given as :meth:`ClassDistribution.tree_paths` gives it: for each level from the top,
each class's ancestor there (a class with fewer ancestors keys itself below them). The height of
the lowest common ancestor (LCA) of classes i and j counts the levels above the leaves at which
their paths still differ: 0 for i = j, 1 for two children of one parent, L for classes that share
nothing below the root of an L-level tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def lca_heights(tree: Sequence[Sequence[Any]]) -> np.ndarray:
    """[K, K] integer heights of the lowest common ancestor of every pair of classes."""
    levels = len(tree)
    k = len(tree[0])
    shared = np.zeros((k, k), dtype=np.int64)  # leading levels at which the paths agree
    agree = np.ones((k, k), dtype=bool)
    for keys in tree:
        ids = {key: n for n, key in enumerate(dict.fromkeys(keys))}
        node = np.array([ids[key] for key in keys])
        agree &= node[:, None] == node[None, :]
        shared += agree
    return levels - shared


def mistake_severity(confusion: np.ndarray, tree: Sequence[Sequence[Any]]) -> dict[str, float]:
    """How bad the mistakes in ``confusion`` ([K, K], rows true, columns predicted) are on
    ``tree`` (Bertinetto et al., "Making Better Mistakes", CVPR 2020):

    - ``mistake_severity``: the mean LCA height of the mistakes,
      sum_{i != j} C_ij h(i, j) / sum_{i != j} C_ij;
    - ``mistakes_within_parent``: the share of mistakes whose predicted class has the true
      class's parent (LCA height 1).

    Both are nan when there is no mistake."""
    cm = np.asarray(confusion, dtype=np.float64)
    heights = lca_heights(tree)
    off = ~np.eye(cm.shape[0], dtype=bool)
    mistakes = cm[off].sum()
    if mistakes == 0:
        return {"mistake_severity": float("nan"), "mistakes_within_parent": float("nan")}
    return {
        "mistake_severity": float((cm * heights)[off].sum() / mistakes),
        "mistakes_within_parent": float(cm[off & (heights == 1)].sum() / mistakes),
    }


__all__ = ["lca_heights", "mistake_severity"]
