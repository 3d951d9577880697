"""A comparison's statistics: ties with the best, paired intervals over seeds."""

from __future__ import annotations

import numpy as np
import pytest

from longtail.uncertainty import seed_interval


def test_a_comparison_marks_strategies_tied_with_the_best():
    from types import SimpleNamespace

    from longtail.experiments.comparison import Comparison, uncertainties
    from longtail.metrics import compare_runs

    def seeds(*values):
        return [{"balanced_accuracy": v} for v in values]

    runs = {
        "base": seeds(0.70, 0.71, 0.72),
        "best": seeds(0.826, 0.830, 0.822),
        "close": seeds(0.825, 0.829, 0.817),  # seeds overlap the best's: a tie
        "apart": seeds(0.800, 0.801, 0.802),
    }
    comparison = Comparison.from_table(compare_runs(runs, metrics=("balanced_accuracy",)))
    run = SimpleNamespace(test=SimpleNamespace(confusion_matrix=np.array([[9, 1], [2, 8]])))
    collected = SimpleNamespace(runs={n: [run, run, run] for n in runs})
    got = {u.strategy: u for u in uncertainties(comparison, collected, None)}
    assert got["close"].tied and not got["apart"].tied and not got["best"].tied
    assert got["apart"].vs_best == pytest.approx(0.025)
    low, high = seed_interval([0.826 - 0.800, 0.830 - 0.801, 0.822 - 0.802])
    assert (got["apart"].vs_best_low, got["apart"].vs_best_high) == pytest.approx((low, high))
    assert (
        Comparison.from_dict(
            {**comparison.to_dict(), "uncertainty": [u.to_dict() for u in got.values()]}
        ).uncertainty[0]
        == got["base"]
    )


def test_two_seeds_apart_are_not_tied_by_a_useless_paired_interval():
    from types import SimpleNamespace

    from longtail.experiments.comparison import Comparison, uncertainties
    from longtail.metrics import compare_runs

    runs = {"base": [{"balanced_accuracy": v} for v in (0.60, 0.64)]}
    runs["best"] = [{"balanced_accuracy": v} for v in (0.80, 0.90)]  # paired diffs 0.20, 0.26
    comparison = Comparison.from_table(compare_runs(runs, metrics=("balanced_accuracy",)))
    run = SimpleNamespace(test=SimpleNamespace(confusion_matrix=np.eye(2, dtype=int) * 5))
    collected = SimpleNamespace(runs={n: [run, run] for n in runs})
    got = {u.strategy: u for u in uncertainties(comparison, collected, None)}
    assert got["base"].vs_best_low < 0  # t_1 = 12.7: the paired interval holds 0 ...
    assert not got["base"].tied  # ... but two seeds apart are not a tie


def test_chance_is_one_over_k_or_the_largest_target_share():
    from longtail.experiments.comparison import chance_level

    assert chance_level(None, 4) == pytest.approx(0.25)
    assert chance_level(np.array([0.5, 0.3, 0.2]), 3) == pytest.approx(0.5)
