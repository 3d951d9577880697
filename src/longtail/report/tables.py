"""Comparison tables (metrics x strategies) as rich, Markdown, CSV and JSON.

Input is the dictionary from :func:`longtail.metrics.compare_runs`. Values are shown in percent,
as mean +- std over seeds, with the change against the baseline in points (e.g. "+26.6").
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from longtail._io import write_json, write_text

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


def _cell(entry: dict[str, float] | None, baseline: bool, diverged: bool = False) -> str:
    if diverged:
        return "diverged"
    if entry is None or math.isnan(entry["mean"]):
        return "-"
    text = f"{100 * entry['mean']:.1f}"
    if entry.get("n", 1) > 1:
        text += f" ± {100 * entry['std']:.1f}"
    if not baseline and "delta_points" in entry:
        d = entry["delta_points"]
        text += f" ({d:+.1f})"
    return text


def _rows(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = comparison["strategies"]
    header = ["metric (%)"] + [
        f"{n} (baseline)" if n == comparison["baseline"] else n for n in names
    ]
    diverged = comparison.get("diverged", {})
    rows = []
    for metric, row in comparison["metrics"].items():
        rows.append(
            [LABELS.get(metric, metric)]
            + [_cell(row.get(n), n == comparison["baseline"], n in diverged) for n in names]
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


def rich_table(comparison: dict[str, Any], title: str = "Strategies compared") -> Table:
    """Terminal table: one row per strategy, one column per metric; mean (change vs baseline)."""
    names = comparison["strategies"]
    metrics = list(comparison["metrics"])
    table = Table(
        title=escape(title),
        caption="test %, mean over seeds (change vs baseline in points); std in report.md",
    )
    table.add_column("strategy", overflow="fold", min_width=18)
    for m in metrics:
        table.add_column(SHORT.get(m, m), justify="right")
    diverged = comparison.get("diverged", {})
    for n in names:
        cells = []
        for m in metrics:
            e = comparison["metrics"][m].get(n)
            if n in diverged:
                cells.append("[red]diverged[/red]")
                continue
            if e is None or math.isnan(e["mean"]):
                cells.append("-")
                continue
            text = f"{100 * e['mean']:.1f}"
            if n != comparison["baseline"]:
                d = e.get("delta_points", 0.0)
                colour = "green" if d > 0.05 else "red" if d < -0.05 else "dim"
                text += f"\n[{colour}]{d:+.1f}[/{colour}]"
            cells.append(text)
        table.add_row(escape(n) + (" (baseline)" if n == comparison["baseline"] else ""), *cells)
    return table


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole: a terminal narrower than the table folds it as usual, but output
    that is not a terminal (a CI log, ``| tee``) gets the table's full width, so no column is cut."""
    width = None
    if not console.is_terminal:
        width = max(console.width, console.measure(table).maximum)
    console.print(table, width=width, crop=False)


def markdown_table(comparison: dict[str, Any]) -> str:
    header, rows = _rows(comparison)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(comparison: dict[str, Any]) -> str:
    """Long format: metric, strategy, mean, std, n, delta_points (fractions, not percent)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["metric", "strategy", "mean", "std", "n", "delta_points"])
    for metric, row in comparison["metrics"].items():
        for name, e in row.items():
            w.writerow(
                [
                    metric,
                    name,
                    f"{e['mean']:.6f}",
                    f"{e['std']:.6f}",
                    e["n"],
                    f"{e.get('delta_points', 0.0):.3f}",
                ]
            )
    return buf.getvalue()


def write_tables(comparison: dict[str, Any], out: str | Path) -> None:
    """Write results.csv, results.json and comparison.md into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.csv", csv_table(comparison))
    write_json(out / "results.json", comparison)
    write_text(out / "comparison.md", markdown_table(comparison))
