"""Behaviour the core modules must keep, each checked against an independent computation (a
formula, a hand-made case, scikit-learn), at the scales long-tailed data sets have: 1,000 classes
(ImageNet-LT) and 8,142 (iNaturalist 2018), epochs longer than one internal chunk, classes with a
single image, test classes with a single sample."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, f1_score

from longtail.distribution import ClassDistribution
from longtail.losses import (
    ClassBalancedLoss,
    CrossEntropyLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
)
from longtail.metrics import MetricAccumulator, compare_runs, confusion_matrix, evaluate
from longtail.sampling import (
    BalancedBatchSampler,
    ClassBalancedSampler,
    CurriculumSampler,
    HybridSampler,
    InstanceSampler,
    PowerSampler,
    ProgressiveSampler,
    RepeatFactorSampler,
    WeightedSampler,
    plans,
)
from longtail.strategies.registry import REGISTRY, make_loss


def long_tail_labels(k: int, n_max: int, n_min: int, seed: int = 0) -> np.ndarray:
    """Exponential profile n_i = n_max (n_min / n_max)^(i / (k-1)), labels shuffled."""
    counts = np.floor(n_max * (n_min / n_max) ** (np.arange(k) / (k - 1))).astype(int)
    labels = np.repeat(np.arange(k), counts)
    return np.random.default_rng(seed).permutation(labels)


# ------------------------------------------------------------------ many classes
@pytest.mark.parametrize("k", [1000, 8142])
def test_class_groups_hold_only_their_class_beyond_256_classes(k):
    y = long_tail_labels(k, 60, 1)
    g = plans.ClassGroups.from_labels(y)
    assert g.num_classes == k and g.counts.tolist() == np.bincount(y, minlength=k).tolist()
    owner = np.repeat(np.arange(k), g.counts)
    assert np.array_equal(y[g.order], owner)  # class j's slice holds class j's samples, all of them
    assert sorted(g.order.tolist()) == list(range(y.size))


@pytest.mark.parametrize("k", [1000, 8142])
def test_every_sampler_balances_many_classes(k):
    y = long_tail_labels(k, 40, 1)
    counts = np.bincount(y, minlength=k)
    draws = 400 * k
    cases = {
        "class_balanced": (ClassBalancedSampler(y, draws, seed=0), np.full(k, 1 / k)),
        "weighted_inverse": (
            WeightedSampler(labels=y, num_samples=draws, seed=0),
            np.full(k, 1 / k),
        ),
        "power": (PowerSampler(y, draws, q=0.5, seed=0), np.sqrt(counts) / np.sqrt(counts).sum()),
        "progressive_end": (
            ProgressiveSampler(y, draws, total_epochs=1, seed=0),
            np.full(k, 1 / k),
        ),
        "curriculum": (CurriculumSampler(y, draws, seed=0), np.full(k, 1 / k)),
    }
    for name, (sampler, expected) in cases.items():
        sampler.set_epoch(1)
        share = np.bincount(y[sampler.local_plan()], minlength=k) / draws
        # each class gets 400 draws on average: 6 standard errors of a share is 6 sqrt(p/n)
        tol = 6 * np.sqrt(expected / draws)
        assert np.all(np.abs(share - expected) <= tol), name
    inst = InstanceSampler(y, seed=0).local_plan()
    assert np.array_equal(np.sort(inst), np.arange(y.size))


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


# ------------------------------------------------------------------ samplers: order and exact sizes
def test_cycling_class_balanced_draws_are_mixed_and_shuffled_within_classes():
    y = np.repeat(np.arange(4), 1000)
    plan = ClassBalancedSampler(y, 2000, cycle=True, seed=0).plan(0)
    cls = y[plan]
    assert len(set(cls[:64].tolist())) == 4  # not grouped by class
    same_as_next = np.mean(cls[1:] == cls[:-1])
    assert abs(same_as_next - 0.25) < 0.05  # i.i.d.-like order: P(same class) = sum p_j^2
    for j in range(4):
        members = plan[cls == j] - 1000 * j  # about 500 of the class's 1,000 images
        assert np.unique(members).size == members.size  # no repeat before all are used
        # a uniform random subset: mean position 499.5 (sd ~13), not the first ~500 (mean ~250)
        assert abs(members.mean() - 499.5) < 60


def test_weighted_without_replacement_honours_num_samples():
    w = np.linspace(1, 3, 2880)
    s = WeightedSampler(w, num_samples=1000, replacement=False, seed=0)
    plan = list(s)
    assert len(plan) == len(s) == 1000 and len(set(plan)) == 1000
    s = WeightedSampler(w, num_samples=2879, replacement=False, seed=0)  # N - 1
    assert len(set(s)) == 2879


def test_hybrid_over_sampling_spreads_over_the_tail_class():
    y = np.repeat(np.arange(4), [400, 200, 100, 20])
    s = HybridSampler(y, seed=0, over_max=3.0)
    hits = np.zeros(20)
    tail = np.flatnonzero(y == 3)
    for epoch in range(200):
        s.set_epoch(epoch)
        plan = np.asarray(list(s))
        drawn = plan[y[plan] == 3]
        assert drawn.size == 60
        hits += np.bincount(np.searchsorted(tail, drawn), minlength=20)
    # 200 epochs x 40 extra draws over 20 images: 400 each plus the 200 kept; sd of 400 draws ~ 19.5
    assert np.all(np.abs(hits - 600) < 100), hits


def test_repeat_factor_beyond_one_chunk():
    n = plans.CHUNK + 600_000  # more than one internal chunk
    y = np.zeros(n, dtype=np.int64)
    y[-1000:] = 1  # a rare class: f = 1000 / n, r = sqrt(0.1 / f) ~ 21.7
    s = RepeatFactorSampler(y, threshold=0.1, seed=0)
    plan = s.plan(0)
    counts = np.bincount(plan, minlength=n)
    r = np.sqrt(0.1 / (1000 / n))
    assert np.all(counts[: n - 1000] == 1)  # every head image exactly once, none dropped
    assert np.all((counts[-1000:] == np.floor(r)) | (counts[-1000:] == np.ceil(r)))
    assert abs(counts[-1000:].mean() - r) < 0.1
    assert len(s) == plan.size


def test_inverse_cdf_draws_every_index_including_the_last():
    w = np.arange(1, 5001, dtype=float)  # 5,000 distinct values: the inverse-CDF path
    plan = WeightedSampler(w, 2_000_000, seed=0).plan(0)
    counts = np.bincount(plan, minlength=w.size)
    expected = 2_000_000 * w / w.sum()
    assert counts[-1] > 0 and abs(counts[-1] - expected[-1]) < 6 * np.sqrt(expected[-1])
    assert plan.max() == w.size - 1
    low = slice(0, 500)  # the lightest weights are drawn in proportion too
    assert abs(counts[low].sum() - expected[low].sum()) < 6 * np.sqrt(expected[low].sum())
    top = slice(4000, 5000)
    assert abs(counts[top].sum() / expected[top].sum() - 1) < 0.01


def test_balanced_batches_reach_single_image_classes_and_boundary_sizes():
    y = np.repeat(np.arange(5), [50, 30, 10, 3, 1])
    for p in (5, 4):  # P = K and K - 1
        s = BalancedBatchSampler(y, p, 2, num_batches=400, seed=0)
        batches = np.asarray(list(s))
        picked = np.array([np.isin(np.arange(5), y[b]) for b in batches]).mean(0)
        np.testing.assert_allclose(picked, p / 5, atol=0.08)  # each class in P/K of the batches
        lone = batches[np.isin(batches, [93]).any(1)]  # the one image of class 4
        assert lone.size and all((b == 93).sum() == 2 for b in lone)  # M images: the one, twice


def test_single_image_classes_are_sampled():
    y = np.concatenate([np.zeros(1000, int), np.arange(1, 11)])  # ten classes with one image each
    plan = ClassBalancedSampler(y, 110_000, seed=0).plan(0)
    np.testing.assert_allclose(np.bincount(y[plan]) / plan.size, 1 / 11, atol=0.005)


# ------------------------------------------------------------------ metrics: hand-made cases
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


# ------------------------------------------------------------------ losses: defaults and schedules
def test_ldam_drw_from_the_registry_scales_by_30_and_defers_reweighting():
    counts = [500, 100, 20, 5]
    loss = make_loss("ldam_drw", counts, total_epochs=10)
    assert loss.s == 30.0 and loss.drw_epoch == 8  # the paper's s, on a cosine head
    logits = torch.tensor([[1.0, 0.5, -0.2, 0.1], [0.3, 0.2, 0.9, -1.0]])
    y = torch.tensor([3, 2])
    m = 1 / np.power(np.array(counts, float), 0.25)
    m = torch.tensor(m * 0.5 / m.max(), dtype=torch.float32)
    z = 30 * (logits - F.one_hot(y, 4) * m[y][:, None])
    for epoch, weighted in ((7, False), (8, True)):
        loss.set_epoch(epoch)
        beta = 0.9999
        w = (1 - beta) / (1 - beta ** np.array(counts, float))
        w = torch.tensor(w * 4 / w.sum(), dtype=torch.float32)
        expected = F.cross_entropy(z, y, weight=w if weighted else None)
        torch.testing.assert_close(loss(logits, y), expected)


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


# ------------------------------------------------------------------ distribution
def test_from_labels_counts_exactly_the_classes_seen():
    d = ClassDistribution.from_labels([0, 0, 1])
    assert d.num_classes == 2 and d.counts.tolist() == [2, 1]
    # Gini = sum_ij |n_i - n_j| / (2 K^2 mean) = 2 / (2 * 4 * 1.5)
    assert d.gini == pytest.approx(2 / 12)
    assert ClassDistribution.from_labels([0, 0, 1], num_classes=3).gini == pytest.approx(
        (1 + 2 + 1) * 2 / (2 * 9 * 1)
    )


def test_more_classes_than_sixteen_bits_hold():
    k = 70_000  # beyond uint16 class indices
    y = np.arange(k).repeat(2)
    g = plans.ClassGroups.from_labels(y)
    assert np.issubdtype(g.labels.dtype, np.integer) and g.labels.max() == k - 1
    plan = ClassBalancedSampler(y, 5 * k, seed=0).plan(0)
    assert np.unique(y[plan]).size > 0.99 * k  # P(class missed) = exp(-5)
    assert np.bincount(y[plan], minlength=k).max() < 30  # about 5 draws per class, none favoured


# ------------------------------------------------------------------ plans: the pure functions
@pytest.mark.parametrize("k", [255, 256, 257, 258, 65536, 65537])
def test_class_groups_at_dtype_boundaries(k):
    y = np.arange(k)[::-1].copy()  # the largest label first
    g = plans.ClassGroups.from_labels(y)
    assert g.num_classes == k and np.array_equal(g.labels.astype(np.int64), y)
    assert np.array_equal(y[g.order], np.arange(k))


def test_class_groups_are_immutable():
    g = plans.ClassGroups.from_labels([0, 1, 1])
    with pytest.raises(AttributeError):
        g.counts = np.array([5, 5])


def test_group_by_value_keeps_the_first_element():
    distinct, index = plans.group_by_value(np.array([5.0, 1.0, 1.0, 3.0]), 10)
    assert distinct.tolist() == [1.0, 3.0, 5.0] and index.tolist() == [2, 0, 0, 1]
    assert plans.group_by_value(np.arange(20.0), 10) is None


def test_check_class_probs_refuses_weight_on_empty_classes():
    g = plans.ClassGroups.from_labels([0, 0, 3], num_classes=4)  # classes 1 and 2 empty
    np.testing.assert_allclose(
        plans.check_class_probs(g, np.array([1.0, 0.0, 0.0, 3.0])), [0.25, 0, 0, 0.75]
    )
    with pytest.raises(ValueError, match=r"give weight to classes \[1\], which"):
        plans.check_class_probs(g, np.array([1.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="has 2 entries for 4 classes"):
        plans.check_class_probs(g, np.array([1.0, 1.0]))


@pytest.mark.parametrize("probs", [[1.0, 3.0], [0.2, 0.2, 0.6], [5.0, 1.0, 1.0, 1.0, 0.0]])
def test_alias_table_encodes_the_normalised_distribution(probs):
    p = np.asarray(probs)
    keep, alias = plans.alias_table(p)  # not normalised on purpose
    k = p.size
    implied = keep / k
    np.add.at(implied, alias, (1 - keep) / k)
    np.testing.assert_allclose(implied, p / p.sum(), atol=1e-12)


def test_weighted_with_replacement_beyond_one_chunk():
    w = np.arange(1, 5001, dtype=float)
    n = plans.CHUNK + 1000
    out = plans.weighted_with_replacement(w, n, np.random.default_rng(0))
    assert out.size == n and out.min() >= 0 and out.max() == w.size - 1
    tail = np.bincount(out[plans.CHUNK :], minlength=w.size)  # the last, partial chunk is drawn too
    assert tail.sum() == 1000


def test_weighted_without_replacement_counts_only_positive_weights():
    w = np.array([1.0, 0.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="from 2 with positive weight"):
        plans.weighted_without_replacement(w, 3, np.random.default_rng(0))
    out = plans.weighted_without_replacement(w, 2, np.random.default_rng(0))
    assert sorted(out.tolist()) == [0, 2]


def test_repeat_factors_formula_with_empty_and_single_image_classes():
    counts = np.array([98, 0, 1, 1])
    r = plans.repeat_factors(counts, 0.5)
    f = counts / 100
    assert r[1] == 0 and r[0] == 1.0
    np.testing.assert_allclose(r[2:], np.sqrt(0.5 / f[2:]))  # single-image classes repeat ~7 times
    y = np.repeat(np.arange(4), counts)
    plan = plans.repeat_factor_plan(
        plans.ClassGroups.from_labels(y, 4), 0.5, np.random.default_rng(0)
    )
    assert np.isin(np.flatnonzero(y == 2), plan).all()


@pytest.mark.parametrize("name", ["hybrid", "repeat_factor"])
def test_epochs_that_grow_classes_come_out_shuffled(name):
    y = np.repeat(np.arange(3), [600, 300, 30])
    s = (
        HybridSampler(y, seed=0)
        if name == "hybrid"
        else RepeatFactorSampler(y, threshold=0.5, seed=0)
    )
    cls = y[s.plan(0)]
    changes = np.mean(cls[1:] != cls[:-1])
    p = np.bincount(cls) / cls.size
    assert abs(changes - (1 - (p**2).sum())) < 0.05  # as often as in a random order
    assert not np.all(np.diff(s.plan(0)) >= 0)


def test_balanced_batches_skip_empty_classes():
    y = np.repeat([0, 1, 3], [20, 10, 5])  # class 2 has no images
    s = BalancedBatchSampler(y, 3, 2, num_batches=50, num_classes=4, seed=0)
    for batch in s:
        assert sorted(set(y[batch].tolist())) == [0, 1, 3]
    with pytest.raises(ValueError, match="exceeds the 3 non-empty classes"):
        BalancedBatchSampler(y, 4, 2, num_classes=4)


# ------------------------------------------------------------------ metrics: reports and states
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


# ------------------------------------------------------------------ losses: formulas and edges
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


@pytest.mark.parametrize("k", [1000, 8142])
def test_resizing_and_batch_samplers_at_many_classes(k):
    y = long_tail_labels(k, 40, 1)
    counts = np.bincount(y, minlength=k)
    hybrid = HybridSampler(y, seed=0)
    got = np.bincount(y[hybrid.plan(0)], minlength=k)
    assert np.array_equal(got, plans.hybrid_targets(counts, 0.8, 3.0))
    med, p25 = np.median(counts), np.percentile(counts, 25)
    assert np.all(got[counts > med] == np.maximum(1, np.round(0.8 * counts[counts > med])))
    assert np.all(got[counts < p25] == np.round(3 * counts[counts < p25]))
    rf = RepeatFactorSampler(y, threshold=0.001, seed=0)
    r = np.maximum(1, np.sqrt(0.001 / (counts / counts.sum())))
    per_image = np.bincount(rf.plan(0), minlength=y.size)
    assert np.all((per_image >= np.floor(r[y])) & (per_image <= np.ceil(r[y])))
    bb = BalancedBatchSampler(y, 32, 2, num_batches=200, seed=0)
    for batch in bb.plan(0):
        assert np.unique(y[batch]).size == 32


# ------------------------------------------------------------------ distribution: exports and edges
def test_group_rule_edges():
    from longtail.distribution import GroupRuleSpec

    GroupRuleSpec(rule="shots", many=20, few=20)  # few == many is allowed
    GroupRuleSpec(head=1.0, tail=0.0)
    GroupRuleSpec(head=0.5, tail=0.5)
    for kwargs in (
        {"head": 1.2, "tail": 0.0},
        {"head": 0.3, "tail": -0.1},
        {"head": 0.6, "tail": 0.5},
    ):
        with pytest.raises(ValueError, match="fractions"):
            GroupRuleSpec(**kwargs)


def test_quantile_groups_with_overlapping_fractions_and_ties():
    d = ClassDistribution.from_counts([30, 20, 10])
    assert d.with_grouping(head=0.5, tail=0.5).groups.tolist() == ["head", "head", "tail"]
    # a tie takes the group of its middle rank
    assert ClassDistribution.from_counts([9, 9, 1]).groups.tolist() == ["head", "head", "tail"]
    assert ClassDistribution.from_counts([10, 5, 5, 5, 1, 0]).groups.tolist() == [
        "head",
        "medium",
        "medium",
        "medium",
        "tail",
        "tail",
    ]


def test_statistics_at_their_edges():
    d = ClassDistribution.from_counts([50, 30, 20])
    assert d.pareto_share(0.01) == 0.5  # at least the largest class
    assert ClassDistribution.from_counts([7]).normalized_entropy == 1.0
    with pytest.raises(ValueError, match="level must be in"):
        d.level_keys(0)
    assert d.level_keys(1) == [("0",), ("1",), ("2",)]
    assert d.at_level(1).hierarchy is None


def test_to_dict_and_markdown_by_hand():
    flat = ClassDistribution.from_counts([30, 10, 3], ["a", "b", "c"])
    data = flat.to_dict()
    assert "levels" not in data
    assert data["grouping"] == {
        "rule": "quantile",
        "head": 1 / 3,
        "tail": 1 / 3,
        "many": 100,
        "few": 20,
    }
    assert data["groups"] == {
        "head": {"classes": ["a"], "samples": 30},
        "medium": {"classes": ["b"], "samples": 10},
        "tail": {"classes": ["c"], "samples": 3},
    }
    assert flat.to_json().startswith('{\n  "num_classes": 3')
    nested = ClassDistribution.from_counts(
        [3, 30, 10], ["c", "a", "b"], [("x", "p"), ("x", "q"), ("y", "r")]
    )
    md = nested.to_markdown()
    table = md[md.index("| class | count | share | group |") :].splitlines()[2:5]
    assert table == [
        "| a | 30 | 69.77% | head |",
        "| b | 10 | 23.26% | medium |",
        "| c | 3 | 6.98% | tail |",
    ]
    assert "| head | 1 | 30 |" in md and "| tail | 1 | 3 |" in md
    assert "Level 1 (2 classes, imbalance ratio 3.3):" in md
    assert "| x | 33 | 76.74% | 2 | 10.0 |" in md and "| y | 10 | 23.26% | 1 | 1.0 |" in md
    assert "| q | 30 | 69.77% | 1 | 1.0 |" in md


def test_power_class_probabilities_leave_empty_classes_out():
    np.testing.assert_allclose(plans.power_class_probs(np.array([5, 0, 2]), 0.0), [0.5, 0, 0.5])
    np.testing.assert_allclose(plans.power_class_probs(np.array([9, 0, 4]), 0.5), [3 / 5, 0, 2 / 5])
    y = np.array([0, 0, 2])
    assert set(y[ClassBalancedSampler(y, 100, num_classes=4, seed=0).plan(0)]) == {0, 2}


def test_macro_f1_keeps_a_class_predicted_once_without_test_samples():
    y, p = np.array([0, 0, 1]), np.array([0, 2, 1])
    rep = evaluate(p, y, 3)
    assert rep.macro_f1 == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert rep.macro_f1 == pytest.approx((2 / 3 + 1 + 0) / 3)


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


def test_weighted_ce_by_scheme_with_an_empty_class():
    loss = make_loss("weighted_ce", [8, 0, 2])
    w = np.array([1 / 8, 0, 1 / 2])
    torch.testing.assert_close(loss.weight, torch.tensor(w * 3 / w.sum(), dtype=torch.float32))
    smooth = make_loss("weighted_ce", [8, 2], scheme="smooth_inverse", alpha=2)
    w = np.array([1 / 10, 1 / 4])
    torch.testing.assert_close(smooth.weight, torch.tensor(w * 2 / w.sum(), dtype=torch.float32))
    with pytest.raises(ValueError, match="would be ignored"):
        make_loss("weighted_ce", [8, 2], alpha=2)


def test_pareto_share_and_entropy_by_hand():
    d = ClassDistribution.from_counts([40, 30, 10, 5, 5, 4, 3, 2, 1, 0])
    assert d.pareto_share() == pytest.approx(70 / 100)  # the top 20% of 10 classes: 2
    with pytest.raises(ValueError, match="top_fraction"):
        d.pareto_share(0)
    with pytest.raises(ValueError, match="top_fraction"):
        d.pareto_share(1.01)
    assert d.pareto_share(1) == 1.0
    e = ClassDistribution.from_counts([5, 5, 0]).normalized_entropy
    assert e == pytest.approx(np.log(2) / np.log(3))  # 0 log 0 = 0 for the empty class


def test_within_parent_imbalance_levels():
    d = ClassDistribution.from_counts(
        [4, 2, 6], ["a", "b", "c"], [("x", "p"), ("x", "p"), ("y", "q")]
    )
    assert d.within_parent_imbalance(2) == {"p": 2.0, "q": 1.0}
    for level in (0, 3):
        with pytest.raises(ValueError, match=rf"level must be in 1\.\.2, got {level}"):
            d.within_parent_imbalance(level)


def test_smoothed_cross_entropy_checks_targets_and_ldam_takes_small_scales():
    logits = torch.randn(4, 3)
    loss = CrossEntropyLoss(label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        loss(logits, torch.tensor([0, 1, 2, 3]))  # batch of 4, 3 classes
    with pytest.raises(ValueError, match="shape"):
        loss(torch.randn(4), torch.tensor([0, 1, 2, 0]))
    for s in (1.0, 0.5):  # scales below 30 are legitimate (a linear head)
        LDAMLoss([10, 5], s=s, max_margin=0.2)
