"""Comparison tables (metrics x strategies) as rich, Markdown, CSV and JSON.

Input is the dictionary from :func:`longtail.metrics.compare_runs`. Values are shown in percent,
as mean +- std over seeds, with the change against the baseline in points (e.g. "+26.6").
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

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


def _cell(entry: dict[str, float] | None, baseline: bool, markup: bool = False) -> str:
    if entry is None or math.isnan(entry["mean"]):
        return "-"
    text = f"{100 * entry['mean']:.1f}"
    if entry.get("n", 1) > 1:
        text += f" ± {100 * entry['std']:.1f}"
    if not baseline and "delta_points" in entry:
        d = entry["delta_points"]
        delta = f"{d:+.1f}"
        if markup:
            colour = "green" if d > 0.05 else "red" if d < -0.05 else "dim"
            delta = f"[{colour}]{delta}[/{colour}]"
        text += f" ({delta})"
    return text


def _rows(comparison: dict[str, Any], markup: bool = False) -> tuple[list[str], list[list[str]]]:
    names = comparison["strategies"]
    header = ["metric (%)"] + [
        f"{n} (baseline)" if n == comparison["baseline"] else n for n in names
    ]
    rows = []
    for metric, row in comparison["metrics"].items():
        rows.append(
            [LABELS.get(metric, metric)]
            + [_cell(row.get(n), n == comparison["baseline"], markup) for n in names]
        )
    return header, rows


def rich_table(comparison: dict[str, Any], title: str = "Strategies compared") -> Table:
    header, rows = _rows(comparison, markup=True)
    table = Table(title=title, caption="mean ± std over seeds, (change vs baseline in points)")
    for h in header:
        table.add_column(h, justify="right" if h != header[0] else "left")
    for row in rows:
        table.add_row(*row)
    return table


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
    (out / "results.csv").write_text(csv_table(comparison))
    (out / "results.json").write_text(json.dumps(comparison, indent=2))
    (out / "comparison.md").write_text(markdown_table(comparison))
