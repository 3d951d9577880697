"""The main job at scale, on the embedded set: how many trainings the default comparison needs
against its strategies x seeds grid, and its wall time run in this process (``--jobs 1``), over
two local processes (``--jobs 2``) and as tasks on a local Ray cluster, in one run, with every
result compared for equality.

Usage: python benchmarks/compare.py [--seeds 3] [--epochs 10] [--strategies A,B,...]

Each comparison starts from an empty output folder. Prints the counts, each executor's wall time
and its ratio to ``--jobs 1``, and whether its results.json metrics equal those of ``--jobs 1``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from longtail.data.bundle import embedded_bundle
from longtail.experiments.compare import run_compare
from longtail.experiments.plan import DEFAULT_STRATEGIES
from longtail.strategies import split_outside_brackets
from longtail.training.loop import TrainConfig

EXECUTORS = {"--jobs 1": {}, "--jobs 2": {"jobs": 2}, "--launcher ray": {"launcher": "ray"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--strategies", help="comma-separated (default: compare's default set)")
    args = parser.parse_args()
    strategies = (
        split_outside_brackets(args.strategies, ",")
        if args.strategies
        else list(DEFAULT_STRATEGIES)
    )
    data = embedded_bundle()
    config = replace(TrainConfig(), epochs=args.epochs, progress=False)
    seeds = list(range(args.seeds))
    quiet = Console(quiet=True)
    times, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, how in EXECUTORS.items():
            t0 = time.perf_counter()
            out = Path(tmp) / name.strip("-").replace(" ", "_")
            results[name] = run_compare(data, strategies, seeds, config, out, quiet, **how)
            times[name] = time.perf_counter() - t0
    first = results["--jobs 1"]
    print(
        f"{len(strategies)} strategies x {len(seeds)} seeds = {first.grid} runs, "
        f"{first.trainings} stage trainings (first stages shared, post-hoc stages evaluated)"
    )
    for name, seconds in times.items():
        same = results[name].metrics == first.metrics
        print(
            f"{name:16} {seconds:7.1f} s  {seconds / times['--jobs 1']:.2f}x of --jobs 1  "
            f"metrics {'identical' if same else 'DIFFERENT'}"
        )


if __name__ == "__main__":
    main()
