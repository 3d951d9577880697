import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sk_confusion

from helpers import long_tail_labels
from longtail.distribution import ClassDistribution
from longtail.errors import LongtailError
from longtail.experiments.comparison import Comparison
from longtail.metrics import (
    MetricAccumulator,
    compare_runs,
    confusion_matrix,
    evaluate,
    metric_info,
)
from longtail.report.tables import csv_table, markdown_table


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_scikit_learn_including_absent_classes(seed):
    rng = np.random.default_rng(seed)
    k = 7
    y = rng.integers(0, k - 1, 300)  # class 6 never in targets
    p = rng.integers(0, k, 300)
    p[p == 3] = 2  # class 3 never predicted
    rep = evaluate(p, y, k)
    np.testing.assert_array_equal(rep.confusion, sk_confusion(y, p, labels=range(k)))
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=range(k), zero_division=0)
    np.testing.assert_allclose(rep.precision, prec)
    np.testing.assert_allclose(rep.recall, rec)
    np.testing.assert_allclose(rep.f1, f1)
    np.testing.assert_array_equal(rep.support, sup)
    with pytest.warns(UserWarning):
        sk_bal = balanced_accuracy_score(y, p)
    assert rep.balanced_accuracy == pytest.approx(sk_bal)
    assert rep.macro_f1 == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert rep.accuracy == pytest.approx((y == p).mean())


def test_streaming_equals_one_shot():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1000, 6, generator=gen) * 2
    y = torch.randint(0, 6, (1000,), generator=gen)
    dist = ClassDistribution.from_counts([600, 200, 100, 50, 30, 20])
    one = evaluate(logits, y, 6, dist)
    acc = MetricAccumulator(6)
    for s in range(0, 1000, 97):
        acc.update(logits[s : s + 97], y[s : s + 97])
    many = acc.compute(dist)
    assert one.summary() == pytest.approx(many.summary())
    np.testing.assert_array_equal(one.confusion, many.confusion)
    # state round trip (what DDP all-reduce uses)
    other = MetricAccumulator(6)
    other.load_state(acc.state())
    assert other.compute(dist).summary() == pytest.approx(many.summary())


def test_topk_and_ece_by_hand():
    logits = torch.log(
        torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.1, 0.3, 0.6], [0.45, 0.35, 0.2]])
    )
    y = torch.tensor([0, 1, 2, 2])
    rep = evaluate(logits, y, 3)
    assert rep.topk[1] == pytest.approx(0.5)
    # top-2 sets: {0,1},{0,1},{2,1},{0,1}: hits rows 0,1,2
    acc = MetricAccumulator(3, topk=(1, 2))
    acc.update(logits, y)
    assert acc.compute().topk[2] == pytest.approx(0.75)
    # 15 bins of width 1/15: conf 0.7 -> bin 10 (correct), 0.5 -> bin 7 (wrong), 0.6 -> bin 8 (correct),
    # 0.45 -> bin 6 (wrong): ECE = (0.3 + 0.5 + 0.4 + 0.45) / 4
    assert rep.ece == pytest.approx((0.3 + 0.5 + 0.4 + 0.45) / 4)


def test_group_metrics_hand_made():
    dist = ClassDistribution.from_counts(
        [100, 90, 50, 40, 10, 5]
    )  # head {0,1}, medium {2,3}, tail {4,5}
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    p = np.array([0, 0, 1, 0, 2, 1, 3, 3, 0, 0, 5, 0])
    s = evaluate(p, y, 6, dist).summary()
    assert s["head_recall"] == pytest.approx((1.0 + 0.5) / 2)
    assert s["medium_recall"] == pytest.approx((0.5 + 1.0) / 2)
    assert s["tail_recall"] == pytest.approx((0.0 + 0.5) / 2)
    # class 0: 6 predictions, 2 right -> precision 1/3, recall 1 -> F1 1/2; class 1: p 1/2 r 1/2 -> 1/2
    assert s["head_f1"] == pytest.approx(0.5)
    # class 4: 0; class 5: p 1 r 0.5 -> 2/3
    assert s["tail_f1"] == pytest.approx((0 + 2 / 3) / 2)


def test_compare_runs_and_tables():
    runs = {
        "ce": [
            {"balanced_accuracy": 0.80, "tail_recall": 0.40},
            {"balanced_accuracy": 0.82, "tail_recall": 0.42},
        ],
        "focal": [
            {"balanced_accuracy": 0.85, "tail_recall": 0.60},
            {"balanced_accuracy": 0.85, "tail_recall": 0.70},
        ],
    }
    c = compare_runs(runs, metrics=("balanced_accuracy", "tail_recall"))
    assert c["metrics"]["tail_recall"]["focal"]["delta_points"] == pytest.approx(24.0)
    assert c["metrics"]["balanced_accuracy"]["ce"]["std"] == pytest.approx(0.01)
    md = markdown_table(Comparison.from_table(c))
    assert "| strategy | bal acc | tail R |" in md  # strategies as rows
    assert "| ce (baseline) | 81.0 ± 1.0 | 41.0 ± 1.0 |" in md
    assert "| focal | 85.0 ± 0.0 (+4.0) | 65.0 ± 5.0 (+24.0) |" in md
    assert "leaf,tail_recall,focal,0.650000,0.050000,2,24.000" in csv_table(
        Comparison.from_table(c)
    )
    with pytest.raises(ValueError, match="baseline"):
        compare_runs(runs, baseline="ldam")


def test_metric_errors():
    with pytest.raises(ValueError, match="lie in"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError, match="columns"):
        MetricAccumulator(3).update(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="no batches"):
        MetricAccumulator(3).compute()


def test_mistake_severity_is_better_lower():
    """Which way severity is better: lower (a mistake inside the right parent is smaller)."""
    assert metric_info("mistake_severity").higher_is_better is False
    assert metric_info("balanced_accuracy").higher_is_better is True


def test_reset_clears_the_tree_levels_too():
    """``reset()`` of the levels: a second round after reset counts only its own batches."""
    tree = [["a", "a", "b"], [0, 1, 2]]
    acc = MetricAccumulator(3, tree=tree)
    acc.update(torch.tensor([0, 1, 2]), torch.tensor([2, 2, 2]))  # all wrong at the top
    acc.reset()
    acc.update(torch.tensor([0, 1]), torch.tensor([1, 0]))  # wrong leaf, right parent
    report = acc.compute()
    top = report.levels[1]
    assert top.accuracy == 1.0 and top.confusion.sum() == 2


def test_one_non_finite_logit_among_finite_ones_is_refused_and_counted():
    """``.any(1)`` -> ``.all(1)``: a row with one non-finite logit is one bad row."""
    acc = MetricAccumulator(3)
    logits = torch.tensor([[0.0, 1.0, float("nan")], [1.0, 0.0, 0.0], [0.0, float("inf"), 2.0]])
    with pytest.raises(LongtailError, match="^2 of 3 rows of logits are nan or infinite"):
        acc.update(logits, torch.tensor([0, 1, 2]))


def test_the_confusion_matrix_counts_every_pair():
    """``minlength=num_classes**2`` -> ``num_classes * 2``: the last class's row and column."""
    k = 5
    cm = confusion_matrix(torch.tensor([0, 4, 4, 3]), torch.tensor([0, 4, 3, 4]), k)
    assert cm.shape == (k, k) and cm.sum() == 4
    assert cm[4, 4] == 1 and cm[3, 4] == 1 and cm[4, 3] == 1 and cm[0, 0] == 1
    first_only = confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), k)  # no last class
    assert first_only.shape == (k, k) and first_only[0].tolist() == [1, 1, 0, 0, 0]


def test_distribution_and_metrics_at_8142_classes():
    k = 8142
    y = long_tail_labels(k, 30, 1)
    dist = ClassDistribution.from_labels(y)
    assert dist.num_classes == k and dist.imbalance_ratio == 30
    groups = dist.groups
    order = np.argsort(-dist.counts, kind="stable")
    head, tail = dist.counts[groups == "head"], dist.counts[groups == "tail"]
    assert head.min() >= dist.counts[groups == "medium"].max() >= tail.max()
    assert abs((groups == "head").sum() - k / 3) < 400  # thirds, moved only to keep ties together
    assert groups[order[0]] == "head" and groups[order[-1]] == "tail"
    rng = np.random.default_rng(1)
    pred = np.where(rng.random(y.size) < 0.7, y, rng.integers(0, k, y.size))
    rep = evaluate(pred, y, k, dist)
    assert rep.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, pred))
    assert rep.macro_f1 == pytest.approx(f1_score(y, pred, average="macro"))


def test_single_sample_classes_count_in_balanced_accuracy_and_macro_f1():
    y = np.array([0, 0, 0, 1, 2])
    p = np.array([0, 0, 1, 1, 2])
    rep = evaluate(p, y, 3)
    # recalls 2/3, 1, 1 -> 0.8889; F1: 0.8, 2/3, 1 -> 0.8222
    assert rep.balanced_accuracy == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert rep.macro_f1 == pytest.approx((0.8 + 2 / 3 + 1) / 3)
    rep = evaluate(np.array([0, 0, 1, 1, 2]), np.array([0, 0, 0, 1, 2]), 4)  # class 3 absent
    assert rep.macro_f1 == pytest.approx((0.8 + 2 / 3 + 1) / 3)  # absent everywhere: left out
    assert rep.balanced_accuracy == pytest.approx((2 / 3 + 1 + 1) / 3)


def test_confusion_matrix_values_and_bad_predictions():
    cm = confusion_matrix([0, 2, 2, 1, 0], [0, 1, 2, 1, 1], 3)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 1]]
    acc = MetricAccumulator(3)
    with pytest.raises(ValueError):
        acc.update(torch.tensor([0, -1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        acc.update(torch.tensor([0, 3]), torch.tensor([0, 1]))


def test_all_reduce_of_predictions_only_reports_no_top_k_or_ece():
    a, b = MetricAccumulator(4), MetricAccumulator(4)
    a.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]))
    b.update(torch.tensor([2, 0]), torch.tensor([2, 3]))
    merged = MetricAccumulator(4)
    merged.load_state(a.state() + b.state())  # what all_reduce(SUM) hands back
    rep = merged.compute()
    assert rep.topk == {} and rep.ece is None
    assert rep.confusion.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]]


def test_all_reduce_with_logits_equals_one_accumulator():
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 5, generator=rng)
    logits[:, 4] = -10  # class 4 is never predicted
    y = torch.randint(0, 5, (40,), generator=rng)
    whole = MetricAccumulator(5, topk=(1, 3))
    whole.update(logits, y)
    parts = [MetricAccumulator(5, topk=(1, 3)) for _ in range(2)]
    parts[0].update(logits[:25], y[:25])
    parts[1].update(logits[25:], y[25:])
    merged = MetricAccumulator(5, topk=(1, 3))
    merged.load_state(parts[0].state() + parts[1].state())
    a, b = merged.compute(), whole.compute()
    assert a.confusion.tolist() == b.confusion.tolist() and a.confusion[:, 4].sum() == 0
    assert a.topk == pytest.approx(b.topk) and a.ece == pytest.approx(b.ece)
    top1 = (logits.argmax(1) == y).float().mean().item()
    top3 = (logits.topk(3, 1).indices == y[:, None]).any(1).float().mean().item()
    assert a.topk[1] == pytest.approx(top1) and a.topk[3] == pytest.approx(top3)
    conf = logits.softmax(1).max(1).values.numpy()
    correct = (logits.argmax(1) == y).numpy()
    bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
    ece = (
        sum(
            abs(correct[bins == i].sum() - conf[bins == i].sum())
            for i in range(15)
            if (bins == i).any()
        )
        / 40
    )
    assert a.ece == pytest.approx(ece)


def test_report_rows_and_summary_by_hand():
    dist = ClassDistribution.from_counts([30, 20, 10], class_names=["a", "b", "c"])
    y = torch.tensor([0, 0, 1, 1, 2])
    logits = torch.tensor(
        [[3.0, 1, 0], [1, 3.0, 0], [0, 3.0, 1], [0, 1, 3.0], [1, 0, 3.0]]
    )  # predictions 0, 1, 1, 2, 2; the true class always in the top two
    acc = MetricAccumulator(3, topk=(1, 2))
    acc.update(logits, y)
    rep = acc.compute(dist)
    rows = rep.per_class()
    assert [r["class"] for r in rows] == ["a", "b", "c"]
    assert [r["group"] for r in rows] == ["head", "medium", "tail"]
    assert [r["support"] for r in rows] == [2, 2, 1]
    assert [r["precision"] for r in rows] == pytest.approx([1.0, 0.5, 0.5])
    assert [r["recall"] for r in rows] == pytest.approx([0.5, 0.5, 1.0])
    assert [r["f1"] for r in rows] == pytest.approx([2 / 3, 0.5, 2 / 3])
    d = rep.to_dict()
    assert d["per_class"] == rows and d["confusion"] == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    s = d["summary"]
    assert s["top1_accuracy"] == pytest.approx(0.6) and s["top2_accuracy"] == pytest.approx(1.0)
    p = torch.softmax(logits, 1).max(1).values  # all equal: one bin
    assert s["ece"] == pytest.approx(abs(0.6 - p.mean().item()))
    assert s["head_recall"] == 0.5 and s["medium_f1"] == 0.5 and s["tail_recall"] == 1.0


def test_group_means_skip_classes_without_test_samples():
    dist = ClassDistribution.from_counts([40, 30, 20, 10, 5, 1])  # head: 0, 1; medium: 2, 3
    rep = evaluate(np.array([0, 1, 2, 4, 5]), np.array([0, 1, 2, 4, 5]), 6, dist)
    assert rep.support[3] == 0
    assert rep.summary()["medium_recall"] == 1.0  # class 3 has no test sample: not a 0 in the mean


def test_macro_f1_keeps_a_single_sample_class_never_predicted():
    y, p = np.array([0, 0, 1]), np.array([0, 0, 0])
    rep = evaluate(p, y, 2)
    assert rep.macro_f1 == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert rep.macro_f1 == pytest.approx(0.4)


def test_empty_evaluation_reports_zero_not_a_crash():
    acc = MetricAccumulator(3)
    acc.update(torch.empty(0, 3), torch.empty(0, dtype=torch.long))
    rep = acc.compute()
    assert (rep.accuracy, rep.balanced_accuracy, rep.macro_f1) == (0.0, 0.0, 0.0)


def test_accumulator_size_limits_and_top_k_up_to_k():
    acc = MetricAccumulator(1)
    acc.update(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
    assert acc.compute().accuracy == 1.0
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        MetricAccumulator(0)
    assert MetricAccumulator(5).topk == (1, 5) and MetricAccumulator(4).topk == (1,)


def test_ece_uses_fifteen_equal_width_bins_by_default():
    def logits_with_confidence(conf, k=2):
        d = np.log(conf * (k - 1) / (1 - conf))  # softmax max = conf, class 0 on top
        row = torch.zeros(k)
        row[0] = float(d)
        return row

    # 0.935 and 0.99 share bin 14 of 15 but not of 16; 0.9 is one bin lower
    rows = torch.stack([logits_with_confidence(c) for c in (0.935, 0.99, 0.9)])
    y = torch.tensor([0, 1, 0])  # correct, wrong, correct
    acc = MetricAccumulator(2)
    acc.update(rows, y)
    expected = (abs(1 - (0.935 + 0.99)) + abs(1 - 0.9)) / 3
    assert acc.compute().ece == pytest.approx(expected, abs=1e-6)
    # the lowest bin: a uniform 20-class row (confidence 0.05) apart from one of confidence 0.1
    low = torch.stack([torch.zeros(20), logits_with_confidence(0.1, 20)])
    acc = MetricAccumulator(20)
    acc.update(low, torch.tensor([0, 1]))
    assert acc.compute().ece == pytest.approx((abs(1 - 0.05) + abs(0 - 0.1)) / 2, abs=1e-6)


def test_state_layout_is_the_same_with_or_without_batches():
    seen = MetricAccumulator(3, topk=(1, 2))
    seen.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    idle = MetricAccumulator(3, topk=(1, 2))  # a DDP rank whose shard was empty
    assert idle.state().shape == seen.state().shape
    merged = MetricAccumulator(3, topk=(1, 2))
    merged.load_state(seen.state() + idle.state())
    assert merged.compute().topk == pytest.approx(seen.compute().topk)
    preds_only = MetricAccumulator(3)
    preds_only.update(torch.tensor([1, 1]), torch.tensor([0, 1]))  # confusion[0, 1] = 1
    merged = MetricAccumulator(3)
    merged.load_state(preds_only.state())
    assert merged.compute().ece is None


def test_compare_runs_with_one_seed_each():
    table = compare_runs(
        {"a": [{"accuracy": 0.5}], "b": [{"accuracy": 0.75}]}, metrics=["accuracy"]
    )
    row = table["metrics"]["accuracy"]
    assert row["a"] == {"mean": 0.5, "std": 0.0, "n": 1, "delta_points": 0.0, "values": [0.5]}
    assert row["b"]["delta_points"] == pytest.approx(25.0)


def test_macro_f1_keeps_a_class_predicted_once_without_test_samples():
    y, p = np.array([0, 0, 1]), np.array([0, 2, 1])
    rep = evaluate(p, y, 3)
    assert rep.macro_f1 == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert rep.macro_f1 == pytest.approx((2 / 3 + 1 + 0) / 3)
