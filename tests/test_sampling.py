"""Samplers: class frequencies (fixed seeds, stated tolerances), determinism, DDP sharding, errors."""

import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from longtail.errors import LongtailError
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
    shard,
)
from longtail.sampling.plans import group_by_value, hybrid_targets, repeat_factors
from longtail.strategies.registry import make_sampler

COUNTS = np.array([2000, 600, 200, 60, 20])
LABELS = np.repeat(np.arange(5), COUNTS)
N = LABELS.size
TOL = 0.01  # absolute tolerance on a class's share; 3-4 standard errors at the draw counts used


def shares(sampler, labels=LABELS, epochs=1):
    idx = []
    for e in range(epochs):
        sampler.set_epoch(e)
        idx.append(np.fromiter(iter(sampler), dtype=np.int64))
    idx = np.concatenate(idx)
    return np.bincount(labels[idx], minlength=COUNTS.size) / idx.size


FACTORIES = {
    "instance": lambda **kw: InstanceSampler(LABELS, **kw),
    "weighted": lambda **kw: WeightedSampler(labels=LABELS, **kw),
    "weighted_samples": lambda **kw: WeightedSampler(np.linspace(1, 2, N), **kw),
    "weighted_noreplace": lambda **kw: WeightedSampler(
        np.linspace(1, 2, N), num_samples=1000, replacement=False, **kw
    ),
    "class_balanced": lambda **kw: ClassBalancedSampler(LABELS, **kw),
    "class_balanced_cycle": lambda **kw: ClassBalancedSampler(LABELS, cycle=True, **kw),
    "sqrt": lambda **kw: PowerSampler(LABELS, q=0.5, **kw),
    "progressive": lambda **kw: ProgressiveSampler(LABELS, total_epochs=4, **kw),
    "hybrid": lambda **kw: HybridSampler(LABELS, **kw),
    "curriculum": lambda **kw: CurriculumSampler(LABELS, **kw),
    "repeat_factor": lambda **kw: RepeatFactorSampler(LABELS, threshold=0.3, **kw),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_plan_depends_on_seed_and_epoch_only(name):
    a, b, c = FACTORIES[name](seed=3), FACTORIES[name](seed=3), FACTORIES[name](seed=4)
    first = list(a)
    assert first == list(b)
    assert first != list(c)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("drop_last", [False, True])
def test_ddp_shards_are_disjoint_equal_and_rebuild_the_plan(name, drop_last):
    replicas = 4
    full = FACTORIES[name](seed=7)
    full.set_epoch(2)
    plan = full.plan(2)
    shards = []
    for rank in range(replicas):
        s = FACTORIES[name](seed=7, num_replicas=replicas, rank=rank, drop_last=drop_last)
        s.set_epoch(2)
        got = list(s)
        assert len(got) == len(s)
        shards.append(got)
    assert len({len(x) for x in shards}) == 1
    per = len(shards[0])
    interleaved = np.stack(shards, axis=1).reshape(
        -1
    )  # position p of the global plan -> rank p % R
    if drop_last:
        assert per == len(plan) // replicas
        assert np.array_equal(interleaved, plan[: per * replicas])
    else:
        assert per == -(-len(plan) // replicas)
        assert np.array_equal(interleaved[: len(plan)], plan)
        assert np.array_equal(interleaved[len(plan) :], plan[: per * replicas - len(plan)])
    if name in ("instance", "weighted_noreplace"):  # plans without repeats: ranks share no index
        core = [set(x[: len(plan) // replicas]) for x in shards]
        assert all(
            core[i].isdisjoint(core[j]) for i in range(replicas) for j in range(i + 1, replicas)
        )


def test_instance_sampler_is_a_permutation():
    assert sorted(InstanceSampler(LABELS, seed=1)) == list(range(N))


def test_weighted_sampler_inverse_scheme_balances_classes():
    s = WeightedSampler(labels=LABELS, num_samples=100_000, scheme="inverse", seed=0)
    np.testing.assert_allclose(shares(s), 0.2, atol=TOL)
    s = WeightedSampler(labels=LABELS, num_samples=100_000, scheme="sqrt_inverse", seed=0)
    expected = np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()
    np.testing.assert_allclose(shares(s), expected, atol=TOL)


def test_weighted_sampler_matches_torch_weighted_random_sampler():
    rng = np.random.default_rng(0)
    weights = rng.random(50) ** 3
    ours = np.bincount(list(WeightedSampler(weights, 200_000, seed=0)), minlength=50) / 200_000
    g = torch.Generator().manual_seed(0)
    theirs = (
        np.bincount(
            list(WeightedRandomSampler(weights.tolist(), 200_000, generator=g)), minlength=50
        )
        / 200_000
    )
    expected = weights / weights.sum()
    np.testing.assert_allclose(ours, expected, atol=0.004)
    np.testing.assert_allclose(ours, theirs, atol=0.006)


def test_weighted_without_replacement_matches_torch_first_pick_distribution():
    weights = np.array([1.0, 2.0, 3.0, 4.0])
    first = [
        WeightedSampler(weights, 2, replacement=False, seed=s).plan(0)[0] for s in range(20_000)
    ]
    np.testing.assert_allclose(
        np.bincount(first, minlength=4) / 20_000, weights / weights.sum(), atol=TOL
    )
    second = np.array(
        [WeightedSampler(weights, 4, replacement=False, seed=s).plan(0) for s in range(200)]
    )
    assert all(sorted(row) == [0, 1, 2, 3] for row in second)  # no repeats


def test_weighted_sampler_beyond_torch_category_limit():
    weights = np.ones(2**24 + 1)
    weights[-1] = 1e6  # a single heavy sample: about 5.6% of draws
    with pytest.raises(RuntimeError):
        list(WeightedRandomSampler(torch.from_numpy(weights), 10))
    draws = WeightedSampler(weights, 20_000, seed=0).plan(0)
    assert draws.max() <= 2**24
    assert abs((draws == 2**24).mean() - 1e6 / (2**24 + 1e6)) < 0.006


@pytest.mark.parametrize("cycle", [False, True])
def test_class_balanced_sampler(cycle):
    s = ClassBalancedSampler(LABELS, num_samples=100_000, seed=0, cycle=cycle)
    np.testing.assert_allclose(shares(s), 0.2, atol=TOL)


def test_class_balanced_cycle_uses_every_image_before_repeating():
    s = ClassBalancedSampler(LABELS, num_samples=N, seed=0, cycle=True)
    idx = np.array(list(s))
    for j, n in enumerate(COUNTS):
        drawn = idx[LABELS[idx] == j]
        unique = np.unique(drawn).size
        assert unique == min(n, drawn.size)  # no duplicate until all n images have been drawn


@pytest.mark.parametrize("q", [1.0, 0.5, 0.0])
def test_power_sampler(q):
    s = PowerSampler(LABELS, num_samples=100_000, q=q, seed=0)
    expected = COUNTS**q / (COUNTS**q).sum()
    np.testing.assert_allclose(shares(s), expected, atol=TOL)


def test_progressive_sampler_interpolates():
    s = ProgressiveSampler(LABELS, num_samples=100_000, total_epochs=4, seed=0)
    ib, cb = COUNTS / COUNTS.sum(), np.full(5, 0.2)
    for epoch, t in [(0, 0.0), (1, 0.25), (4, 1.0), (9, 1.0)]:
        np.testing.assert_allclose(_shares_at(s, epoch), (1 - t) * ib + t * cb, atol=TOL)


def _shares_at(sampler, epoch):
    sampler.set_epoch(epoch)
    idx = np.array(list(sampler))
    return np.bincount(LABELS[idx], minlength=5) / idx.size


def test_hybrid_sampler_sizes_are_exact():
    s = HybridSampler(LABELS, under_ratio=0.8, over_max=3, seed=0)
    # median 200, 25th percentile 60: 2000, 600 -> 80%; 200, 60 kept; 20 -> 60
    expected = [1600, 480, 200, 60, 60]
    assert len(s) == sum(expected)
    for epoch in range(3):
        s.set_epoch(epoch)
        idx = np.array(list(s))
        assert np.bincount(LABELS[idx]).tolist() == expected
        big = idx[LABELS[idx] == 0]
        assert np.unique(big).size == big.size  # under-sampling is without replacement
        small = idx[LABELS[idx] == 4]
        assert set(small.tolist()) == set(
            np.flatnonzero(LABELS == 4).tolist()
        )  # every tail image kept
    s.set_epoch(0)
    first = set(list(s))
    s.set_epoch(1)
    assert set(list(s)) != first  # a fresh selection each epoch


def test_repeat_factor_sampler():
    t = 0.3
    s = RepeatFactorSampler(LABELS, threshold=t, seed=0)
    f = COUNTS / N
    r = np.maximum(1, np.sqrt(t / f))
    lengths, totals = [], np.zeros(5)
    for epoch in range(20):
        s.set_epoch(epoch)
        idx = np.array(list(s))
        assert len(s) == idx.size
        lengths.append(idx.size)
        totals += np.bincount(LABELS[idx], minlength=5)
    np.testing.assert_allclose(totals / 20, COUNTS * r, rtol=0.03)
    assert len(set(lengths)) > 1  # stochastic rounding changes the epoch length


def test_curriculum_sampler_follows_validation_and_resumes():
    s = CurriculumSampler(
        LABELS,
        num_samples=100_000,
        base="inverse",
        temperature=1.0,
        max_ratio=100,
        eps=0.05,
        seed=0,
    )
    np.testing.assert_allclose(shares(s), 0.2, atol=TOL)  # inverse base: balanced before any update
    perf = np.array([0.95, 0.9, 0.5, 0.2, 0.05])
    s.update(perf)
    a = 1 / (perf + 0.05)
    np.testing.assert_allclose(_shares_at(s, 1), a / a.sum(), atol=TOL)
    # clipping: the adjustment spread is at most max_ratio
    clipped = CurriculumSampler(LABELS, max_ratio=2.0, eps=0.05)
    clipped.update(perf)
    adj = clipped.current_weights / clipped.base
    assert adj.max() / adj.min() == pytest.approx(2.0)
    # moving average
    m = CurriculumSampler(LABELS, momentum=0.5)
    m.update(np.full(5, 0.2))
    m.update(np.full(5, 0.6))
    np.testing.assert_allclose(m.performance, 0.4)
    # resume: a fresh sampler loaded from the state gives the same plan
    s.set_epoch(3)
    resumed = CurriculumSampler(
        LABELS, num_samples=100_000, base="inverse", max_ratio=100, eps=0.05, seed=0
    )
    resumed.load_state_dict(s.state_dict())
    assert list(resumed) == list(s)
    with pytest.raises(ValueError, match="infinite"):
        s.update([0.1, np.inf, 0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="one value per class"):
        s.update([0.1, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        s.update([0.1, 2.0, 0.3, 0.2, 0.1])


def test_balanced_batch_sampler():
    s = BalancedBatchSampler(LABELS, classes_per_batch=3, samples_per_class=4, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == N // 12
    seen_classes = np.zeros(5)
    for batch in batches:
        y = LABELS[batch]
        classes, per = np.unique(y, return_counts=True)
        assert classes.size == 3 and set(per.tolist()) == {4}
        assert len(set(batch)) == 12
        seen_classes[classes] += 1
    np.testing.assert_allclose(seen_classes / seen_classes.sum(), 0.2, atol=0.03)
    ranks = [
        list(BalancedBatchSampler(LABELS, 3, 4, seed=0, num_replicas=2, rank=r)) for r in range(2)
    ]
    assert ranks[0] == batches[0::2][: len(ranks[0])] and ranks[1][0] == batches[1]


def test_make_sampler_registry():
    assert isinstance(make_sampler("sqrt", LABELS), PowerSampler)
    assert isinstance(make_sampler("progressive", LABELS, total_epochs=3), ProgressiveSampler)
    assert isinstance(make_sampler("hybrid", LABELS, total_epochs=3), HybridSampler)
    with pytest.raises(ValueError, match="total_epochs"):
        make_sampler("progressive", LABELS)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("smote", LABELS)


def test_sampler_accepts_datasets_and_tensors():
    class DS:
        targets = torch.tensor([0, 1, 1, 2])

    assert len(ClassBalancedSampler(DS(), seed=0)) == 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ClassBalancedSampler([]), "empty"),
        (lambda: ClassBalancedSampler([0, -1]), "negative"),
        (lambda: ClassBalancedSampler([0.5, 1]), "integer"),
        (lambda: WeightedSampler([1.0, -1.0]), ">= 0"),
        (lambda: WeightedSampler([1.0, float("nan")]), "nan"),
        (lambda: WeightedSampler([0.0, 0.0]), "all zero"),
        (lambda: WeightedSampler([1.0], labels=[0]), "either"),
        (lambda: WeightedSampler([1.0, 0.0], 2, replacement=False), "positive weight"),
        (lambda: ClassBalancedSampler(LABELS, num_samples=0), "positive integer"),
        (lambda: ClassBalancedSampler(LABELS, num_replicas=2, rank=2), "rank"),
        (lambda: HybridSampler(LABELS, under_ratio=0), "under_ratio"),
        (lambda: RepeatFactorSampler(LABELS, threshold=0), "threshold"),
        (lambda: BalancedBatchSampler(LABELS, 6, 2), "exceeds"),
        (lambda: CurriculumSampler(LABELS, max_ratio=0.5), "max_ratio"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_shard_pads_by_wrapping():
    plan = np.arange(5)
    assert shard(plan, 4, 0).tolist() == [0, 4]
    assert shard(plan, 4, 1).tolist() == [1, 0]
    assert shard(plan, 4, 3, drop_last=True).tolist() == [3]


def test_weighted_sampler_inverse_cdf_path_for_many_distinct_weights():
    weights = np.linspace(1.0, 3.0, 10_000)  # 10,000 distinct values: no grouping by value
    s = WeightedSampler(weights, 200_000, seed=0)
    assert s.groups is None
    buckets = np.bincount(s.plan(0) // 1000, minlength=10) / 200_000
    expected = weights.reshape(10, 1000).sum(1) / weights.sum()
    np.testing.assert_allclose(buckets, expected, atol=TOL)


def test_a_repeat_factor_threshold_above_one_is_refused():
    """``threshold <= 1`` -> ``<= 2``: a threshold in (1, 2] must be refused."""
    counts = np.array([90, 10])
    with pytest.raises(LongtailError, match=r"threshold must lie in \(0, 1\]"):
        repeat_factors(counts, 1.5)
    np.testing.assert_allclose(repeat_factors(counts, 1.0), [np.sqrt(1 / 0.9), np.sqrt(10)])


def test_the_narrow_index_holds_every_distinct_value():
    """``distinct.size - 1`` -> ``- 2``: with 2^8 + 1 distinct values the index needs uint16."""
    values = np.arange(257, dtype=np.float64)[::-1].copy()
    distinct, index = group_by_value(values, 1000)
    assert distinct.size == 257 and index.dtype == np.uint16
    np.testing.assert_array_equal(distinct[index], values)
    small_distinct, small = group_by_value(np.arange(256.0), 1000)
    assert small.dtype == np.uint8 and small.max() == 255


def test_hybrid_keeps_at_least_one_image_of_an_under_sampled_class():
    """``maximum(1, ...)`` -> ``maximum(2, ...)``: the floor is one image, not two."""
    counts = np.array([100, 60, 10, 5, 1])
    targets = hybrid_targets(counts, under_ratio=0.001, over_max=2.0)
    assert targets[:2].tolist() == [1, 1]  # round(0.1) and round(0.06) would be 0
    assert targets[-1] == 2 and targets[2] == 10
