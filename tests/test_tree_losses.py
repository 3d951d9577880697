"""Hierarchical cross-entropy and tree soft labels against their written-out formulas."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.losses import HierarchicalCrossEntropyLoss, SoftLabelLoss
from longtail.strategies.registry import BuildContext, component

# a1, a2 under A; b1 alone (its own node at the top)
TREE = [[("A",), ("A",), ("b1",)], [("A", "a1"), ("A", "a2"), ("b1",)]]
LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.3, 0.2, -2.0], [-1.0, 1.0, 3.0]])
TARGET = torch.tensor([0, 1, 2])


def _p(row: torch.Tensor) -> np.ndarray:
    z = row.double().numpy()
    e = np.exp(z - z.max())
    return e / e.sum()


def test_hxe_equals_the_weighted_sum_of_conditional_log_probabilities():
    alpha = 0.4
    got = HierarchicalCrossEntropyLoss(TREE, alpha=alpha, reduction="none")(LOGITS, TARGET)
    lam1, lam2 = math.exp(-alpha), 1.0  # levels 1 (height 1) and 2 (the leaves, height 0)
    expected = []
    for row, t in zip(LOGITS, TARGET.tolist(), strict=True):
        p = _p(row)
        if t in (0, 1):  # under A: -lam1 log p(A) - lam2 log(p(leaf) / p(A))
            pa = p[0] + p[1]
            expected.append(-lam1 * math.log(pa) - lam2 * math.log(p[t] / pa))
        else:  # b1 is its own node: the step below it is certain and adds nothing
            expected.append(-lam1 * math.log(p[2]))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_hxe_is_cross_entropy_at_alpha_zero_and_on_a_flat_tree():
    ce = F.cross_entropy(LOGITS, TARGET)
    assert torch.allclose(HierarchicalCrossEntropyLoss(TREE, alpha=0.0)(LOGITS, TARGET), ce)
    flat = [[0, 1, 2]]
    assert torch.allclose(HierarchicalCrossEntropyLoss(flat, alpha=0.7)(LOGITS, TARGET), ce)


def test_soft_labels_equal_the_written_out_targets():
    beta = 3.0
    got = SoftLabelLoss(TREE, beta=beta, reduction="none")(LOGITS, TARGET)
    # LCA heights: a1-a2 1, a-b1 2; h_max = 2
    h = np.array([[0, 1, 2], [1, 0, 2], [2, 2, 0]], dtype=np.float64)
    q = np.exp(-beta * h / 2)
    q /= q.sum(1, keepdims=True)
    expected = [-(q[t] * np.log(_p(row))).sum() for row, t in zip(LOGITS, TARGET.tolist())]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # a very hard beta is one-hot cross-entropy
    hard = SoftLabelLoss(TREE, beta=200.0)(LOGITS, TARGET)
    assert torch.allclose(hard, F.cross_entropy(LOGITS, TARGET), atol=1e-5)


@pytest.mark.parametrize("make", [HierarchicalCrossEntropyLoss, SoftLabelLoss])
def test_tree_losses_weight_ignore_and_stay_finite(make):
    weight = torch.tensor([1.0, 3.0, 0.5])
    per = make(TREE, reduction="none")(LOGITS, TARGET)
    mean = make(TREE, weight=weight)(LOGITS, TARGET)
    assert torch.allclose(mean, (per * weight[TARGET]).sum() / weight[TARGET].sum())
    ignored = make(TREE, reduction="sum")(LOGITS, torch.tensor([0, -100, 2]))
    assert torch.allclose(ignored, per[[0, 2]].sum())
    logits = (LOGITS * 1e4).requires_grad_()
    make(TREE)(logits, TARGET).backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        make(TREE)(LOGITS, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="shape"):
        make(TREE)(LOGITS[:, :2], TARGET)


def test_the_registry_builds_them_on_the_data_tree():
    ctx = BuildContext(np.array([0, 0, 1, 2]), np.array([2, 1, 1]), 0, 2, 4, TREE)
    hxe = component("loss", "hxe").factory(ctx, alpha=0.4)
    assert isinstance(hxe, HierarchicalCrossEntropyLoss) and hxe.alpha == 0.4
    soft = component("loss", "soft_labels").factory(ctx, beta=5.0)
    assert soft.soft_labels.shape == (3, 3)
    with pytest.raises(ValueError, match="alpha must be"):
        HierarchicalCrossEntropyLoss(TREE, alpha=-1)
    with pytest.raises(ValueError, match="beta must be"):
        SoftLabelLoss(TREE, beta=0)
