"""The README's demo table is the demo's results, as scripts/readme_demo.py writes them."""

import importlib.util
from dataclasses import fields

from helpers import ROOT
from longtail.experiments.comparison import Comparison
from longtail.experiments.plan import DEFAULT_STRATEGIES
from longtail.training.config import TrainConfig, execution_fields


def _script():
    spec = importlib.util.spec_from_file_location("readme_demo", ROOT / "scripts/readme_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_table_is_the_demo_results():
    script = _script()
    comparison = Comparison.load(ROOT / "docs" / "demo_results.json")
    readme = (ROOT / "README.md").read_text()
    for name in script.BLOCKS:
        assert script.block(name, comparison) in readme, (
            f"the README's {name} differs from docs/demo_results.json: run make demo, then "
            "python scripts/readme_demo.py"
        )


def test_the_tree_table_is_the_tree_comparison():
    script = _script()
    tree = Comparison.load(ROOT / "docs" / "tree_results.json")
    assert script.tree_block(tree) in (ROOT / "docs" / "hierarchy.md").read_text(), (
        "docs/hierarchy.md's tree table differs from docs/tree_results.json: run the command "
        "above it, then python scripts/readme_demo.py"
    )
    assert [lv.level for lv in tree.levels] == [1] and tree.seeds == [0, 1, 2]


def test_the_demo_results_are_those_of_the_default_comparison():
    comparison = Comparison.load(ROOT / "docs" / "demo_results.json")
    assert comparison.strategies == list(DEFAULT_STRATEGIES)
    assert comparison.seeds == [0, 1, 2] and comparison.data == "Fashion-MNIST-LT"
    skip = {"strategy", "seed", *execution_fields(TrainConfig)}
    for f in fields(TrainConfig):
        if f.name not in skip and f.default is not None:
            assert comparison.config[f.name] == f.default, f.name
    for plot in ("recall_change", "per_class_recall", "prior_shift"):
        assert (ROOT / "docs" / f"demo_{plot}.png").stat().st_size > 0


def test_a_changed_number_is_caught():
    script = _script()
    comparison = Comparison.load(ROOT / "docs" / "demo_results.json")
    readme = (ROOT / "README.md").read_text()
    stat = comparison.metrics["balanced_accuracy"]["weighted+ce"]
    object.__setattr__(stat, "mean", stat.mean + 0.01)
    assert script.block("demo-table", comparison) not in readme
