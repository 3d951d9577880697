"""Samplers: class frequencies (fixed seeds, stated tolerances), determinism, DDP sharding, errors."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from helpers import (
    SCENE_COUNTS,
    SCENE_LABELS,
    SCENE_NAMES,
    SCENE_TREE,
    SCENES,
    long_tail_labels,
)
from longtail.distribution import ClassDistribution
from longtail.errors import LongtailError
from longtail.sampling import (
    BalancedBatchSampler,
    ClassBalancedSampler,
    CurriculumSampler,
    HierarchicalSampler,
    HybridSampler,
    InstanceSampler,
    PowerSampler,
    ProgressiveSampler,
    RepeatFactorSampler,
    WeightedSampler,
    plans,
    shard,
)
from longtail.sampling.plans import (
    group_by_value,
    hierarchical_class_probs,
    hybrid_targets,
    repeat_factors,
)
from longtail.strategies import build_strategy, parse_strategy
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


def by_hand_uniform_uniform_sqrt() -> np.ndarray:
    """p(leaf) for levels uniform / uniform / sqrt, written out from the tree above."""
    s = math.sqrt
    r1 = s(5) + s(10) + s(20)
    r2 = s(3) + s(7)
    m1 = s(200) + s(50)
    third, half = 1 / 3, 1 / 2
    return np.array(
        [
            third * half * s(5) / r1,
            third * half * s(10) / r1,
            third * half * s(20) / r1,
            third * half * s(3) / r2,
            third * half * s(7) / r2,
            third * 1.0 * 1.0,  # the common parent's only child takes all its mass
            third * half * s(200) / m1,
            third * half * s(50) / m1,
            third * half * 1.0,
        ]
    )


def test_the_plan_follows_the_formula_written_out():
    probs = hierarchical_class_probs(SCENE_COUNTS, SCENE_TREE, ["uniform", "uniform", "sqrt"])
    np.testing.assert_allclose(probs, by_hand_uniform_uniform_sqrt(), rtol=1e-12)
    inst = hierarchical_class_probs(SCENE_COUNTS, SCENE_TREE, ["instance"] * 3)
    np.testing.assert_allclose(
        inst, SCENE_COUNTS / SCENE_COUNTS.sum(), rtol=1e-12
    )  # instance-balanced


def test_a_million_draws_match_every_level_within_three_thousandths():
    n = 1_000_000
    sampler = HierarchicalSampler(
        SCENE_LABELS, n, tree=SCENE_TREE, levels="uniform/uniform/sqrt", seed=0
    )
    drawn = SCENE_LABELS[np.fromiter(iter(sampler), dtype=np.int64, count=n)]
    freq = np.bincount(drawn, minlength=len(SCENE_NAMES)) / n
    want = by_hand_uniform_uniform_sqrt()
    # tolerance 0.003: over 6 standard deviations of a frequency near 1/3 at 10^6 draws
    assert np.abs(freq - want).max() < 0.003
    for level in SCENE_TREE[:2]:  # each ancestor's share, from the same draws
        keys = sorted(set(level))
        got = [freq[[k == key for k in level]].sum() for key in keys]
        exp = [want[[k == key for k in level]].sum() for key in keys]
        np.testing.assert_allclose(got, exp, atol=0.003)
    tops = {key: freq[[k == key for k in SCENE_TREE[0]]].sum() for key in set(SCENE_TREE[0])}
    assert all(abs(v - 1 / 3) < 0.003 for v in tops.values())  # a parent is a parent


def test_a_flat_tree_is_class_balanced_or_square_root_sampling():
    flat = [[(name,) for name in SCENE_NAMES]]
    uniform = HierarchicalSampler(SCENE_LABELS, tree=flat, levels="uniform", seed=1)
    np.testing.assert_allclose(
        uniform.class_probs(0), ClassBalancedSampler(SCENE_LABELS).class_probs(0)
    )
    sqrt = HierarchicalSampler(SCENE_LABELS, tree=flat, levels=["sqrt"], seed=1)
    np.testing.assert_allclose(
        sqrt.class_probs(0), PowerSampler(SCENE_LABELS, q=0.5).class_probs(0)
    )
    same = ClassBalancedSampler(SCENE_LABELS, seed=1)
    assert list(HierarchicalSampler(SCENE_LABELS, seed=1)) == list(same)  # no tree: flat, uniform


def test_rank_shards_are_disjoint_and_cover_the_plan():
    shards = [
        list(
            HierarchicalSampler(SCENE_LABELS, 1000, tree=SCENE_TREE, seed=3, num_replicas=3, rank=r)
        )
        for r in range(3)
    ]
    whole = HierarchicalSampler(SCENE_LABELS, 1000, tree=SCENE_TREE, seed=3, num_replicas=1).plan(0)
    assert sorted(sum(shards, [])) == sorted(np.resize(whole, 1002).tolist())
    assert [len(s) for s in shards] == [334, 334, 334]


def test_the_strategy_string_reads_the_tree_of_the_data():
    dist = ClassDistribution.from_counts(
        SCENE_COUNTS,
        class_names=SCENE_NAMES,
        hierarchy=[(top, mid) for top, mid, _ in SCENES.values()],
    )
    assert dist.tree_paths() == SCENE_TREE
    built = build_strategy(
        parse_strategy("hierarchical[levels=uniform/uniform/sqrt]+ce"),
        SCENE_LABELS,
        SCENE_COUNTS,
        seed=0,
        epochs=2,
        batch_size=8,
        tree=dist.tree_paths(),
    )
    probs = built.sampler.sampler.class_probs(0)
    np.testing.assert_allclose(probs, by_hand_uniform_uniform_sqrt(), rtol=1e-12)
    with pytest.raises(ValueError, match="3 levels but 2 rules"):
        build_strategy(
            parse_strategy("hierarchical[levels=uniform/sqrt]+ce"),
            SCENE_LABELS,
            SCENE_COUNTS,
            seed=0,
            epochs=2,
            batch_size=8,
            tree=dist.tree_paths(),
        )
    with pytest.raises(ValueError, match="level rule must be one of uniform, sqrt, instance"):
        hierarchical_class_probs(SCENE_COUNTS, SCENE_TREE, ["uniform", "square", "sqrt"])


def test_a_samplers_len_runs_no_collective(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(
        torch.distributed, "broadcast_object_list", lambda box, src: calls.append(box)
    )
    labels = np.repeat(np.arange(3), [50, 10, 2])
    sampler = RepeatFactorSampler(labels, threshold=0.3, num_replicas=2, rank=0)
    with pytest.raises(LongtailError, match="call set_epoch"):
        len(sampler)
    assert calls == []
    sampler.set_epoch(0)  # every rank calls it: the seed is agreed here
    assert len(calls) == 1
    n = len(sampler)
    assert len(calls) == 1 and n == len(list(sampler)) and len(calls) == 1
