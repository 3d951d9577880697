"""The class tree's distances and the severity of mistakes, against hand computations."""

import numpy as np
import torch

from longtail.distribution import ClassDistribution
from longtail.hierarchy import lca_heights, mistake_severity
from longtail.metrics import MetricAccumulator
from test_hierarchical_sampler import NAMES, TREE

# two parents with two children each: a1, a2 under A; b1, b2 under B
TWO_LEVELS = [
    [("A",), ("A",), ("B",), ("B",)],
    [("A", "a1"), ("A", "a2"), ("B", "b1"), ("B", "b2")],
]
CONFUSION = np.array(  # rows: true a1, a2, b1, b2; columns: predicted
    [
        [5, 2, 1, 0],  # 2 mistakes inside A (height 1), 1 into B (height 2)
        [0, 4, 0, 3],  # 3 into B
        [0, 0, 6, 1],  # 1 inside B
        [1, 0, 0, 2],  # 1 into A
    ]
)


def test_lca_heights_of_an_uneven_three_level_tree():
    h = lca_heights(TREE)
    at = {name: i for i, name in enumerate(NAMES)}
    assert h[at["r1"], at["r1"]] == 0
    assert h[at["r1"], at["r2"]] == 1  # siblings
    assert h[at["r1"], at["r4"]] == 2  # cousins under R
    assert h[at["r1"], at["c1"]] == 3  # nothing shared below the root
    assert (h == h.T).all()


def test_mistake_severity_equals_the_hand_count():
    # mistakes: 2 x h1 + 1 x h2 + 3 x h2 + 1 x h1 + 1 x h2 = 13 over 8 mistakes, 3 inside a parent
    got = mistake_severity(CONFUSION, TWO_LEVELS)
    assert got == {"mistake_severity": 13 / 8, "mistakes_within_parent": 3 / 8}
    assert np.isnan(mistake_severity(np.eye(4), TWO_LEVELS)["mistake_severity"])


def test_an_evaluation_on_a_tree_reports_the_severity_and_a_flat_one_does_not():
    y = torch.tensor(np.repeat(np.arange(4), CONFUSION.sum(axis=1)))
    pred = torch.tensor(np.concatenate([np.repeat(np.arange(4), row) for row in CONFUSION]))
    tree = ClassDistribution.from_counts(
        [10, 10, 10, 10], ["a1", "a2", "b1", "b2"], [("A",), ("A",), ("B",), ("B",)]
    )
    acc = MetricAccumulator(4)
    acc.update(pred, y)
    summary = acc.compute(tree).summary()
    assert summary["mistake_severity"] == 13 / 8 and summary["mistakes_within_parent"] == 3 / 8
    flat = ClassDistribution.from_counts([10, 10, 10, 10])
    assert "mistake_severity" not in acc.compute(flat).summary()
