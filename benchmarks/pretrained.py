"""From scratch against a pretrained backbone on the embedded set: how much of the gap to balanced
data each regime closes.

Usage: python benchmarks/pretrained.py SOURCE_DIR [--seeds 3] [--epochs 10] [--tuned-epochs 10]
       [--regimes scratch,frozen,tuned]

SOURCE_DIR holds the original Fashion-MNIST files (for the balanced references, as in
``benchmarks/balanced_reference.py``). Regimes, each mean of ``--seeds`` seeds on the official
test set:

- scratch: the demo's model (mlp, ``--epochs``) with plain training and the demo's best strategy;
- frozen: ``small_cnn --pretrained embedded --tune frozen`` (the shipped backbone, pretrained
  without labels), a linear head on features computed once, ``--epochs``, lr 0.01: plain
  training, every strategy of ``longtail compare``'s default set (but the rows with settings of their own), and the same backbone's
  balanced references (a balanced set of as many images, and the full balanced set);
- tuned: ``--tune last[n=1]``, ``lora[r=8,alpha=16]`` and ``full`` from the same backbone on the
  images (``--tuned-epochs``), with plain training and the frozen regime's best strategy.

Prints balanced accuracy and tail recall per row, each regime's best, and the best frozen
strategy's share of the gap between frozen plain training and the full balanced reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import numpy as np
from balanced_reference import balanced_bundles

from longtail.data.bundle import DataBundle, embedded_bundle
from longtail.experiments.plan import DEFAULT_STRATEGIES
from longtail.training.backbones import frozen_features
from longtail.training.loop import TrainConfig, train

SCRATCH = TrainConfig(progress=False)
FROZEN = TrainConfig(
    model="small_cnn", pretrained="embedded", tune="frozen", lr=1e-2, progress=False
)
SCRATCH_BEST = "instance+balanced_softmax"  # the demo's best (docs/demo_results.json)
TUNINGS = ("last[n=1]", "lora[r=8,alpha=16]", "full")


def score(data: DataBundle, config: TrainConfig, seeds: int) -> tuple[float, float]:
    """Mean test (balanced accuracy, tail recall) of ``config`` over ``seeds`` seeds."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            result = train(replace(config, seed=seed), data, f"{tmp}/s{seed}")
            tail = result.test.summary["tail_recall"]  # None: a balanced set has no tail
            summary = result.test.summary
            rows.append((summary["balanced_accuracy"], np.nan if tail is None else tail))
    return tuple(np.mean(rows, axis=0).tolist())  # type: ignore[return-value]


def show(regime: str, name: str, value: tuple[float, float], seconds: float) -> None:
    print(
        f"{regime:8s} {name:42s} {100 * value[0]:6.1f} {100 * value[1]:7.1f} {seconds:7.1f}s",
        flush=True,
    )


def run(regime: str, data: DataBundle, config: TrainConfig, names: list[str], seeds: int) -> dict:
    out = {}
    for name in names:
        start = time.perf_counter()
        out[name] = score(data, replace(config, strategy=name), seeds)
        show(regime, name, out[name], time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tuned-epochs", type=int, default=10)
    parser.add_argument("--regimes", default="scratch,frozen,tuned")
    args = parser.parse_args()
    regimes = args.regimes.split(",")
    lt = embedded_bundle()
    print(f"{'regime':8s} {'strategy':42s} {'bal acc':>6s} {'tail R':>7s} {'time':>8s}")
    if "scratch" in regimes:
        scratch = run(
            "scratch",
            lt,
            replace(SCRATCH, epochs=args.epochs),
            ["instance+ce", SCRATCH_BEST],
            args.seeds,
        )
        print(f"scratch best: {max(scratch, key=lambda n: scratch[n][0])}")
    frozen_config = replace(FROZEN, epochs=args.epochs)
    start = time.perf_counter()
    features = frozen_features(frozen_config, lt)
    print(f"features of the long-tailed set computed once in {time.perf_counter() - start:.1f}s")
    plain_rows = [s for s in DEFAULT_STRATEGIES if "@" not in s]  # rows with recipes of their own
    frozen = run("frozen", features, frozen_config, plain_rows, args.seeds)
    plain, best = frozen["instance+ce"][0], max(frozen, key=lambda n: frozen[n][0])
    full, same = balanced_bundles(args.source, lt)
    refs = {}
    for label, bundle in (("balanced, same size", same), ("balanced, full", full)):
        start = time.perf_counter()
        refs[label] = score(frozen_features(frozen_config, bundle), frozen_config, args.seeds)
        show("frozen", f"instance+ce on {label}", refs[label], time.perf_counter() - start)
    gap = refs["balanced, full"][0] - plain
    share = (frozen[best][0] - plain) / gap if gap > 0 else float("nan")
    print(f"frozen best: {best}, {100 * share:.0f}% of the gap to the full balanced reference")
    if "tuned" in regimes:
        for tune in TUNINGS:
            config = replace(frozen_config, tune=tune, lr=1e-3, epochs=args.tuned_epochs)
            run(tune, lt, config, ["instance+ce", best], args.seeds)


if __name__ == "__main__":
    main()
