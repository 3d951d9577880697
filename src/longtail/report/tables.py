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
from rich.table import Table

from longtail._io import write_text
from longtail._text import console_text, markdown_text
from longtail.experiments.comparison import Comparison, LevelComparison, Stat
from longtail.metrics import HEADLINE, MetricInfo, metric_info
from longtail.training.results import TestResult


def _number(value: float, info: MetricInfo) -> str:
    return f"{100 * value:.1f}" if info.share else f"{value:.2f}"


def _change(value: float, info: MetricInfo) -> str:
    return f"{value:+.1f}" if info.share else f"{value:+.2f}"


def _cell(entry: Stat | None, info: MetricInfo, baseline: bool, diverged: bool = False) -> str:
    if diverged:
        return "diverged"
    if entry is None or math.isnan(entry.mean):
        return "-"
    text = _number(entry.mean, info)
    if entry.n > 1:
        text += f" ± {_number(entry.std, info)}"
    if not baseline and entry.delta_points is not None:
        text += f" ({_change(entry.delta_points, info)})"
    return text


def _rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """One row per strategy, one column per metric (its short name)."""
    metrics, baseline = list(comparison.metrics), comparison.baseline
    header = ["strategy"] + [_short(comparison, m) for m in metrics]
    rows = []
    for name in comparison.strategies:
        label = markdown_text(name) + (" (baseline)" if name == baseline else "")
        label += CHANCE_MARK if name in comparison.at_chance else ""
        cells = [
            _cell(
                comparison.metrics[m].get(name),
                metric_info(m),
                name == baseline,
                name in comparison.diverged,
            )
            for m in metrics
        ]
        rows.append([label, *cells])
    return header, rows


CHANCE_HELP = (
    "train longer (--epochs), or start from a pretrained backbone (--pretrained with "
    "--tune frozen, last[n] or lora)"
)
"""What helps a comparison in which nothing was learned."""
CHANCE_MARK = " (at chance)"
"""How a table marks a strategy whose headline cannot be told from chance."""
CHANCE_NOTE = (
    "(at chance): the headline's 95% interval over test images reaches chance ({:.1f}%): "
    "nothing was learned that the test split can show."
)


def _short(comparison: Comparison, metric: str) -> str:
    """A column's name, marked † when classes with too few test images move it."""
    return metric_info(metric).short + ("†" if comparison.moved_by_small_test(metric) else "")


def small_test_note(comparison: Comparison) -> str:
    """The sentence on the classes with too few test images ("" when there are none)."""
    if not comparison.small_test:
        return ""
    few = ", ".join(f"{markdown_text(c)} ({n})" for c, n in comparison.small_test.items())
    return (
        f"† averages over classes with fewer than 5 test images: {few}. Each of their recalls "
        "moves in steps of 20 points or more (a class with none is not judged), and so do the "
        "numbers marked †: read them with care, or give the test split more images."
    )


def legend(comparison: Comparison) -> str:
    """What the columns of :func:`markdown_table` are and how their cells read."""
    names = "; ".join(
        f"{metric_info(m).short} = {metric_info(m).label}" for m in comparison.metrics
    )
    text = (
        f"Test metrics, mean ± std over seeds, with the change against {comparison.baseline} in "
        f"brackets; shares in % (changes in points), mistake severity in tree levels. {names}."
    )
    if comparison.at_chance:
        text += f" {CHANCE_NOTE.format(100 * comparison.chance)}"
    note = small_test_note(comparison)
    return f"{text} {note}" if note else text


COMPARE_CAPTION = "test %, mean over seeds (change vs baseline in points); std in report.md"


def rich_table(
    comparison: Comparison, title: str = "Strategies compared", caption: str = COMPARE_CAPTION
) -> Table:
    """Terminal table: one row per strategy, one column per metric; mean (change vs baseline)."""
    names, baseline = comparison.strategies, comparison.baseline
    metrics = list(comparison.metrics)
    table = Table(
        title=console_text(title),
        caption=caption,
    )
    table.add_column("strategy", overflow="fold", min_width=18)
    for m in metrics:
        table.add_column(_short(comparison, m), justify="right")
    for n in names:
        cells = [
            _rich_cell(comparison.metrics[m].get(n), metric_info(m), n, comparison) for m in metrics
        ]
        marked = n == baseline and len(names) > 1
        chance = CHANCE_MARK if n in comparison.at_chance else ""
        table.add_row(console_text(n) + (" (baseline)" if marked else "") + chance, *cells)
    return table


def _rich_cell(e: Stat | None, info: MetricInfo, name: str, comparison: Comparison) -> str:
    if name in comparison.diverged:
        return "[red]diverged[/red]"
    if e is None or math.isnan(e.mean):
        return "-"
    text = _number(e.mean, info)
    if name != comparison.baseline:
        d = e.delta_points or 0.0
        better = d if info.higher_is_better else -d
        shown = 0.05 if info.share else 0.005  # half the last digit shown
        colour = "green" if better > shown else "red" if better < -shown else "dim"
        text += f"\n[{colour}]{_change(d, info)}[/{colour}]"
    return text


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole: a terminal narrower than the table folds it as usual, but output
    that is not a terminal (a CI log, ``| tee``) gets the table's full width, so no column is cut."""
    if console.is_terminal:
        console.print(table, crop=False)
        return
    unbounded = console.options.update(width=100_000, max_width=100_000)
    width = max(console.width, console.measure(table, options=unbounded).maximum)
    # print(width=) is capped at the console's width: a console of the table's width, and
    # otherwise the caller's (its file, quiet, colours), prints it
    wide = Console(
        file=console.file,
        width=width,
        quiet=console.quiet,
        no_color=console.no_color,
        color_system=console.color_system,  # type: ignore[arg-type]  # the name it was given
        force_terminal=False,
    )
    wide.print(table, crop=False)


def print_comparison(
    console: Console, comparison: Comparison, title: str, caption: str = COMPARE_CAPTION
) -> None:
    """The comparison's table, the note on small test classes, and a table per tree level."""
    print_table(console, rich_table(comparison, title=title, caption=caption))
    if comparison.small_test:
        console.print(f"[yellow]{console_text(small_test_note(comparison))}[/yellow]")
    if comparison.at_chance:
        note = CHANCE_NOTE.format(100 * comparison.chance)
        if comparison.best(comparison.headline) in comparison.at_chance:
            note += f" No strategy is named best. What helps: {CHANCE_HELP}."
        console.print(f"[yellow]{console_text(note)}[/yellow]")
    for level in comparison.levels:
        level_table = rich_table(comparison.at_level(level), level_title(level), caption)
        print_table(console, level_table)


def print_run(console: Console, test: TestResult, title: str, caption: str) -> None:
    """One run's test metrics as a one-row table, then one per coarser level of the class tree
    (top first): read from its :class:`~longtail.training.results.TestResult` alone."""
    print_table(console, _run_table(test, console_text(title), caption))
    for level in sorted(test.levels, key=int):
        classes = len(test.levels[level].per_class)
        title = f"At level {level} of the class tree ({classes} classes), predictions rolled up"
        print_table(console, _run_table(test.levels[level], title, caption))


def _run_table(test: TestResult, title: str, caption: str) -> Table:
    metrics = [m for m in HEADLINE if m in test.summary]
    table = Table(title=title, caption=caption)
    for m in metrics:
        table.add_column(metric_info(m).short, justify="right")
    cells = [test.metric(m) for m in metrics]
    table.add_row(
        *("-" if math.isnan(v) else _number(v, metric_info(m)) for m, v in zip(metrics, cells))
    )
    return table


def markdown_table(comparison: Comparison) -> str:
    """Strategies as rows, metrics as columns (see :func:`legend`)."""
    header, rows = _rows(comparison)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def level_title(level: LevelComparison) -> str:
    """What a table of ``level`` shows, in a line."""
    return (
        f"At level {level.level} of the class tree ({len(level.classes)} classes), the leaf "
        "model's predictions rolled up"
    )


def markdown_tables(comparison: Comparison) -> str:
    """The comparison's table, then one per coarser level of the class tree (top first)."""
    parts = [markdown_table(comparison), legend(comparison), ""]
    for level in comparison.levels:
        parts += ["", f"{level_title(level)}:", "", markdown_table(comparison.at_level(level))]
    return "\n".join(parts)


def csv_table(comparison: Comparison) -> str:
    """Long format: level, metric, strategy, mean, std, n, delta_points, seeds (means and each
    seed's value, ";"-separated in seed order, as fractions, not percent; the change in points
    for a share, in the metric's unit otherwise). ``level`` is the tree level of the row, "leaf"
    for the classes trained on."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["level", "metric", "strategy", "mean", "std", "n", "delta_points", "seeds"])
    tables = [("leaf", comparison.metrics)] + [
        (str(lv.level), lv.metrics) for lv in comparison.levels
    ]
    for level, metrics in tables:
        for metric, row in metrics.items():
            for name, e in row.items():
                delta = 0.0 if e.delta_points is None else e.delta_points
                seeds = ";".join(f"{v:.6f}" for v in e.values)
                w.writerow(
                    [
                        level,
                        metric,
                        name,
                        f"{e.mean:.6f}",
                        f"{e.std:.6f}",
                        e.n,
                        f"{delta:.3f}",
                        seeds,
                    ]
                )
    return buf.getvalue()


def write_tables(comparison: Comparison, out: str | Path) -> None:
    """Write results.csv, results.json and comparison.md into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.csv", csv_table(comparison))
    comparison.save(out / "results.json")
    write_text(out / "comparison.md", markdown_tables(comparison))


__all__ = [
    "CHANCE_HELP",
    "CHANCE_MARK",
    "CHANCE_NOTE",
    "csv_table",
    "legend",
    "small_test_note",
    "level_title",
    "markdown_table",
    "markdown_tables",
    "print_comparison",
    "print_run",
    "print_table",
    "rich_table",
    "write_tables",
]
