"""The layers of docs/design.md: every import points down, and the loop asks no strategy its type."""

import ast
from pathlib import Path

import pytest
import torch

from helpers import SRC

CORE = (
    "distribution",
    "hierarchy",
    "priors",
    "uncertainty",
    "weights",
    "sampling",
    "losses",
    "metrics",
    "_checks",
    "_distributed",
    "_io",
    "_lock",
    "_text",
    "errors",
)
ABOVE = {
    "core": ("data", "training", "experiments", "report", "cli", "strategies", "integrations"),
    "strategies": ("data", "training", "experiments", "report", "cli", "integrations"),
    "training": ("experiments", "report", "cli", "integrations"),
    "integrations": ("training", "experiments", "report", "cli"),
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m.split(".")[1] for m in found if m.startswith("longtail.")}


def _layer(path: Path) -> str | None:
    part = path.relative_to(SRC).parts[0].removesuffix(".py")
    if part in CORE:
        return "core"
    return part if part in ABOVE else None


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_a_layer_above_it(path):
    layer = _layer(path)
    if layer is None:
        return
    upward = _imports(path) & set(ABOVE[layer])
    assert not upward, f"{path.relative_to(SRC)} imports {sorted(upward)} from above its layer"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_every_module_says_what_it_exports(path):
    import importlib

    module = ".".join(("longtail", *path.relative_to(SRC).with_suffix("").parts))
    module = importlib.import_module(module.removesuffix(".__init__"))
    assert isinstance(getattr(module, "__all__", None), list), f"{path.name} has no __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{path.name} exports names it does not have: {missing}"


def test_the_loop_asks_no_strategy_what_type_it_is():
    tree = ast.parse((SRC / "training" / "trainer.py").read_text())
    names = {"Sampler", "Loss", "Curriculum", "BalancedBatch", "LDAM", "Focal"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
            "isinstance",
            "hasattr",
        ):
            text = ast.unparse(node)
            assert (
                not any(n in text for n in names)
                and "sampler" not in text
                and "criterion" not in text
            ), text


def _roundtrip(state):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_every_name_a_public_module_exports_exists():
    import importlib

    for name in ("longtail", "longtail.losses", "longtail.metrics", "longtail.sampling"):
        module = importlib.import_module(name)
        assert module.__all__ and all(hasattr(module, n) for n in module.__all__), name
