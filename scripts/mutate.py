"""Mutation testing of longtail's core modules: does the suite notice when behaviour breaks?

Each mutant is one small AST change to one module (an arithmetic, comparison or boolean operator
swapped, a constant nudged, a unary ``not``/minus dropped, a keyword default changed, a call's
result or a statement removed). The module's tests run against it (``pytest -x``, in a copy of
``src/``); a mutant is *caught* when they fail. Docstrings, error messages and type annotations are
not mutated.

    python scripts/mutate.py sampling/plans.py weights.py     # one module at a time, resumable
    python scripts/mutate.py --list-survivors metrics.py

Results go to ``.mutants/MODULE.json``; a rerun of the same module source skips the mutants
already caught and tries the survivors again if the tests have changed. ``--sample N`` tests an even sample of N mutants per module (default:
all of them). Mutants known to be equivalent (no input can tell them apart) are listed with the
reason in ``scripts/equivalent_mutants.json`` and counted apart.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "longtail"
STATE = ROOT / ".mutants"
EQUIVALENT = ROOT / "scripts" / "equivalent_mutants.json"

TESTS = {
    "sampling/plans.py": [
        "tests/sampling/test_plans.py",
        "tests/sampling/test_samplers.py",
        "tests/suites/test_torch_sampler_semantics.py",
    ],
    "weights.py": ["tests/test_weights.py", "tests/sampling/test_samplers.py"],
    "metrics.py": ["tests/test_metrics.py"],
    "losses.py": ["tests/test_losses.py", "tests/strategies/test_registry.py"],
    "distribution.py": ["tests/test_distribution.py"],
}

SWAP_BINOP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
}
SWAP_CMP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


@dataclass(frozen=True)
class Mutant:
    """One change: node ``index`` in the module's walk order, of ``kind``."""

    index: int
    kind: str
    line: int
    description: str

    @property
    def key(self) -> str:
        return f"{self.line}:{self.index}:{self.kind}"


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, raise statements' messages, and the
    arguments of logging/warnings calls."""
    skip: set[int] = set()

    def drop(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                drop(body[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            drop(node.returns)
            for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                drop(a.annotation)
            if node.args.vararg:
                drop(node.args.vararg.annotation)
            if node.args.kwarg:
                drop(node.args.kwarg.annotation)
        if isinstance(node, ast.AnnAssign):
            drop(node.annotation)
        if isinstance(node, ast.Raise):
            drop(node)
        if isinstance(node, (ast.JoinedStr, ast.Import, ast.ImportFrom)):
            drop(node)
    return skip


def enumerate_mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    skip = _skipped_nodes(tree)
    out: list[Mutant] = []
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        line = getattr(node, "lineno", 0)
        for kind, desc in _kinds(node):
            out.append(Mutant(index, kind, line, desc))
    return out


def _kinds(node: ast.AST) -> Iterator[tuple[str, str]]:
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAP_BINOP:
        new = SWAP_BINOP[type(node.op)].__name__
        yield "binop", f"{type(node.op).__name__} -> {new}"
    elif isinstance(node, ast.Compare) and type(node.ops[0]) in SWAP_CMP:
        yield "compare", f"{type(node.ops[0]).__name__} -> {SWAP_CMP[type(node.ops[0])].__name__}"
    elif isinstance(node, ast.BoolOp):
        yield (
            "boolop",
            f"{type(node.op).__name__} -> {'Or' if isinstance(node.op, ast.And) else 'And'}",
        )
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.Invert)):
        yield "unary", f"drop {type(node.op).__name__}"
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
        yield "constant", f"{node.value!r} -> {_nudge(node.value)!r}"
    elif isinstance(node, ast.Return) and not (
        node.value is None or (isinstance(node.value, ast.Constant) and node.value.value is None)
    ):
        yield "return", "return None"
    elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Expr)) and not isinstance(
        getattr(node, "value", None), ast.Constant
    ):
        yield "statement", "statement removed"


def _nudge(value: int | float | bool) -> int | float | bool:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 if value != 1 else 0
    return value * 1.5 + (1.0 if value == 0 else 0.0)


class _Apply(ast.NodeTransformer):
    def __init__(self, mutant: Mutant, nodes: list[ast.AST]) -> None:
        self.target = nodes[mutant.index]
        self.kind = mutant.kind

    def visit(self, node: ast.AST) -> ast.AST | None:
        if node is not self.target:
            return self.generic_visit(node)
        if self.kind == "binop":
            node.op = SWAP_BINOP[type(node.op)]()
        elif self.kind == "compare":
            node.ops = [SWAP_CMP[type(node.ops[0])](), *node.ops[1:]]
        elif self.kind == "boolop":
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        elif self.kind == "unary":
            return node.operand
        elif self.kind == "constant":
            node.value = _nudge(node.value)
        elif self.kind == "return":
            node.value = ast.Constant(None)
        elif self.kind == "statement":
            return ast.Pass()
        return node


def mutated_source(source: str, mutant: Mutant) -> str:
    tree = ast.parse(source)
    nodes = list(ast.walk(tree))
    tree = _Apply(mutant, nodes).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def _digest(module: str) -> str:
    return hashlib.sha256((SRC / module).read_bytes()).hexdigest()


def _tests_digest(module: str) -> str:
    h = hashlib.sha256()
    for t in TESTS[module]:
        if (ROOT / t).exists():
            h.update((ROOT / t).read_bytes())
    return h.hexdigest()


def _run_one(module: str, mutant: Mutant, source: str, timeout: float) -> str:
    """'caught', 'survived' or 'timeout' for one mutant, run in a private copy of src/."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        shutil.copytree(
            ROOT / "src",
            Path(tmp) / "src",
            ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"),
        )
        (Path(tmp) / "src" / "longtail" / module).write_text(mutated_source(source, mutant))
        env = dict(
            os.environ, PYTHONPATH=f"{tmp}/src{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1"
        )
        tests = [t for t in TESTS[module] if (ROOT / t).exists()]
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout"  # an endless loop is caught too: counted as caught
        return "survived" if proc.returncode == 0 else "caught"


def _even_sample(mutants: list[Mutant], n: int | None) -> list[Mutant]:
    if n is None or n >= len(mutants):
        return mutants
    step = len(mutants) / n
    return [mutants[int(i * step)] for i in range(n)]


def run_module(module: str, sample: int | None, jobs: int, timeout: float) -> dict:
    source = (SRC / module).read_text()
    mutants = _even_sample(enumerate_mutants(source), sample)
    STATE.mkdir(exist_ok=True)
    state_path = STATE / (module.replace("/", "__") + ".json")
    digest = _digest(module)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("digest") != digest:
        state = {"digest": digest, "results": {}}
    tests = _tests_digest(module)
    # a caught mutant stays caught; a survivor is tried again once the tests have changed
    todo = [
        m
        for m in mutants
        if m.key not in state["results"]
        or (
            state["results"][m.key]["outcome"] == "survived"
            and state["results"][m.key].get("tests") != tests
        )
    ]
    print(f"{module}: {len(mutants)} mutants, {len(todo)} to run", flush=True)

    def work(m: Mutant) -> tuple[Mutant, str]:
        return m, _run_one(module, m, source, timeout)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for done, (m, outcome) in enumerate(pool.map(work, todo), 1):
            state["results"][m.key] = {
                "outcome": outcome,
                "line": m.line,
                "change": m.description,
                "tests": tests,
            }
            state_path.write_text(json.dumps(state, indent=1))
            if outcome == "survived":
                print(f"  survived line {m.line}: {m.description}", flush=True)
            if done % 20 == 0:
                print(f"  {done}/{len(todo)}", flush=True)
    return _score(module, mutants, state)


def _equivalent() -> dict[str, dict[str, str]]:
    return json.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}


def _score(module: str, mutants: list[Mutant], state: dict) -> dict:
    eq = _equivalent().get(module, {})
    results = {m.key: state["results"].get(m.key, {}).get("outcome") for m in mutants}
    survivors = [m for m in mutants if results[m.key] == "survived"]
    equivalent = [m for m in survivors if m.key in eq]
    live = [m for m in survivors if m.key not in eq]
    tested = sum(1 for v in results.values() if v is not None)
    caught = sum(1 for v in results.values() if v in ("caught", "timeout"))
    denominator = tested - len(equivalent)
    return {
        "module": module,
        "mutants": len(mutants),
        "tested": tested,
        "caught": caught,
        "equivalent": len(equivalent),
        "score": caught / denominator if denominator else 1.0,
        "survivors": [f"line {m.line}: {m.description} [{m.key}]" for m in live],
        "equivalent_list": [f"line {m.line}: {m.description}: {eq[m.key]}" for m in equivalent],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("modules", nargs="*", default=list(TESTS), help=f"of {', '.join(TESTS)}")
    p.add_argument("--sample", type=int, help="an even sample of N mutants per module")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--list-survivors", action="store_true", help="report only, run nothing")
    args = p.parse_args()
    failed = False
    for module in args.modules:
        if module not in TESTS:
            p.error(f"unknown module {module!r}; choose from {', '.join(TESTS)}")
        if args.list_survivors:
            source = (SRC / module).read_text()
            state_path = STATE / (module.replace("/", "__") + ".json")
            state = json.loads(state_path.read_text()) if state_path.exists() else {"results": {}}
            report = _score(module, _even_sample(enumerate_mutants(source), args.sample), state)
        else:
            report = run_module(module, args.sample, args.jobs, args.timeout)
        print(
            f"{module}: {report['caught']} / {report['tested'] - report['equivalent']} caught "
            f"({100 * report['score']:.0f}%), {report['equivalent']} equivalent, "
            f"{report['mutants'] - report['tested']} not run"
        )
        for line in report["survivors"]:
            print(f"  survivor {line}")
        for line in report["equivalent_list"]:
            print(f"  equivalent {line}")
        failed |= report["score"] < 0.9
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
