"""Write the demo's results into the README: ``python scripts/readme_demo.py [DEMO] [TREE]``.

DEMO (default ``runs/demo``) is ``make demo``'s comparison, TREE (default ``runs/tree``) the
tree-aware comparison docs/hierarchy.md gives the command of. Their
``results.json`` are copied to ``docs/demo_results.json`` and ``docs/tree_results.json``, the
demo's plots to ``docs/demo_*.png``, and the blocks between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` of the README (the demo) and of docs/hierarchy.md (the tree) are rewritten
from them; ``tests/suites/test_readme.py`` fails when the README
and the files in ``docs/`` disagree.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from longtail.experiments.comparison import Comparison
from longtail.report.comparison import reading
from longtail.report.tables import markdown_tables

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = ("demo-table", "demo-reading")
TREE_BLOCK = "tree-table"
TREE_COLUMNS = (  # (level: None = the leaves, metric, column)
    (None, "balanced_accuracy", "leaf balanced acc."),
    (None, "tail_recall", "leaf tail recall"),
    (1, "balanced_accuracy", "top-level balanced acc."),
    (1, "tail_recall", "top-level tail recall"),
    (None, "mistakes_within_parent", "mistakes inside the true parent"),
    (None, "mistake_severity", "mistake severity"),
)
PLOTS = ("recall_change", "per_class_recall", "prior_shift")


def _wrapped(name: str, body: str) -> str:
    return f"<!-- {name}:start -->\n{body.rstrip()}\n<!-- {name}:end -->"


def block(name: str, comparison: Comparison) -> str:
    """The README's block ``name`` with its markers: the tables, or their reading."""
    body = markdown_tables(comparison) if name == "demo-table" else "\n".join(reading(comparison))
    return _wrapped(name, body)


def tree_block(comparison: Comparison) -> str:
    """The tree comparison as one table: leaf and top-level numbers and the severity."""
    levels = {lv.level: lv.metrics for lv in comparison.levels}
    lines = [
        "| strategy | " + " | ".join(c for _, _, c in TREE_COLUMNS) + " |",
        "|---|" + "---|" * len(TREE_COLUMNS),
    ]
    for name in comparison.strategies:
        cells = []
        for level, metric, _ in TREE_COLUMNS:
            stat = (comparison.metrics if level is None else levels[level])[metric][name]
            share = metric != "mistake_severity"
            scale, digits = (100, 1) if share else (1, 2)
            cells.append(f"{scale * stat.mean:.{digits}f} ± {scale * stat.std:.{digits}f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return _wrapped(TREE_BLOCK, "\n".join(lines))


def _replace(readme: str, name: str, text: str) -> str:
    start = readme.index(f"<!-- {name}:start -->")
    end = readme.index(f"<!-- {name}:end -->") + len(f"<!-- {name}:end -->")
    return readme[:start] + text + readme[end:]


def replace_blocks(readme: str, demo: Comparison) -> str:
    """``readme`` with its demo blocks written from ``demo``."""
    for name in BLOCKS:
        readme = _replace(readme, name, block(name, demo))
    return readme


def replace_tree_block(page: str, tree: Comparison) -> str:
    """``page`` (docs/hierarchy.md) with its tree table written from ``tree``."""
    return _replace(page, TREE_BLOCK, tree_block(tree))


def main(run: Path, tree_run: Path) -> None:
    comparison = Comparison.load(run / "results.json")
    shutil.copyfile(run / "results.json", ROOT / "docs" / "demo_results.json")
    for name in PLOTS:
        shutil.copyfile(run / f"{name}.png", ROOT / "docs" / f"demo_{name}.png")
    tree = None
    if (tree_run / "results.json").exists():
        tree = Comparison.load(tree_run / "results.json")
        shutil.copyfile(tree_run / "results.json", ROOT / "docs" / "tree_results.json")
        page = ROOT / "docs" / "hierarchy.md"
        page.write_text(replace_tree_block(page.read_text(), tree))
    readme = ROOT / "README.md"
    readme.write_text(replace_blocks(readme.read_text(), comparison))
    print(f"README blocks and docs/ written from {run}" + (f" and {tree_run}" if tree else ""))


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    main(*(args + [Path("runs/demo"), Path("runs/tree")][len(args) :]))
