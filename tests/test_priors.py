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
    from longtail.experiments.comparison import Comparison, PriorShift, prior_shift
    from longtail.priors import SHIFT_EXPONENTS
    from longtail.report.comparison import _prior_shift
    from longtail.report.plots import plot_prior_shift
    from longtail.training.results import TestResult

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


def test_the_target_prior_is_read_from_a_name_a_csv_file_or_a_json_table(tmp_path):
    from longtail.priors import canonical_target, target_prior

    counts, names = np.array([60, 30, 10]), ["a", "b", "c"]
    assert target_prior("uniform", counts, names) is None
    np.testing.assert_allclose(target_prior("train", counts, names), [0.6, 0.3, 0.1])
    table = tmp_path / "prior.csv"
    table.write_text("class,share\na,1\nb,1\nc,2\n")
    np.testing.assert_allclose(target_prior(str(table), counts, names), [0.25, 0.25, 0.5])
    # the identity holds the shares, not the file name
    text = canonical_target(str(table))
    assert text == '{"a":1.0,"b":1.0,"c":2.0}'
    np.testing.assert_allclose(target_prior(text, counts, names), [0.25, 0.25, 0.5])
    with pytest.raises(ValueError, match=r"missing c, unknown d"):
        target_prior('{"a": 1, "b": 1, "d": 1}', counts, names)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        target_prior('{"a": 1, "b": -1, "c": 1}', counts, names)
    with pytest.raises(ValueError, match="expected uniform, train or a regular file"):
        canonical_target(str(tmp_path / "nowhere.csv"))


def test_the_target_sampler_draws_classes_by_the_prior():
    from longtail.strategies.registry import BuildContext, component

    targets = np.repeat(np.arange(3), [600, 300, 100])
    prior = np.array([0.2, 0.3, 0.5])
    ctx = BuildContext(targets, np.array([600, 300, 100]), 0, 1, 8, None, prior)
    sampler = component("sampler", "target_prior").factory(ctx)
    drawn = np.concatenate([targets[np.fromiter(sampler, np.int64)] for _ in range(100)])
    # 10^5 draws: the binomial sd of a share is below 0.0016; allow 0.006
    np.testing.assert_allclose(np.bincount(drawn) / drawn.size, prior, atol=0.006)
    uniform = component("sampler", "target_prior").factory(
        BuildContext(targets, ctx.counts, 0, 1, 8)
    )
    shares = np.bincount(targets[np.fromiter(uniform, np.int64)], minlength=3) / len(targets)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.05)  # 1,000 draws: class-balanced


def test_logit_adjustment_toward_a_target_prior():
    from longtail.strategies.stages import PostHocLogitAdjustment

    counts, q = np.array([60, 30, 10]), np.array([0.2, 0.3, 0.5])
    stage = PostHocLogitAdjustment(counts, prior=q)
    expected = np.log(counts / counts.sum()) - np.log(q)  # z - tau (log pi - log q)
    np.testing.assert_allclose(stage.log_prior.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="every share > 0"):
        PostHocLogitAdjustment(counts, prior=np.array([0.5, 0.5, 0.0]))


def test_a_run_is_selected_and_judged_under_its_target_prior(tmp_path):
    from helpers import write_splits
    from longtail.data.bundle import folder_bundle
    from longtail.training.loop import TrainConfig, train

    data = folder_bundle(write_splits(tmp_path / "data", held_out=4), image_size=8)
    prior = tmp_path / "deploy.csv"
    prior.write_text("c0,0.1\nc1,0.2\nc2,0.7\n")
    config = TrainConfig(
        strategy="target_prior+ce:logit_adjust",
        epochs=3,
        batch_size=8,
        target_prior=str(prior),
        num_workers=0,
        progress=False,
    )
    result = train(config, data, tmp_path / "run")
    assert result.identity["training"]["target_prior"] == '{"c0":0.1,"c1":0.2,"c2":0.7}'
    recall = np.array([row["recall"] for row in result.test.per_class])
    assert result.test.summary["target_accuracy"] == pytest.approx(recall @ [0.1, 0.2, 0.7])
    rows = [r for r in result.history if r["stage"] == 1]
    best = max(rows, key=lambda r: (r["val_target_accuracy"], -r["epoch"]))
    assert result.selected_epoch == best["epoch"]
    assert "val_target_accuracy" in (tmp_path / "run" / "log.csv").read_text().splitlines()[0]
