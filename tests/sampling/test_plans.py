"""The sampling plans, pure functions of (labels or counts, parameters, seed, epoch): each against its formula, at dtype boundaries and with empty or single-image classes."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import long_tail_labels
from longtail.sampling import (
    BalancedBatchSampler,
    ClassBalancedSampler,
    WeightedSampler,
    plans,
)


@pytest.mark.parametrize("k", [1000, 8142])
def test_class_groups_hold_only_their_class_beyond_256_classes(k):
    y = long_tail_labels(k, 60, 1)
    g = plans.ClassGroups.from_labels(y)
    assert g.num_classes == k and g.counts.tolist() == np.bincount(y, minlength=k).tolist()
    owner = np.repeat(np.arange(k), g.counts)
    assert np.array_equal(y[g.order], owner)  # class j's slice holds class j's samples, all of them
    assert sorted(g.order.tolist()) == list(range(y.size))


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


def test_balanced_batches_skip_empty_classes():
    y = np.repeat([0, 1, 3], [20, 10, 5])  # class 2 has no images
    s = BalancedBatchSampler(y, 3, 2, num_batches=50, num_classes=4, seed=0)
    for batch in s:
        assert sorted(set(y[batch].tolist())) == [0, 1, 3]
    with pytest.raises(ValueError, match="exceeds the 3 non-empty classes"):
        BalancedBatchSampler(y, 4, 2, num_classes=4)


def test_power_class_probabilities_leave_empty_classes_out():
    np.testing.assert_allclose(plans.power_class_probs(np.array([5, 0, 2]), 0.0), [0.5, 0, 0.5])
    np.testing.assert_allclose(plans.power_class_probs(np.array([9, 0, 4]), 0.5), [3 / 5, 0, 2 / 5])
    y = np.array([0, 0, 2])
    assert set(y[ClassBalancedSampler(y, 100, num_classes=4, seed=0).plan(0)]) == {0, 2}
