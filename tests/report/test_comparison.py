"""The reading of a comparison: the best, the ties, and what is no better than the baseline."""

from __future__ import annotations

from longtail.experiments.comparison import Comparison
from longtail.metrics import (
    compare_runs,
)


def test_strategies_whose_seeds_overlap_are_reported_as_tied():
    from longtail.report.comparison import reading, tied

    def seeds(*values):
        return [{"balanced_accuracy": v, "tail_recall": v, "head_recall": 0.9} for v in values]

    runs = {
        "base": seeds(0.700, 0.704),  # 70.2 ± 0.2
        "a": seeds(0.825, 0.827),  # 82.6 ± 0.1
        "b": seeds(0.822, 0.826),  # 82.4 ± 0.2: |82.6 - 82.4| <= 0.1 + 0.2, tied with a
        "c": seeds(0.810, 0.812),  # 81.1 ± 0.1: apart from a
        "d": seeds(0.701, 0.705),  # 70.3 ± 0.2: no better than base
    }
    comparison = Comparison.from_table(
        compare_runs(runs, metrics=("balanced_accuracy", "tail_recall", "head_recall"))
    )
    assert tied(comparison, "balanced_accuracy", "a") == ["b"]
    assert tied(comparison, "balanced_accuracy", "base") == ["d"]
    text = "\n".join(reading(comparison))
    assert "Best balanced accuracy: **a** (82.6 ± 0.1%, +12.4 points against base)" in text
    assert "the seeds cannot tell it from **b**" in text
    assert (
        "No better than base on balanced accuracy (seeds overlapping, or a paired difference "
        "whose 95% interval holds 0): **d**." in text
    )
