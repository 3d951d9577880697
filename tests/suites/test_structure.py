"""The shape of the code: short functions, components known only through their records, options
declared once, and the caller's datasets left as they were."""

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import SRC, small_embedded, write_tree
from longtail.data.bundle import folder_bundle
from longtail.experiments.plan import parse_row
from longtail.losses import CrossEntropyLoss
from longtail.params import NUMBER
from longtail.strategies import parse_strategy
from longtail.strategies.registry import REGISTRY, ComponentSpec, register, unregister
from longtail.training.config import TrainConfig, option
from longtail.training.loop import train

MAX_LINES = 80
CORE = {"distribution.py", "hierarchy.py", "weights.py", "losses.py", "metrics.py", "sampling"}
"""Below the registry: these modules do not know the components' names (a string there, such as
a class-balanced loss's ``base="focal"``, is a parameter of their own)."""


def _sources(skip_core: bool = False) -> list[Path]:
    paths = sorted(SRC.rglob("*.py"))
    if skip_core:
        paths = [p for p in paths if p.relative_to(SRC).parts[0] not in CORE]
    return paths


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_strings(e) for e in node.elts)) if node.elts else set()
    return set()


def test_no_component_name_is_compared_as_a_string_outside_its_record():
    names = {name for specs in REGISTRY.values() for name in specs}
    found = []
    for path in _sources(skip_core=True):
        if path.name == "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                hit = set().union(*(_strings(x) for x in (node.left, *node.comparators)))
            elif isinstance(node, ast.Dict):  # a table keyed by component name
                hit = set().union(*(_strings(k) for k in node.keys if k is not None))
            else:
                continue
            if hit & names:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(node)[:80]}")
    assert not found, found


def test_the_scan_above_would_see_a_name_compared():
    tree = ast.parse('if strategy.loss == "ldam_drw": pass')
    compare = next(n for n in ast.walk(tree) if isinstance(n, ast.Compare))
    assert "ldam_drw" in set().union(*(_strings(x) for x in (compare.left, *compare.comparators)))


class DoubleCrossEntropy(CrossEntropyLoss):
    """2 x cross-entropy: a loss no one else knows about."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(logits, target)


def test_a_loss_registered_in_one_place_runs_in_compare(tmp_path):
    from longtail.experiments.compare import run_compare
    from longtail.report.comparison import recall_array

    spec = ComponentSpec(
        "double_ce",
        "loss",
        lambda ctx, **p: DoubleCrossEntropy(**p),
        {"label_smoothing": NUMBER},
    )
    register(spec)
    try:
        with pytest.raises(ValueError, match="already"):
            register(spec)
        data = small_embedded(20)
        base = TrainConfig(epochs=1, batch_size=256, progress=False, augment="none")
        strategies = ["instance+ce", "instance+double_ce[label_smoothing=0.1]"]
        comparison = run_compare(data, strategies, [0], base, tmp_path / "cmp")
        slug = parse_row(strategies[1]).slug
    finally:
        unregister("loss", "double_ce")
    assert comparison.strategies == strategies
    stat = comparison.stat("balanced_accuracy", strategies[1])
    assert stat is not None and 0.0 < stat.mean <= 1.0
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert strategies[1] in saved["metrics"]["balanced_accuracy"]
    assert recall_array(saved["per_class_recall"][strategies[1]]).shape == (10,)
    run = tmp_path / "cmp" / "runs" / slug / "seed0"
    assert json.loads((run / "config.json").read_text())["config"]["strategy"] == strategies[1]
    with pytest.raises(ValueError, match="unknown loss 'double_ce'"):
        parse_strategy("instance+double_ce")


@dataclass
class EmaConfig(TrainConfig):
    """A config with one more setting, declared only here."""

    ema_decay: float = option(0.0, "decay of an exponential moving average", "--ema-decay")


def _items(dataset, positions) -> list[tuple[torch.Tensor, int]]:
    return [(dataset[i][0].clone(), int(dataset[i][1])) for i in positions]


def test_train_leaves_the_datasets_it_is_given_as_they_were(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 12, "b": 8}, size=20)
    folder = folder_bundle(root, image_size=16)
    data = small_embedded(40)
    for bundle, model in ((folder, "small_cnn"), (data, "mlp")):
        splits = [bundle.train, bundle.val, bundle.test]
        before = [_items(s, range(min(4, len(s)))) for s in splits]
        attributes = [dict(vars(s)) for s in splits]
        config = TrainConfig(model=model, epochs=1, batch_size=16, num_workers=0, progress=False)
        train(config, bundle, tmp_path / f"run-{model}")
        for split, old, attrs in zip(splits, before, attributes, strict=True):
            assert vars(split).keys() == attrs.keys()
            assert all(vars(split)[k] is v for k, v in attrs.items())  # nothing set on it
            for (x_old, y_old), (x_new, y_new) in zip(
                old, _items(split, range(len(old))), strict=True
            ):
                assert y_old == y_new and x_old.dtype == x_new.dtype
                torch.testing.assert_close(x_old, x_new, rtol=0, atol=0)
        assert splits[0][0][0].dtype == torch.float32  # normalised, as handed over
        assert getattr(splits[0], "augment", "none") == "none"
    assert np.isfinite(float(folder.val[0][0].float().mean()))


def _public_modules() -> set[Path]:
    """Each public module of longtail as the path of the test module that mirrors it."""
    found = set()
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if not any(part.startswith("_") for part in relative.parts):
            found.add(relative.with_name(f"test_{relative.name}"))
    return found


def test_the_test_tree_mirrors_the_source():
    tests = SRC.parent.parent / "tests"
    mirrored = {
        p.relative_to(tests)
        for p in tests.rglob("test_*.py")
        if p.relative_to(tests).parts[0] != "suites"
    }
    public = _public_modules()
    assert not sorted(public - mirrored), (
        f"modules without a test module: {sorted(public - mirrored)}"
    )
    assert not sorted(mirrored - public), f"test modules of no module: {sorted(mirrored - public)}"
