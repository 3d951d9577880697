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


def _at(values: dict[str, tuple[float, float]], chance: float) -> Comparison:
    """A comparison whose strategies have these (mean, lower end over test images)."""
    from dataclasses import replace

    from longtail.experiments.comparison import Uncertainty

    runs = {
        n: [{"balanced_accuracy": m, "tail_recall": 0.0, "head_recall": 0.9}] * 2
        for n, (m, _) in values.items()
    }
    comparison = Comparison.from_table(
        compare_runs(runs, metrics=("balanced_accuracy", "tail_recall", "head_recall"))
    )
    sure = [
        Uncertainty(n, m, m, m, low, m + 0.01, 0, 0, 0, False) for n, (m, low) in values.items()
    ]
    return replace(comparison, uncertainty=sure, chance=chance)


def test_a_comparison_at_chance_names_no_winner_and_says_what_helps():
    from longtail.report.comparison import reading
    from longtail.report.tables import markdown_table

    comparison = _at({"instance+ce": (0.25, 0.20), "hybrid+ce": (0.356, 0.24)}, chance=0.25)
    assert comparison.at_chance == ["instance+ce", "hybrid+ce"]
    text = "\n".join(reading(comparison))
    assert "Nothing was learned" in text and "25.0%" in text and "--tune frozen" in text
    assert "Best" not in text and "best for the tail" not in text.lower()
    table = markdown_table(comparison)
    assert "instance+ce (baseline) (at chance)" in table and "hybrid+ce (at chance)" in table


def test_only_the_strategies_at_chance_are_marked():
    from longtail.report.comparison import reading

    comparison = _at({"instance+ce": (0.40, 0.24), "hybrid+ce": (0.70, 0.65)}, chance=0.25)
    assert comparison.at_chance == ["instance+ce"]
    text = "\n".join(reading(comparison))
    assert "Best balanced accuracy: **hybrid+ce**" in text
    assert "At chance (25.0%" in text and "**instance+ce**" in text.split("At chance")[1]
    unknown = _at({"instance+ce": (0.40, 0.24)}, chance=0.0)  # results of an older version
    assert unknown.at_chance == []
