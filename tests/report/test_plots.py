"""Plots: every strategy its own line style."""

from __future__ import annotations


def test_every_strategy_of_a_plot_has_its_own_line_style():
    from longtail.report.plots import line_styles

    styles = line_styles(40)
    keys = {(s["color"], s["marker"], s["linestyle"]) for s in styles}
    assert len(keys) == 40
    assert len({s["color"] for s in styles[:20]}) == 20  # the first 20 differ in colour alone
