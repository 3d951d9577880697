"""The ``longtail analyze`` report: terminal tables, Markdown, JSON and two plots."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from longtail._io import write_text
from longtail._text import console_text, markdown_text
from longtail.distribution import ClassDistribution
from longtail.report.plots import plot_class_counts, plot_lorenz, plot_tree


def distribution_tables(dist: ClassDistribution) -> list[Table]:
    """Rich tables: headline statistics, groups, and one per hierarchy level."""
    s = dist.summary()
    stats = Table(title="Class distribution", show_header=False)
    stats.add_column("statistic")
    stats.add_column("value", justify="right")
    stats.add_row("classes", str(s["num_classes"]))
    stats.add_row("images", f"{s['total']:,}")
    stats.add_row("largest / smallest class", f"{s['max_count']:,} / {s['min_count']:,}")
    stats.add_row("imbalance ratio", f"{s['imbalance_ratio']:.1f}")
    stats.add_row("top 20% of classes hold", f"{s['pareto_share_top20']:.1%}")
    stats.add_row("Gini coefficient", f"{s['gini']:.3f}")
    stats.add_row("normalised entropy", f"{s['normalized_entropy']:.3f}")
    if s["empty_classes"]:
        stats.add_row("[red]empty classes[/red]", console_text(", ".join(s["empty_classes"])))
    groups = Table(title=f"Groups ({dist.grouping.rule} rule)")
    for col in ("group", "classes", "images", "members"):
        groups.add_column(col)
    for name, idx in dist.group_indices().items():
        members = ", ".join(dist.class_names[i] for i in idx)
        members = members if len(members) < 120 else members[:117] + "..."
        groups.add_row(
            name,
            str(len(idx)),
            f"{int(dist.counts[idx].sum()):,}",
            console_text(members),
        )
    tables = [stats, groups]
    for level in range(1, dist.num_levels):
        sub = dist.at_level(level)
        within = dist.within_parent_imbalance(level)
        t = Table(
            title=f"Level {level}: {sub.num_classes} classes, imbalance ratio {sub.imbalance_ratio:.1f}"
        )
        for col in ("class", "images", "share", "children", "imbalance among children"):
            t.add_column(col)
        children = dist.children_counts(level)
        for name, n in zip(sub.class_names, sub.counts, strict=True):
            t.add_row(
                console_text(name),
                f"{int(n):,}",
                f"{n / dist.total:.1%}",
                str(children[name]),
                f"{within[name]:.1f}",
            )
        tables.append(t)
    return tables


def write_analysis(
    dist: ClassDistribution, out: str | Path, source: str, console: Console | None = None
) -> Path:
    """Print the tables and write report.md, distribution.json, class_counts.png, lorenz.png
    and, for data with a class tree, class_tree.png."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = console or Console()
    for table in distribution_tables(dist):
        console.print(table)
    write_text(out / "distribution.json", dist.to_json() + "\n")
    plot_class_counts(dist, out / "class_counts.png")
    plot_lorenz(dist, out / "lorenz.png")
    tree = (
        ["![the class tree by share of images](class_tree.png)", ""] if dist.num_levels > 1 else []
    )
    if tree:
        plot_tree(dist, out / "class_tree.png")
    report = [
        f"# Class distribution of {markdown_text(source)}",
        "",
        dist.to_markdown(),
        "![classes sorted by count](class_counts.png)",
        "",
        "![Lorenz curve](lorenz.png)",
        "",
        *tree,
    ]
    write_text(out / "report.md", "\n".join(report))
    console.print(
        f"Report written to [bold]{console_text(str(out))}[/bold] (report.md, distribution.json, class_counts.png, lorenz.png)"
    )
    return out


__all__ = [
    "distribution_tables",
    "write_analysis",
]
