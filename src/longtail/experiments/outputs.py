"""The files of a comparison: tables (``results.csv``, ``results.json``, ``comparison.md``),
plots, ``report.md`` and the self-contained ``report.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longtail._io import write_text
from longtail.experiments.comparison import Collected, Comparison
from longtail.metrics import metric_info
from longtail.report.comparison import comparison_markdown
from longtail.report.html import report_html
from longtail.report.plots import (
    plot_confusion,
    plot_per_class_recall,
    plot_prior_shift,
    plot_recall_change,
)
from longtail.report.tables import write_tables


def write_outputs(comparison: Comparison, collected: Collected, dist: Any, out: Path) -> None:
    """The tables, plots and ``report.md`` of ``comparison``."""
    write_tables(comparison, out)
    mean_recall = {n: collected.mean_recall(n) for n in comparison.per_class_recall}
    plot_per_class_recall(mean_recall, dist, out / "per_class_recall.png")
    best = comparison.best(comparison.headline)
    baseline = comparison.baseline
    if len(mean_recall) > 1:
        plot_recall_change(mean_recall, baseline, dist, out / "recall_change.png")
    if comparison.prior_shift is not None:
        plot_prior_shift(comparison.prior_shift, out / "prior_shift.png")
    plot_confusion(
        collected.confusion(baseline),
        dist.class_names,
        out / "confusion_baseline.png",
        f"{baseline} (baseline), summed over seeds",
    )
    plot_confusion(
        collected.confusion(best),
        dist.class_names,
        out / "confusion_best.png",
        f"{best} (best {metric_info(comparison.headline).label}), summed over seeds",
    )
    report = comparison_markdown(comparison, dist, collected.timings)
    write_text(out / "report.md", report)
    title = f"Strategy comparison on {comparison.data}"
    write_text(out / "report.html", report_html(report, out, title))


__all__ = ["write_outputs"]
