"""The imbalance-aware losses (flat and over the class tree) against their written-out formulas."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.errors import LongtailError
from longtail.losses import (
    REDUCTIONS,
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    CrossEntropyLoss,
    FocalLoss,
    HierarchicalCrossEntropyLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    SoftLabelLoss,
    logit_adjust,
    tau_normalize,
)
from longtail.strategies.registry import REGISTRY, BuildContext, component, make_loss

torch.manual_seed(0)

TREE = [[("A",), ("A",), ("b1",)], [("A", "a1"), ("A", "a2"), ("b1",)]]


TREE_LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.3, 0.2, -2.0], [-1.0, 1.0, 3.0]])


TREE_TARGET = torch.tensor([0, 1, 2])


def _p(row: torch.Tensor) -> np.ndarray:
    z = row.double().numpy()
    e = np.exp(z - z.max())
    return e / e.sum()


LOGITS = torch.randn(16, 5) * 3
TARGET = torch.randint(0, 5, (16,))
COUNTS = [500, 200, 50, 20, 5]


def test_focal_gamma0_is_cross_entropy():
    torch.testing.assert_close(FocalLoss(gamma=0)(LOGITS, TARGET), F.cross_entropy(LOGITS, TARGET))
    alpha = torch.tensor([0.1, 0.2, 1.0, 2.0, 5.0])
    torch.testing.assert_close(
        FocalLoss(alpha, gamma=0)(LOGITS, TARGET), F.cross_entropy(LOGITS, TARGET, weight=alpha)
    )


def test_focal_formula_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    target = torch.tensor([0, 1])
    alpha = torch.tensor([0.25, 2.0, 1.0])
    p = torch.softmax(logits, 1)[torch.arange(2), target]
    fl = -alpha[target] * (1 - p) ** 2 * torch.log(p)
    got = FocalLoss(alpha, gamma=2, reduction="none")(logits, target)
    torch.testing.assert_close(got, fl)
    torch.testing.assert_close(FocalLoss(alpha, 2, reduction="sum")(logits, target), fl.sum())
    torch.testing.assert_close(FocalLoss(alpha, 2)(logits, target), fl.sum() / alpha[target].sum())


def test_ignore_index():
    target = TARGET.clone()
    target[:4] = -100
    torch.testing.assert_close(FocalLoss(gamma=0)(LOGITS, target), F.cross_entropy(LOGITS, target))
    assert FocalLoss(gamma=2, reduction="none")(LOGITS, target)[:4].abs().sum() == 0


def test_class_balanced_weights_and_bases():
    beta = 0.99
    n = np.array(COUNTS, dtype=float)
    w = (1 - beta) / (1 - beta**n)
    w = torch.tensor(w * 5 / w.sum(), dtype=torch.float32)
    cb_ce = ClassBalancedLoss(COUNTS, beta=beta, base="ce")
    torch.testing.assert_close(cb_ce.weight, w)
    torch.testing.assert_close(cb_ce(LOGITS, TARGET), F.cross_entropy(LOGITS, TARGET, weight=w))
    cb_focal = ClassBalancedLoss(COUNTS, beta=beta, base="focal", gamma=1.5)
    torch.testing.assert_close(cb_focal(LOGITS, TARGET), FocalLoss(w, 1.5)(LOGITS, TARGET))
    sig = ClassBalancedLoss(COUNTS, beta=beta, base="sigmoid", gamma=0, reduction="none")
    bce = F.binary_cross_entropy_with_logits(
        LOGITS, F.one_hot(TARGET, 5).float(), reduction="none"
    ).sum(1)
    torch.testing.assert_close(sig(LOGITS, TARGET), w[TARGET] * bce)


def test_ldam_margins_and_drw():
    loss = LDAMLoss(COUNTS, max_margin=0.5, s=10.0, drw_epoch=3, drw_beta=0.99)
    m = 1 / np.array(COUNTS, dtype=float) ** 0.25
    m = m * 0.5 / m.max()
    np.testing.assert_allclose(loss.margins.numpy(), m, rtol=1e-6)
    assert loss.margins.max().item() == pytest.approx(0.5) and loss.margins.argmax().item() == 4
    shifted = LOGITS - F.one_hot(TARGET, 5) * torch.tensor(m, dtype=torch.float32)[TARGET][:, None]
    loss.set_epoch(2)
    torch.testing.assert_close(loss(LOGITS, TARGET), F.cross_entropy(10 * shifted, TARGET))
    loss.set_epoch(3)
    w = ClassBalancedLoss(COUNTS, beta=0.99, base="ce").weight
    torch.testing.assert_close(
        loss(LOGITS, TARGET), F.cross_entropy(10 * shifted, TARGET, weight=w)
    )


def test_balanced_softmax_and_logit_adjustment():
    prior = torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS)
    expected = F.cross_entropy(LOGITS + prior.log(), TARGET)
    torch.testing.assert_close(BalancedSoftmaxLoss(COUNTS)(LOGITS, TARGET), expected)
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS, tau=1.0)(LOGITS, TARGET), expected)
    half = F.cross_entropy(LOGITS + 0.5 * prior.log(), TARGET)
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS, tau=0.5)(LOGITS, TARGET), half)
    # a uniform prior changes nothing
    torch.testing.assert_close(
        BalancedSoftmaxLoss([7] * 5)(LOGITS, TARGET), F.cross_entropy(LOGITS, TARGET)
    )
    torch.testing.assert_close(logit_adjust(LOGITS, COUNTS, 1.0), LOGITS - prior.log())


def test_tau_normalize():
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    torch.testing.assert_close(tau_normalize(w, 1.0), torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    torch.testing.assert_close(tau_normalize(w, 0.0), w)


ALL = {
    name: make_loss(name, COUNTS, total_epochs=5)
    for name in (
        "ce",
        "weighted_ce",
        "focal",
        "cb_focal",
        "cb_ce",
        "ldam_drw",
        "balanced_softmax",
        "logit_adjusted",
    )
}


@pytest.mark.parametrize("name", ALL)
def test_gradients_finite_at_extreme_logits(name):
    loss = ALL[name]
    logits = torch.tensor(
        [[1e4, -1e4, 0.0, 5.0, -5.0], [-1e4, 1e4, 1e4, 0, 0], [0.0, 0, 0, 0, 0]], requires_grad=True
    )
    target = torch.tensor([0, 0, 4])
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    sigmoid = ClassBalancedLoss(COUNTS, base="sigmoid", gamma=2)
    logits.grad = None
    sigmoid(logits, target).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ALL)
def test_autocast_bf16(name):
    loss = ALL[name]
    layer = torch.nn.Linear(8, 5)
    x = torch.randn(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        value = loss(logits, TARGET[:6])
    assert value.dtype == torch.float32 and torch.isfinite(value)
    ref = loss(logits.float(), TARGET[:6])
    torch.testing.assert_close(value, ref)


def test_loss_errors():
    with pytest.raises(ValueError, match="zero training samples"):
        BalancedSoftmaxLoss([3, 0, 2])
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="targets must lie"):
        CrossEntropyLoss()(LOGITS, torch.full((16,), 7))
    with pytest.raises(ValueError, match="reduction"):
        FocalLoss(reduction="avg")(LOGITS, TARGET)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("dice", COUNTS)
    with pytest.raises(ValueError, match="base"):
        ClassBalancedLoss(COUNTS, base="softmax")


def test_label_smoothing_matches_torch():
    w = torch.tensor([0.5, 1.0, 2.0, 1.0, 3.0])
    target = TARGET.clone()
    target[0] = -100
    for reduction in ("mean", "sum", "none"):
        for weight in (None, w):
            got = CrossEntropyLoss(weight, reduction, label_smoothing=0.1)(LOGITS, target)
            ref = F.cross_entropy(
                LOGITS, target, weight=weight, reduction=reduction, label_smoothing=0.1
            )
            torch.testing.assert_close(got, ref)
    # by hand: (1 - eps) CE + eps * mean_j(-log p_j)
    logits, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    logp = torch.log_softmax(logits, 1)
    expected = -(0.8 * logp[0, 0] + 0.2 * logp[0].mean())
    torch.testing.assert_close(
        make_loss("ce", COUNTS[:3], label_smoothing=0.2)(logits, y), expected
    )
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.0)


def test_constructor_defaults_match_their_papers():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -0.4]])
    y = torch.tensor([0, 2])
    counts = np.array([1000.0, 100.0, 10.0])
    p = logits.softmax(1)[torch.arange(2), y]
    torch.testing.assert_close(
        FocalLoss()(logits, y), (-((1 - p) ** 2) * p.log()).mean()
    )  # gamma 2
    beta = 0.9999
    w = (1 - beta) / (1 - beta**counts)
    w = torch.tensor(w * 3 / w.sum(), dtype=torch.float32)
    torch.testing.assert_close(
        ClassBalancedLoss(counts)(logits, y),
        (-(w[y]) * (1 - p) ** 2 * p.log()).sum() / w[y].sum(),  # beta 0.9999, focal, gamma 2
    )
    prior = torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32)
    torch.testing.assert_close(
        LogitAdjustedLoss(counts)(logits, y), F.cross_entropy(logits + prior, y)
    )  # tau 1
    ldam = LDAMLoss(counts)  # s 30, max margin 0.5, no DRW
    m = 1 / counts**0.25
    m = torch.tensor(m * 0.5 / m.max(), dtype=torch.float32)
    torch.testing.assert_close(
        ldam(logits, y), F.cross_entropy(30 * (logits - F.one_hot(y, 3) * m[y][:, None]), y)
    )
    y_ignored = torch.tensor([0, -100])  # ignore_index -100 by default
    for loss in (FocalLoss(), ClassBalancedLoss(counts), LogitAdjustedLoss(counts), ldam):
        torch.testing.assert_close(loss(logits, y_ignored), loss(logits[:1], y_ignored[:1]))


def test_sigmoid_class_balanced_focal_by_hand():
    counts = np.array([100.0, 10.0, 1.0])
    logits = torch.tensor([[1.5, -0.5, 0.2], [0.3, 2.0, -1.0]])
    y = torch.tensor([0, 2])
    beta = 0.99
    w = (1 - beta) / (1 - beta**counts)
    w = torch.tensor(w * 3 / w.sum(), dtype=torch.float32)
    onehot = F.one_hot(y, 3).float()
    p = torch.sigmoid(logits)
    p_t = torch.where(onehot == 1, p, 1 - p)
    for gamma in (0.5, 1.0, 2.0):
        per_sample = (-((1 - p_t) ** gamma) * p_t.log()).sum(1) * w[y]
        loss = ClassBalancedLoss(counts, beta=beta, base="sigmoid", gamma=gamma, reduction="none")
        torch.testing.assert_close(loss(logits, y), per_sample)
        loss.reduction = "sum"
        torch.testing.assert_close(loss(logits, y), per_sample.sum())
        loss.reduction = "mean"
        torch.testing.assert_close(loss(logits, y), per_sample.sum() / w[y].sum())


def test_default_ignore_index_of_every_loss():
    counts = [50, 20, 5]
    logits = torch.tensor([[1.0, 0.2, -0.3], [0.5, 1.5, 0.0]])
    y = torch.tensor([1, -100])
    losses = [
        make_loss(name, counts, total_epochs=4) for name in REGISTRY["loss"]
    ]  # every registered one
    for loss in losses:
        torch.testing.assert_close(loss(logits, y), loss(logits[:1], y[:1]))


def test_loss_argument_edges():
    FocalLoss(alpha=[0.0, 1.0])  # a zero class weight is allowed
    with pytest.raises(ValueError, match="non-negative"):
        FocalLoss(alpha=[-0.1, 1.0])
    for kwargs in ({"s": 0}, {"max_margin": 0}, {"s": -1.0}):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            LDAMLoss([10, 5], **kwargs)


def test_ldam_drw_schedule_follows_total_epochs():
    counts = [100, 10]
    assert make_loss("ldam_drw", counts, total_epochs=20).drw_epoch == 16  # 80% of the epochs
    assert make_loss("ldam_drw", counts, total_epochs=1).drw_epoch == 1  # never before epoch 1
    assert make_loss("ldam_drw", counts, total_epochs=20, drw_epoch=3).drw_epoch == 3
    assert isinstance(make_loss("focal", counts, total_epochs=20), FocalLoss)


def test_sigmoid_loss_ignores_ignored_targets_and_losses_refuse_targets_out_of_range():
    counts = [50, 20, 5]
    logits = torch.tensor([[1.0, 0.2, -0.3], [0.5, 1.5, 0.0]])
    sig = ClassBalancedLoss(counts, base="sigmoid")
    y = torch.tensor([1, -100])
    torch.testing.assert_close(sig(logits, y), sig(logits[:1], y[:1]))
    for loss in (FocalLoss(), LDAMLoss(counts), LogitAdjustedLoss(counts), sig):
        with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
            loss(logits, torch.tensor([0, 3]))


def test_post_hoc_defaults_are_tau_one():
    from longtail.losses import logit_adjust, tau_normalize

    logits = torch.tensor([[1.0, 2.0, 0.5]])
    counts = [60, 30, 10]
    prior = torch.tensor([0.6, 0.3, 0.1]).log()
    torch.testing.assert_close(logit_adjust(logits, counts), logits - prior)
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    torch.testing.assert_close(tau_normalize(w), torch.tensor([[0.6, 0.8], [0.0, 1.0]]))


def test_smoothed_cross_entropy_checks_targets_and_ldam_takes_small_scales():
    logits = torch.randn(4, 3)
    loss = CrossEntropyLoss(label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        loss(logits, torch.tensor([0, 1, 2, 3]))  # batch of 4, 3 classes
    with pytest.raises(ValueError, match="shape"):
        loss(torch.randn(4), torch.tensor([0, 1, 2, 0]))
    for s in (1.0, 0.5):  # scales below 30 are legitimate (a linear head)
        LDAMLoss([10, 5], s=s, max_margin=0.2)


def test_hxe_equals_the_weighted_sum_of_conditional_log_probabilities():
    alpha = 0.4
    got = HierarchicalCrossEntropyLoss(TREE, alpha=alpha, reduction="none")(
        TREE_LOGITS, TREE_TARGET
    )
    lam1, lam2 = math.exp(-alpha), 1.0  # levels 1 (height 1) and 2 (the leaves, height 0)
    expected = []
    for row, t in zip(TREE_LOGITS, TREE_TARGET.tolist(), strict=True):
        p = _p(row)
        if t in (0, 1):  # under A: -lam1 log p(A) - lam2 log(p(leaf) / p(A))
            pa = p[0] + p[1]
            expected.append(-lam1 * math.log(pa) - lam2 * math.log(p[t] / pa))
        else:  # b1 is its own node: the step below it is certain and adds nothing
            expected.append(-lam1 * math.log(p[2]))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_hxe_is_cross_entropy_at_alpha_zero_and_on_a_flat_tree():
    ce = F.cross_entropy(TREE_LOGITS, TREE_TARGET)
    assert torch.allclose(
        HierarchicalCrossEntropyLoss(TREE, alpha=0.0)(TREE_LOGITS, TREE_TARGET), ce
    )
    flat = [[0, 1, 2]]
    assert torch.allclose(
        HierarchicalCrossEntropyLoss(flat, alpha=0.7)(TREE_LOGITS, TREE_TARGET), ce
    )


def test_soft_labels_equal_the_written_out_targets():
    beta = 3.0
    got = SoftLabelLoss(TREE, beta=beta, reduction="none")(TREE_LOGITS, TREE_TARGET)
    # LCA heights: a1-a2 1, a-b1 2; h_max = 2
    h = np.array([[0, 1, 2], [1, 0, 2], [2, 2, 0]], dtype=np.float64)
    q = np.exp(-beta * h / 2)
    q /= q.sum(1, keepdims=True)
    expected = [
        -(q[t] * np.log(_p(row))).sum() for row, t in zip(TREE_LOGITS, TREE_TARGET.tolist())
    ]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # a very hard beta is one-hot cross-entropy
    hard = SoftLabelLoss(TREE, beta=200.0)(TREE_LOGITS, TREE_TARGET)
    assert torch.allclose(hard, F.cross_entropy(TREE_LOGITS, TREE_TARGET), atol=1e-5)


@pytest.mark.parametrize("make", [HierarchicalCrossEntropyLoss, SoftLabelLoss])
def test_tree_losses_weight_ignore_and_stay_finite(make):
    weight = torch.tensor([1.0, 3.0, 0.5])
    per = make(TREE, reduction="none")(TREE_LOGITS, TREE_TARGET)
    mean = make(TREE, weight=weight)(TREE_LOGITS, TREE_TARGET)
    assert torch.allclose(mean, (per * weight[TREE_TARGET]).sum() / weight[TREE_TARGET].sum())
    ignored = make(TREE, reduction="sum")(TREE_LOGITS, torch.tensor([0, -100, 2]))
    assert torch.allclose(ignored, per[[0, 2]].sum())
    logits = (TREE_LOGITS * 1e4).requires_grad_()
    make(TREE)(logits, TREE_TARGET).backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        make(TREE)(TREE_LOGITS, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="shape"):
        make(TREE)(TREE_LOGITS[:, :2], TREE_TARGET)


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


@pytest.mark.parametrize("loss", [CrossEntropyLoss, FocalLoss])
def test_every_loss_refuses_an_unknown_reduction_when_built(loss):
    assert REDUCTIONS == ("mean", "sum", "none")
    with pytest.raises(LongtailError, match="reduction must be 'mean', 'sum' or 'none'"):
        loss(reduction="bogus")
    with pytest.raises(LongtailError, match="reduction"):
        HierarchicalCrossEntropyLoss([("a",), ("b",)], reduction="avg")
