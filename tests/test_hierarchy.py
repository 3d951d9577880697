"""The class tree's distances and the severity of mistakes, against hand computations."""

import numpy as np
import torch

from helpers import SCENE_NAMES as NAMES
from helpers import SCENE_TREE as TREE
from longtail.distribution import ClassDistribution
from longtail.hierarchy import ancestors, lca_heights, mistake_severity, roll_up_confusion
from longtail.metrics import MetricAccumulator

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


# a three-level tree with unequal depth: a, b under X/p; c under X/q; d under Y (d stands for
# itself at level 2)
THREE = ClassDistribution.from_counts(
    [40, 20, 10, 5], ["a", "b", "c", "d"], [("X", "p"), ("X", "p"), ("X", "q"), ("Y",)]
)
LEAF_CONFUSION = np.array(  # rows: true a, b, c, d; columns: predicted
    [
        [3, 1, 1, 0],
        [0, 2, 0, 1],
        [1, 0, 4, 0],
        [0, 0, 2, 5],
    ]
)


def _as_predictions(confusion: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    k = len(confusion)
    pairs = [(i, j) for i in range(k) for j in range(k) for _ in range(confusion[i, j])]
    y, pred = zip(*pairs, strict=True)
    return torch.tensor(pred), torch.tensor(y)


def test_level_reports_equal_the_hand_rolled_confusion_matrices():
    acc = MetricAccumulator.for_distribution(THREE)
    pred, y = _as_predictions(LEAF_CONFUSION)
    acc.update(pred[:9], y[:9])  # in two batches
    acc.update(pred[9:], y[9:])
    report = acc.compute(THREE)
    assert sorted(report.levels) == [1, 2]
    level2, level1 = report.levels[2], report.levels[1]
    # level 2 nodes p (a, b), q (c), d; level 1 nodes X (a, b, c), Y (d), by hand:
    assert level2.class_names == ("p", "q", "d")
    np.testing.assert_array_equal(level2.confusion, [[6, 1, 1], [1, 4, 0], [0, 2, 5]])
    np.testing.assert_array_equal(level1.confusion, [[12, 1], [2, 5]])
    # roll_up_confusion gives the same from the leaf matrix alone
    tree = THREE.tree_paths()
    for level, report_at in ((1, level1), (2, level2)):
        node, nodes = ancestors(tree[level - 1])
        rolled = roll_up_confusion(LEAF_CONFUSION, node, nodes)
        np.testing.assert_array_equal(rolled, report_at.confusion)
    s1 = level1.summary()
    assert s1["accuracy"] == 17 / 20
    assert s1["balanced_accuracy"] == (12 / 13 + 5 / 7) / 2
    # groups are taken at the level: X (70 training images) is head, Y (5) is tail
    assert list(level1.groups) == list(THREE.at_level(1).groups) == ["head", "tail"]
    assert s1["head_recall"] == 12 / 13 and s1["tail_recall"] == 5 / 7
    # severity at every level: leaves 1 + 2 + 3 + 2 + 2 x 3 = 14 over 6 mistakes, one a sibling;
    # level 2: p->q 1, p->d 2, q->p 1, d->q 2 x 2 = 8 over 5 mistakes, two inside X
    assert report.summary()["mistake_severity"] == 14 / 6
    assert report.summary()["mistakes_within_parent"] == 1 / 6
    assert level2.summary()["mistake_severity"] == 8 / 5
    assert level2.summary()["mistakes_within_parent"] == 2 / 5
    assert "mistake_severity" not in s1  # the top level has no tree above it
    assert report.to_dict()["levels"]["1"]["summary"]["tail_recall"] == 5 / 7


def test_logits_are_rolled_up_as_summed_probabilities_not_as_the_argmax():
    # a1 and a2 under A, b1 alone under B: 0.3 + 0.3 for A beats 0.4 for b1
    tree = ClassDistribution.from_counts([5, 5, 5], ["a1", "a2", "b1"], [("A",), ("A",), ("B",)])
    probs = torch.tensor([[0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])
    acc = MetricAccumulator.for_distribution(tree, topk=(1,))
    acc.update(probs.log(), torch.tensor([0, 2]))
    report = acc.compute(tree)
    assert report.accuracy == 0.5  # the first image's leaf prediction b1 is wrong
    top = report.levels[1]
    np.testing.assert_array_equal(top.confusion, [[1, 0], [0, 1]])  # A wins for it
    # top-level confidences 0.6 (right) and 0.8 (right): ECE = (0.4 + 0.2) / 2
    assert abs(top.ece - 0.3) < 1e-6
    assert top.topk == {1: 1.0}


def test_level_statistics_sum_over_ranks_like_the_leaf_ones():
    logits = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(40) % 4
    whole = MetricAccumulator.for_distribution(THREE)
    whole.update(logits, y)
    halves = [MetricAccumulator.for_distribution(THREE) for _ in range(2)]
    halves[0].update(logits[:15], y[:15])
    halves[1].update(logits[15:], y[15:])
    merged = MetricAccumulator.for_distribution(THREE)
    merged.load_state(halves[0].state() + halves[1].state())
    a, b = whole.compute(THREE), merged.compute(THREE)
    for level in (1, 2):
        np.testing.assert_array_equal(a.levels[level].confusion, b.levels[level].confusion)
        assert abs(a.levels[level].ece - b.levels[level].ece) < 1e-6  # float32 sums
    assert a.to_dict()["levels"].keys() == {"1", "2"}


def test_compare_on_a_folder_tree_reports_every_level_and_the_severity(tmp_path, capsys):
    from helpers import write_tree
    from longtail.cli import main
    from longtail.experiments.comparison import Comparison
    from longtail.training.results import RunResult

    counts = {  # three levels of unequal depth: a rare parent with two children, ...
        "land/field/dry": 14,
        "land/field/paddy": 10,
        "land/grass": 12,
        "water/lake": 8,
        "water/river": 8,
    }
    root = write_tree(tmp_path / "tree", {k: 2 * v for k, v in counts.items()}, size=8)
    out = tmp_path / "out"
    argv = ["compare", "--data", root, "--strategies", "instance+ce,instance+hxe", "--seeds", "1"]
    argv += ["--epochs", "1", "--image-size", "8", "--model", "small_cnn", "--workers", "0"]
    assert main([str(a) for a in [*argv, "--no-progress", "--out", out]]) == 0
    printed = capsys.readouterr().out
    assert "At level 1 of the class tree (2 classes)" in printed
    assert "At level 2 of the class tree (4 classes)" in printed
    comparison = Comparison.load(out / "results.json")
    assert [lv.level for lv in comparison.levels] == [1, 2]
    assert comparison.levels[1].classes == ["field", "grass", "lake", "river"]
    for strategy in ("instance+ce", "instance+hxe"):
        assert comparison.stat("mistake_severity", strategy) is not None
        assert comparison.levels[1].metrics["mistake_severity"][strategy].n == 1
        assert comparison.levels[0].metrics["balanced_accuracy"][strategy].n == 1
    run = next(out.glob("runs/instance+hxe/seed*/metrics.json"))
    test = RunResult.load(run).test
    assert sorted(test.levels) == ["1", "2"]
    assert np.array(test.levels["1"].confusion).sum() == np.array(test.confusion).sum()
    report = (out / "report.md").read_text()
    assert "At level 2 of the class tree" in report
    # noise images at 8 px may teach nothing: then no strategy is named, the mildest either
    assert "Mildest mistakes" in report or "Nothing was learned" in report
    assert "level,metric,strategy" in (out / "results.csv").read_text().splitlines()[0]


def test_train_prints_and_records_every_level(tmp_path, capsys):
    from helpers import write_tree
    from longtail.cli import main
    from longtail.training.results import RunResult

    root = write_tree(tmp_path / "tree", {"a/x": 12, "a/y": 8, "b": 10}, size=8)
    argv = ["train", "--data", root, "--strategy", "instance+soft_labels[beta=4]", "--epochs", "1"]
    argv += ["--image-size", "8", "--model", "small_cnn", "--workers", "0", "--no-progress"]
    assert main([str(a) for a in [*argv, "--out", tmp_path / "run"]]) == 0
    assert "At level 1 of the class tree (2 classes)" in capsys.readouterr().out
    test = RunResult.load(tmp_path / "run" / "metrics.json").test
    assert [row["class"] for row in test.levels["1"].per_class] == ["a", "b"]
    assert "mistake_severity" in test.summary


def test_a_loss_that_scales_its_logits_is_judged_on_the_scaled_probabilities(tmp_path):
    from helpers import write_tree
    from longtail.data.bundle import folder_bundle
    from longtail.strategies import parse_strategy
    from longtail.training.loop import TrainConfig
    from longtail.training.resolve import resolved_config, strategy_for_run
    from longtail.training.trainer import logit_scale

    root = write_tree(tmp_path / "tree", {"a/x": 12, "a/y": 8, "a/z": 8, "b": 10}, size=8)
    data = folder_bundle(root, image_size=8)

    def scale(strategy):
        config = resolved_config(TrainConfig(strategy=strategy, epochs=1, num_workers=0), data)
        return logit_scale(strategy_for_run(parse_strategy(strategy), config, data))

    # LDAM scores s * cos on its cosine head: softmax(cos) would spread mass over a's three
    # children and roll it up to a whatever the image; the cRT stage after it trains plain CE
    assert scale("instance+ldam_drw") == 30.0
    assert scale("instance+ldam_drw[s=10]") == 10.0
    assert scale("instance+ce") == 1.0
    assert scale("instance+ldam_drw:crt") == 1.0
