"""The class tree: how far apart two classes are, and how bad a model's mistakes are.

The tree is given as :meth:`ClassDistribution.tree_paths` gives it: for each level from the top,
each class's ancestor there (a class with fewer ancestors keys itself below them). The height of
the lowest common ancestor (LCA) of classes i and j counts the levels above the leaves at which
their paths still differ: 0 for i = j, 1 for two children of one parent, L for classes that share
nothing below the root of an L-level tree.

A model trained on the leaves is judged at a coarser level by rolling its predictions up: a
parent's probability is the sum of its children's (:func:`roll_up_probabilities`), and a
prediction given as a class is its ancestor's (:func:`roll_up_confusion` does this for a whole
confusion matrix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def ancestors(keys: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Each class's node at one level of the tree (``keys`` = ``tree[level - 1]``) as an index,
    nodes numbered in order of first appearance (the order of
    :meth:`ClassDistribution.at_level`), and the number of nodes."""
    ids: dict[Any, int] = {}
    node = np.array([ids.setdefault(key, len(ids)) for key in keys], dtype=np.int64)
    return node, len(ids)


def roll_up_confusion(confusion: np.ndarray, ancestor: np.ndarray, nodes: int) -> np.ndarray:
    """The confusion matrix at a coarser level: C'[a, b] = sum of C[i, j] over the classes i
    under node a and j under node b, i.e. A^T C A with A[i, a] = 1 when class i lies under a.
    This is the matrix of predictions rolled up class by class (the ancestor of the predicted
    class)."""
    one_hot = np.zeros((len(ancestor), nodes), dtype=np.int64)
    one_hot[np.arange(len(ancestor)), ancestor] = 1
    return one_hot.T @ np.asarray(confusion, dtype=np.int64) @ one_hot


def roll_up_probabilities(probs: Tensor, ancestor: Tensor, nodes: int) -> Tensor:
    """[B, nodes] probabilities of the nodes of a coarser level from leaf probabilities [B, K]:
    p(a) = sum of p(j) over the classes j under node a."""
    out = torch.zeros(probs.shape[0], nodes, dtype=probs.dtype, device=probs.device)
    return out.index_add_(1, ancestor.to(probs.device), probs)


def lca_heights(tree: Sequence[Sequence[Any]]) -> np.ndarray:
    """[K, K] integer heights of the lowest common ancestor of every pair of classes."""
    levels = len(tree)
    k = len(tree[0])
    shared = np.zeros((k, k), dtype=np.int64)  # leading levels at which the paths agree
    agree = np.ones((k, k), dtype=bool)
    for keys in tree:
        node = ancestors(keys)[0]
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


__all__ = [
    "ancestors",
    "lca_heights",
    "mistake_severity",
    "roll_up_confusion",
    "roll_up_probabilities",
]
