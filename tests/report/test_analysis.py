"""The analysis report: counts, groups, each parent of the tree and its plot."""

from __future__ import annotations

import json

from longtail.distribution import ClassDistribution

THREE = ClassDistribution.from_counts(
    [40, 20, 10, 5], ["a", "b", "c", "d"], [("X", "p"), ("X", "p"), ("X", "q"), ("Y",)]
)


def test_analyze_reports_each_parent_and_draws_the_tree(tmp_path, capsys):
    from longtail.report.analysis import write_analysis

    write_analysis(THREE, tmp_path, "a tree")
    assert (tmp_path / "class_tree.png").stat().st_size > 0
    level1 = json.loads((tmp_path / "distribution.json").read_text())["levels"]["1"]
    assert level1["children"] == {"X": 2, "Y": 1}  # X holds p and q at level 2
    assert level1["shares"] == {"X": 70 / 75, "Y": 5 / 75}
    assert THREE.children_counts(2) == {"p": 2, "q": 1, "d": 1}
    assert "| X | 70 | 93.33% | 2 |" in (tmp_path / "report.md").read_text()
