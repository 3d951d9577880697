"""Comparison tables (metrics x strategies) as rich, Markdown, CSV and JSON.

Input is a :class:`~longtail.training.results.Comparison`. Values are shown in percent,
as mean +- std over seeds, with the change against the baseline in points (e.g. "+26.6").
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from longtail._io import write_text
from longtail.training.results import Comparison, Stat

LABELS = {
    "accuracy": "overall accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro F1",
    "head_f1": "head F1",
    "medium_f1": "medium F1",
    "tail_f1": "tail F1",
    "head_recall": "head recall",
    "medium_recall": "medium recall",
    "tail_recall": "tail recall",
    "top5_accuracy": "top-5 accuracy",
    "ece": "calibration error (ECE)",
}


def _cell(entry: Stat | None, baseline: bool, diverged: bool = False) -> str:
    if diverged:
        return "diverged"
    if entry is None or math.isnan(entry.mean):
        return "-"
    text = f"{100 * entry.mean:.1f}"
    if entry.n > 1:
        text += f" ± {100 * entry.std:.1f}"
    if not baseline and entry.delta_points is not None:
        text += f" ({entry.delta_points:+.1f})"
    return text


def _rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    names, baseline = comparison.strategies, comparison.baseline
    header = ["metric (%)"] + [f"{n} (baseline)" if n == baseline else n for n in names]
    rows = []
    for metric, row in comparison.metrics.items():
        rows.append(
            [LABELS.get(metric, metric)]
            + [_cell(row.get(n), n == baseline, n in comparison.diverged) for n in names]
        )
    return header, rows


SHORT = {
    "accuracy": "acc",
    "balanced_accuracy": "bal acc",
    "macro_f1": "macro F1",
    "head_f1": "head F1",
    "medium_f1": "med F1",
    "tail_f1": "tail F1",
    "head_recall": "head R",
    "medium_recall": "med R",
    "tail_recall": "tail R",
}


def rich_table(comparison: Comparison, title: str = "Strategies compared") -> Table:
    """Terminal table: one row per strategy, one column per metric; mean (change vs baseline)."""
    names, baseline = comparison.strategies, comparison.baseline
    metrics = list(comparison.metrics)
    table = Table(
        title=escape(title),
        caption="test %, mean over seeds (change vs baseline in points); std in report.md",
    )
    table.add_column("strategy", overflow="fold", min_width=18)
    for m in metrics:
        table.add_column(SHORT.get(m, m), justify="right")
    for n in names:
        cells = [_rich_cell(comparison.metrics[m].get(n), n, comparison) for m in metrics]
        table.add_row(escape(n) + (" (baseline)" if n == baseline else ""), *cells)
    return table


def _rich_cell(e: Stat | None, name: str, comparison: Comparison) -> str:
    if name in comparison.diverged:
        return "[red]diverged[/red]"
    if e is None or math.isnan(e.mean):
        return "-"
    text = f"{100 * e.mean:.1f}"
    if name != comparison.baseline:
        d = e.delta_points or 0.0
        colour = "green" if d > 0.05 else "red" if d < -0.05 else "dim"
        text += f"\n[{colour}]{d:+.1f}[/{colour}]"
    return text


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole: a terminal narrower than the table folds it as usual, but output
    that is not a terminal (a CI log, ``| tee``) gets the table's full width, so no column is cut."""
    width = None
    if not console.is_terminal:
        width = max(console.width, console.measure(table).maximum)
    console.print(table, width=width, crop=False)


def markdown_table(comparison: Comparison) -> str:
    header, rows = _rows(comparison)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(comparison: Comparison) -> str:
    """Long format: metric, strategy, mean, std, n, delta_points (fractions, not percent)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["metric", "strategy", "mean", "std", "n", "delta_points"])
    for metric, row in comparison.metrics.items():
        for name, e in row.items():
            delta = 0.0 if e.delta_points is None else e.delta_points
            w.writerow([metric, name, f"{e.mean:.6f}", f"{e.std:.6f}", e.n, f"{delta:.3f}"])
    return buf.getvalue()


def write_tables(comparison: Comparison, out: str | Path) -> None:
    """Write results.csv, results.json and comparison.md into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.csv", csv_table(comparison))
    comparison.save(out / "results.json")
    write_text(out / "comparison.md", markdown_table(comparison))


__all__ = [
    "LABELS",
    "SHORT",
    "csv_table",
    "markdown_table",
    "print_table",
    "rich_table",
    "write_tables",
]
