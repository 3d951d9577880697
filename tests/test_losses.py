import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.losses import (
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    CrossEntropyLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    logit_adjust,
    tau_normalize,
)
from longtail.strategies.registry import make_loss

torch.manual_seed(0)
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
