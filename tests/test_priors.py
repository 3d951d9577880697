"""Accuracy under a class prior: against a hand computation and a re-sampled test set."""

import numpy as np
import pytest

from longtail.metrics import confusion_matrix
from longtail.priors import power_prior, prior_accuracy, shift_label, shifted_accuracies

CONFUSION = np.array(  # rows: true class (test support 10, 20, 5), columns: predicted
    [
        [8, 1, 1],
        [4, 14, 2],
        [2, 0, 3],
    ]
)
RECALL = np.diag(CONFUSION) / CONFUSION.sum(1)  # 0.8, 0.7, 0.6


def test_accuracy_under_a_prior_by_hand():
    assert prior_accuracy(RECALL, [0.5, 0.3, 0.2]) == pytest.approx(0.4 + 0.21 + 0.12)
    assert prior_accuracy(RECALL, [1, 1, 1]) == pytest.approx(0.7)  # balanced accuracy
    # the test set's own prior gives its overall accuracy: 25 right of 35
    assert prior_accuracy(RECALL, CONFUSION.sum(1)) == pytest.approx(25 / 35)
    # a class without test images is left out and the prior renormalised
    assert prior_accuracy([0.8, np.nan, 0.6], [0.5, 0.3, 0.2]) == pytest.approx(
        0.4 / 0.7 + 0.12 / 0.7
    )
    with pytest.raises(ValueError, match="non-negative"):
        prior_accuracy(RECALL, [0.5, -0.1, 0.6])


def test_it_equals_the_accuracy_of_a_test_set_resampled_to_that_prior():
    rng = np.random.default_rng(0)
    # a model's predictions on a large test set: class j is right with probability RECALL[j]
    support = 20_000
    y = np.repeat(np.arange(3), support)
    right = rng.random(y.size) < RECALL[y]
    pred = np.where(right, y, (y + 1) % 3)
    recall = np.diag(confusion_matrix(pred, y, 3)) / support
    prior = np.array([0.7, 0.2, 0.1])
    # re-sample 50,000 test images to the prior and score them
    classes = rng.choice(3, size=50_000, p=prior)
    index = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), (classes == c).sum()) for c in range(3)]
    )
    resampled = float((pred[index] == y[index]).mean())
    # binomial sd of the mean over 50,000 draws is below 0.0025; allow 4 sd
    assert abs(prior_accuracy(recall, prior) - resampled) < 0.01


def test_the_shifted_priors_run_from_the_training_prior_through_uniform_to_its_reverse():
    counts = np.array([1000, 100, 10])
    np.testing.assert_allclose(power_prior(counts, 1.0), counts / counts.sum())
    np.testing.assert_allclose(power_prior(counts, 0.0), [1 / 3] * 3)
    reverse = power_prior(counts, -1.0)
    np.testing.assert_allclose(reverse, [0.01, 0.1, 1.0] / np.sum([0.01, 0.1, 1.0]))
    assert reverse.max() / reverse.min() == pytest.approx(100)  # the training ratio, reversed
    assert power_prior([5, 0, 5], 1.0)[1] == 0  # an empty class gets no weight
    accs = shifted_accuracies(RECALL, counts, [1.0, 0.0, -1.0])
    assert accs == pytest.approx(
        [np.dot(RECALL, counts / counts.sum()), 0.7, np.dot(RECALL, reverse)]
    )
    assert shift_label(0.0, 100) == "uniform"
    assert shift_label(-0.5, 100) == "reversed x0.5 (IR 10)"


def test_a_comparison_reports_each_strategy_under_the_shifted_priors(tmp_path):
    from longtail.distribution import ClassDistribution
    from longtail.experiments.compare import prior_shift
    from longtail.priors import SHIFT_EXPONENTS
    from longtail.report.comparison import _prior_shift
    from longtail.report.plots import plot_prior_shift
    from longtail.training.results import Comparison, PriorShift, TestResult

    def tested(recall, support=(10, 10, 10)):
        rows = [
            {"class": c, "precision": 0.0, "recall": r, "f1": 0.0, "support": s}
            for c, r, s in zip("abc", recall, support, strict=True)
        ]
        return TestResult({}, rows, [])

    dist = ClassDistribution.from_counts([1000, 100, 10], ["a", "b", "c"])
    head_heavy = [tested([0.9, 0.6, 0.2]), tested([0.9, 0.6, 0.4])]  # two seeds
    tail_heavy = [tested([0.5, 0.6, 0.9], support=(10, 10, 0))]  # c has no test images
    shift = prior_shift({"head": head_heavy, "tail": tail_heavy}, dist)
    at = {t: i for i, t in enumerate(SHIFT_EXPONENTS)}
    assert shift.accuracy["head"][at[0.0]].mean == pytest.approx((0.9 + 0.6 + 0.3) / 3)
    assert shift.accuracy["head"][at[0.0]].std == pytest.approx(np.std([1.7 / 3, 1.9 / 3]))
    train = power_prior(dist.counts, 1.0)
    assert shift.accuracy["head"][at[1.0]].mean == pytest.approx(train @ [0.9, 0.6, 0.3])
    # c's recall is unknown for "tail": the uniform prior is renormalised over a and b
    assert shift.accuracy["tail"][at[0.0]].mean == pytest.approx(0.55)
    assert PriorShift.from_dict(shift.to_dict()) == shift
    comparison = Comparison.from_dict(
        {"baseline": "head", "strategies": ["head", "tail"], "metrics": {}}
    )
    comparison.prior_shift = shift
    assert Comparison.from_dict(comparison.to_dict()).prior_shift == shift
    text = "\n".join(_prior_shift(comparison))
    assert "| uniform | 60.0 | 55.0 |" in text
    # head's worst case is the reversed prior (mostly c, recall 0.3); tail never drops below 0.5
    assert "Best across the whole range: **tail**" in text
    assert plot_prior_shift(shift, tmp_path / "p.png").stat().st_size > 0
