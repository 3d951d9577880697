import json
import math

import numpy as np
import pytest
import torch

from longtail.distribution import ClassDistribution
from longtail.sampling import (
    ClassBalancedSampler,
    plans,
)


def test_counts_keep_empty_classes_and_accept_torch():
    d = ClassDistribution.from_labels(torch.tensor([0, 0, 2, 2, 2]), num_classes=4)
    assert d.counts.tolist() == [2, 0, 3, 0]
    assert d.total == 5 and d.num_classes == 4
    assert d.empty_classes == ["1", "3"]
    assert d.imbalance_ratio == pytest.approx(1.5)  # over non-empty classes only


def test_statistics_hand_computed():
    d = ClassDistribution.from_counts([1, 2, 3, 4, 10], class_names=list("abcde"))
    assert d.imbalance_ratio == 10.0
    # top ceil(0.2*5)=1 class holds 10/20
    assert d.pareto_share(0.2) == pytest.approx(0.5)
    assert d.pareto_share(0.4) == pytest.approx(14 / 20)
    # Gini = sum_ij |xi-xj| / (2 K^2 mean)
    x = np.array([1, 2, 3, 4, 10.0])
    gini = np.abs(x[:, None] - x[None, :]).sum() / (2 * 25 * x.mean())
    assert d.gini == pytest.approx(gini)
    p = x / x.sum()
    assert d.normalized_entropy == pytest.approx(-(p * np.log(p)).sum() / math.log(5))


def test_balanced_data_has_zero_gini_and_unit_entropy():
    d = ClassDistribution.from_counts([7, 7, 7])
    assert d.gini == pytest.approx(0.0)
    assert d.normalized_entropy == pytest.approx(1.0)
    assert d.imbalance_ratio == 1.0


def test_quantile_groups_thirds():
    d = ClassDistribution.from_counts([5, 100, 50, 1, 20, 10, 200, 2, 30, 7])
    g = d.groups
    # sorted desc: 200(6),100(1),50(2) | 30(8),20(4),10(5),7(9) | 5(0),2(7),1(3)
    assert set(np.flatnonzero(g == "head")) == {6, 1, 2}
    assert set(np.flatnonzero(g == "medium")) == {8, 4, 5, 9}
    assert set(np.flatnonzero(g == "tail")) == {0, 7, 3}


def test_shot_groups_imagenet_lt_convention():
    d = ClassDistribution.from_counts([150, 101, 100, 20, 19, 3]).with_grouping(rule="shots")
    assert d.groups.tolist() == ["head", "head", "medium", "medium", "tail", "tail"]
    d2 = d.with_grouping(rule="shots", many=10, few=5)
    assert d2.groups.tolist() == ["head"] * 5 + ["tail"]


def test_hierarchy_levels_roll_up_and_within_parent_ratio():
    # Million-AID style: 'lake' is a leaf at depth 2 beside depth-3 leaves.
    hierarchy = [("agri", "arable"), ("agri", "arable"), ("agri", "orchard_l2"), ("water",)]
    d = ClassDistribution.from_counts(
        [100, 10, 40, 7], ["dry_field", "paddy", "orchard", "lake"], hierarchy
    )
    assert d.num_levels == 3
    l1 = d.at_level(1)
    assert dict(zip(l1.class_names, l1.counts.tolist())) == {"agri": 150, "water": 7}
    l2 = d.at_level(2)
    assert dict(zip(l2.class_names, l2.counts.tolist())) == {
        "arable": 110,
        "orchard_l2": 40,
        "lake": 7,
    }
    assert l2.hierarchy == (("agri",), ("agri",), ("water",))
    assert d.within_parent_imbalance(1) == {"agri": pytest.approx(110 / 40), "water": 1.0}
    assert d.within_parent_imbalance(2)["arable"] == pytest.approx(10.0)
    assert d.level_names(2)[3] == "lake"


def test_to_dict_json_and_markdown():
    d = ClassDistribution.from_counts(
        [30, 3, 0], ["a", "b", "c"], hierarchy=[("x",), ("x",), ("y",)]
    )
    data = json.loads(d.to_json())
    assert data["classes"][2] == {"index": 2, "name": "c", "count": 0, "group": "tail"}
    assert data["levels"]["1"]["counts"] == {"x": 33, "y": 0}
    md = d.to_markdown()
    assert "| imbalance ratio (max/min, non-empty) | 10.0 |" in md
    assert "empty classes | c" in md


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"counts": [3, -1]}, "must be >= 0"),
        ({"counts": [0, 0]}, "all class counts are zero"),
        ({"counts": [1.5, 2]}, "whole numbers"),
        ({"counts": []}, "non-empty"),
        ({"counts": [1, 2], "class_names": ["a"]}, "2 classes"),
        ({"counts": [1, 2], "hierarchy": [("x",)]}, "hierarchy has 1"),
    ],
)
def test_from_counts_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassDistribution.from_counts(**kwargs)


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        ([], {}, "empty"),
        ([0, -1], {}, "negative"),
        ([0, 5], {"num_classes": 3}, "out of range"),
        ([0.5, 1.0], {}, "integer"),
        ([[0, 1]], {}, "one-dimensional"),
    ],
)
def test_from_labels_errors(labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassDistribution.from_labels(labels, **kwargs)


def test_group_rule_errors():
    with pytest.raises(ValueError, match="group rule"):
        ClassDistribution.from_counts([1, 2]).with_grouping(rule="median")
    with pytest.raises(ValueError, match="few"):
        ClassDistribution.from_counts([1, 2]).with_grouping(rule="shots", many=5, few=10)


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
