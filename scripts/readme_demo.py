"""Write the demo's results into the README: ``python scripts/readme_demo.py [runs/demo]``.

Copies the comparison's ``results.json`` to ``docs/demo_results.json`` and its plots to
``docs/demo_*.png``, and rewrites the README's tables and their reading between the
``demo-table`` and ``demo-reading`` markers from it;
``tests/test_readme.py`` fails when the README and ``docs/demo_results.json`` disagree.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from longtail.report.comparison import reading
from longtail.report.tables import markdown_tables
from longtail.training.results import Comparison

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = ("demo-table", "demo-reading")
PLOTS = ("recall_change", "per_class_recall", "prior_shift")


def block(name: str, comparison: Comparison) -> str:
    """The README's block ``name`` with its markers: the tables, or their reading."""
    body = markdown_tables(comparison) if name == "demo-table" else "\n".join(reading(comparison))
    return f"<!-- {name}:start -->\n{body.rstrip()}\n<!-- {name}:end -->"


def replace_blocks(readme: str, comparison: Comparison) -> str:
    for name in BLOCKS:
        start = readme.index(f"<!-- {name}:start -->")
        end = readme.index(f"<!-- {name}:end -->") + len(f"<!-- {name}:end -->")
        readme = readme[:start] + block(name, comparison) + readme[end:]
    return readme


def main(run: Path) -> None:
    comparison = Comparison.load(run / "results.json")
    shutil.copyfile(run / "results.json", ROOT / "docs" / "demo_results.json")
    for name in PLOTS:
        shutil.copyfile(run / f"{name}.png", ROOT / "docs" / f"demo_{name}.png")
    readme = ROOT / "README.md"
    readme.write_text(replace_blocks(readme.read_text(), comparison))
    print(f"README table and docs/demo_* written from {run}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
