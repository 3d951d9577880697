"""Write the demo's results into the README: ``python scripts/readme_demo.py [runs/demo]``.

Copies the comparison's ``results.json`` to ``docs/demo_results.json`` and its plots to
``docs/demo_*.png``, and rewrites the README's table between the ``demo-table`` markers from it;
``tests/test_readme.py`` fails when the README and ``docs/demo_results.json`` disagree.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from longtail.report.tables import markdown_tables
from longtail.training.results import Comparison

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"
PLOTS = ("recall_change", "per_class_recall", "prior_shift")


def demo_table(comparison: Comparison) -> str:
    """The README's block between the markers."""
    return f"{START}\n{markdown_tables(comparison)}{END}"


def replace_table(readme: str, comparison: Comparison) -> str:
    start, end = readme.index(START), readme.index(END) + len(END)
    return readme[:start] + demo_table(comparison) + readme[end:]


def main(run: Path) -> None:
    comparison = Comparison.load(run / "results.json")
    shutil.copyfile(run / "results.json", ROOT / "docs" / "demo_results.json")
    for name in PLOTS:
        shutil.copyfile(run / f"{name}.png", ROOT / "docs" / f"demo_{name}.png")
    readme = ROOT / "README.md"
    readme.write_text(replace_table(readme.read_text(), comparison))
    print(f"README table and docs/demo_* written from {run}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
