"""Level-balanced sampling over a class tree: frequencies against the formula, flat trees,
DDP shards, and the strategy string."""

import math

import numpy as np
import pytest

from longtail.distribution import ClassDistribution
from longtail.sampling import ClassBalancedSampler, HierarchicalSampler, PowerSampler
from longtail.sampling.plans import hierarchical_class_probs
from longtail.strategies import build_strategy, parse_strategy

# three levels: a rare parent with many children, a common parent with one, one in between
LEAVES = {  # leaf: (top, middle, images)
    "r1": ("R", "R1", 5),
    "r2": ("R", "R1", 10),
    "r3": ("R", "R1", 20),
    "r4": ("R", "R2", 3),
    "r5": ("R", "R2", 7),
    "c1": ("C", "C1", 1000),
    "m1": ("M", "M1", 200),
    "m2": ("M", "M1", 50),
    "m3": ("M", "M2", 400),
}
NAMES = list(LEAVES)
COUNTS = np.array([n for _, _, n in LEAVES.values()])
LABELS = np.repeat(np.arange(len(NAMES)), COUNTS)
TREE = [
    [(top,) for top, _, _ in LEAVES.values()],
    [(top, mid) for top, mid, _ in LEAVES.values()],
    [(top, mid, leaf) for leaf, (top, mid, _) in LEAVES.items()],
]


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
    probs = hierarchical_class_probs(COUNTS, TREE, ["uniform", "uniform", "sqrt"])
    np.testing.assert_allclose(probs, by_hand_uniform_uniform_sqrt(), rtol=1e-12)
    inst = hierarchical_class_probs(COUNTS, TREE, ["instance"] * 3)
    np.testing.assert_allclose(inst, COUNTS / COUNTS.sum(), rtol=1e-12)  # instance-balanced


def test_a_million_draws_match_every_level_within_three_thousandths():
    n = 1_000_000
    sampler = HierarchicalSampler(LABELS, n, tree=TREE, levels="uniform/uniform/sqrt", seed=0)
    drawn = LABELS[np.fromiter(iter(sampler), dtype=np.int64, count=n)]
    freq = np.bincount(drawn, minlength=len(NAMES)) / n
    want = by_hand_uniform_uniform_sqrt()
    # tolerance 0.003: over 6 standard deviations of a frequency near 1/3 at 10^6 draws
    assert np.abs(freq - want).max() < 0.003
    for level in TREE[:2]:  # each ancestor's share, from the same draws
        keys = sorted(set(level))
        got = [freq[[k == key for k in level]].sum() for key in keys]
        exp = [want[[k == key for k in level]].sum() for key in keys]
        np.testing.assert_allclose(got, exp, atol=0.003)
    tops = {key: freq[[k == key for k in TREE[0]]].sum() for key in set(TREE[0])}
    assert all(abs(v - 1 / 3) < 0.003 for v in tops.values())  # a parent is a parent


def test_a_flat_tree_is_class_balanced_or_square_root_sampling():
    flat = [[(name,) for name in NAMES]]
    uniform = HierarchicalSampler(LABELS, tree=flat, levels="uniform", seed=1)
    np.testing.assert_allclose(uniform.class_probs(0), ClassBalancedSampler(LABELS).class_probs(0))
    sqrt = HierarchicalSampler(LABELS, tree=flat, levels=["sqrt"], seed=1)
    np.testing.assert_allclose(sqrt.class_probs(0), PowerSampler(LABELS, q=0.5).class_probs(0))
    same = ClassBalancedSampler(LABELS, seed=1)
    assert list(HierarchicalSampler(LABELS, seed=1)) == list(same)  # no tree: flat, uniform


def test_rank_shards_are_disjoint_and_cover_the_plan():
    shards = [
        list(HierarchicalSampler(LABELS, 1000, tree=TREE, seed=3, num_replicas=3, rank=r))
        for r in range(3)
    ]
    whole = HierarchicalSampler(LABELS, 1000, tree=TREE, seed=3, num_replicas=1).plan(0)
    assert sorted(sum(shards, [])) == sorted(np.resize(whole, 1002).tolist())
    assert [len(s) for s in shards] == [334, 334, 334]


def test_the_strategy_string_reads_the_tree_of_the_data():
    dist = ClassDistribution.from_counts(
        COUNTS, class_names=NAMES, hierarchy=[(top, mid) for top, mid, _ in LEAVES.values()]
    )
    assert dist.tree_paths() == TREE
    built = build_strategy(
        parse_strategy("hierarchical[levels=uniform/uniform/sqrt]+ce"),
        LABELS,
        COUNTS,
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
            LABELS,
            COUNTS,
            seed=0,
            epochs=2,
            batch_size=8,
            tree=dist.tree_paths(),
        )
    with pytest.raises(ValueError, match="level rule must be one of uniform, sqrt, instance"):
        hierarchical_class_probs(COUNTS, TREE, ["uniform", "square", "sqrt"])
