"""The ceiling for the demo: the demo's model and settings trained on the full, balanced
Fashion-MNIST training set (the 59,000 images not held out for validation) instead of the
long-tailed 14,639, evaluated on the same official test set.

Usage: python benchmarks/balanced_reference.py SOURCE_DIR [--seeds 3] [--strategies A,B,...]

A strategy may carry training settings after ``@``, as in ``longtail compare``:
``weighted+ce@mix=remix[alpha=0.2]@augment=none`` (the model and epochs stay those of every
other row). Plain training
and the balanced reference are each trained under every augmentation preset, and each is taken
at its best, so a preset that weakens the baseline cannot widen the gap.

SOURCE_DIR holds the original Fashion-MNIST files (e.g. /usr/share/datasets/fashion-mnist from
Debian's dataset-fashion-mnist). Prints, in one run, the balanced accuracy of plain training on the
balanced set and on the long-tailed set (the gap), then of each strategy on the long-tailed set
(default: ``longtail compare``'s default set) with the share of the gap it closes, mean of
``--seeds`` seeds, and the best strategy's share.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import numpy as np

from longtail.data.augment import PRESETS
from longtail.data.bundle import DataBundle, embedded_bundle
from longtail.data.datasets import ArrayDataset
from longtail.data.fashion_mnist_lt import read_idx
from longtail.distribution import ClassDistribution
from longtail.experiments.plan import parse_row
from longtail.strategies import DEFAULT_STRATEGIES, split_outside_brackets
from longtail.training.loop import TrainConfig, train
from longtail.training.models import default_augment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder with the original Fashion-MNIST files")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--strategies", help="comma-separated strategies (default: compare's default set)"
    )
    args = parser.parse_args()
    strategies = (
        split_outside_brackets(args.strategies, ",")
        if args.strategies
        else [s for s in DEFAULT_STRATEGIES if s != "instance+ce"]
    )
    lt = embedded_bundle()
    images = read_idx(f"{args.source}/train-images-idx3-ubyte.gz")
    labels = read_idx(f"{args.source}/train-labels-idx1-ubyte.gz").astype(np.int64)
    from importlib import resources

    with (
        resources.files("longtail.data").joinpath("fashion_mnist_lt.npz").open("rb") as fh,
        np.load(fh) as z,
    ):
        val_source = z["val_source_index"]
    keep = np.setdiff1d(np.arange(labels.size), val_source)
    # same normalisation as the long-tailed run, so only the training distribution differs
    full = ArrayDataset(images[keep], labels[keep], lt.train.mean.tolist(), lt.train.std.tolist())
    balanced = DataBundle(
        full,
        lt.val,
        lt.test,
        ClassDistribution.from_labels(labels[keep], class_names=lt.distribution.class_names),
        1,
        28,
        "Fashion-MNIST (balanced)",
    )
    config = TrainConfig(progress=False)
    print(
        f"model {config.model}, {config.epochs} epochs, {config.optimizer} lr {config.lr}, batch {config.batch_size}, "
        f"augmentation: each row's own, else the model's default ({default_augment(config.model)})"
    )

    def mean_score(data: DataBundle, text: str) -> tuple[float, list[float]]:
        row = parse_row(text)  # refuses a row's own model or epochs
        scores = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as out:
                run = replace(config, strategy=row.strategy.label, seed=seed, **dict(row.recipe))
                r = train(run, data, out)
            scores.append(100 * r.test.summary["balanced_accuracy"])
        return float(np.mean(scores)), scores

    def best_preset(data: DataBundle, name: str) -> float:
        """Plain training on ``data`` under every preset; the best mean."""
        best = -1.0
        for preset in PRESETS:
            mean, scores = mean_score(data, f"instance+ce@augment={preset}")
            line(f"instance+ce on {name}, augment {preset}", scores)
            best = max(best, mean)
        return best

    def line(name: str, scores: list[float], extra: str = "") -> None:
        seeds = ", ".join(f"{s:.1f}" for s in scores)
        print(
            f"{name:48s} {np.mean(scores):5.1f} ± {np.std(scores):.1f}  (seeds: {seeds}){extra}",
            flush=True,
        )

    print(f"{'balanced accuracy (%), mean of ' + str(args.seeds) + ' seeds':48s}")
    ceiling = best_preset(balanced, "the balanced set (59,000)")
    floor = best_preset(lt, "the long-tailed set (14,639)")
    print(f"gap between the two, each at its best preset: {ceiling - floor:.1f} points")
    shares = {}
    for strategy in strategies:
        mean, scores = mean_score(lt, strategy)
        shares[strategy] = (mean - floor) / (ceiling - floor)
        line(strategy, scores, f"  closes {100 * shares[strategy]:.0f}% of the gap")
    best = max(shares, key=shares.__getitem__)
    print(f"best: {best}, closing {100 * shares[best]:.0f}% of the {ceiling - floor:.1f}-point gap")


if __name__ == "__main__":
    main()
