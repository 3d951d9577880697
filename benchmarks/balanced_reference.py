"""The ceiling for the demo: the demo's model and settings trained on the full, balanced
Fashion-MNIST training set (the 59,000 images not held out for validation) instead of the
long-tailed 14,639, evaluated on the same official test set.

Usage: python benchmarks/balanced_reference.py SOURCE_DIR [--seeds 3] [--strategies A,B,...]

A strategy may carry training settings after ``@``, as in ``longtail compare``:
``weighted+ce@mix=remix[alpha=0.2]@augment=none`` (the model and epochs stay those of every
other row). Plain training and the balanced reference are each trained under every augmentation
preset, and each is taken at its best, so a preset that weakens the baseline cannot widen the gap.

SOURCE_DIR holds the original Fashion-MNIST files (e.g. /usr/share/datasets/fashion-mnist from
Debian's dataset-fashion-mnist). Prints, in one run, the balanced accuracy of plain training on the
balanced set and on the long-tailed set (the gap), then of each strategy on the long-tailed set
(default: ``longtail compare``'s default set) with the share of the gap it closes, mean of
``--seeds`` seeds, and the best strategy's share. A second reference, a balanced set of as many
images as the long-tailed one (every class the same share of it), splits the gap in two: what
the imbalance costs, and what the 4x fewer images cost whatever their balance.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from importlib import resources

import numpy as np

from longtail.data.augment import PRESETS
from longtail.data.bundle import DataBundle, embedded_bundle
from longtail.data.datasets import ArrayDataset
from longtail.data.fashion_mnist_lt import read_idx
from longtail.distribution import ClassDistribution
from longtail.experiments.plan import DEFAULT_STRATEGIES, parse_row
from longtail.strategies import split_outside_brackets
from longtail.training.loop import TrainConfig, train
from longtail.training.models import default_augment

CONFIG = TrainConfig(progress=False)


def balanced_bundles(source: str, lt: DataBundle) -> tuple[DataBundle, DataBundle]:
    """The full balanced training set (every image not held out for validation), and a balanced
    subset of it as large as the long-tailed set (the first images of each class in a fixed
    random order); both with the long-tailed set's validation and test splits and
    normalisation, so that only the training distribution differs."""
    images = read_idx(f"{source}/train-images-idx3-ubyte.gz")
    labels = read_idx(f"{source}/train-labels-idx1-ubyte.gz").astype(np.int64)
    with (
        resources.files("longtail.data").joinpath("fashion_mnist_lt.npz").open("rb") as fh,
        np.load(fh) as z,
    ):
        val_source = z["val_source_index"]
    keep = np.setdiff1d(np.arange(labels.size), val_source)
    classes = lt.distribution.num_classes
    per_class = len(lt.train) // classes
    order = np.random.default_rng(0).permutation(keep)
    same_size = np.sort(
        np.concatenate([order[labels[order] == c][:per_class] for c in range(classes)])
    )

    def bundle(index: np.ndarray, name: str) -> DataBundle:
        train_set = ArrayDataset(
            images[index], labels[index], lt.train.mean.tolist(), lt.train.std.tolist()
        )
        names = lt.distribution.class_names
        dist = ClassDistribution.from_labels(labels[index], class_names=names)
        return DataBundle(train_set, lt.val, lt.test, dist, 1, 28, name)

    return bundle(keep, "Fashion-MNIST (balanced)"), bundle(same_size, "balanced, same size")


def mean_score(data: DataBundle, text: str, seeds: int) -> list[float]:
    """Balanced accuracy (%) on the test split of the row ``text`` trained on ``data``, per seed."""
    row = parse_row(text)  # refuses a row's own model or epochs
    scores = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as out:
            run = replace(CONFIG, strategy=row.strategy.label, seed=seed, **dict(row.recipe))
            scores.append(100 * train(run, data, out).test.summary["balanced_accuracy"])
    return scores


def line(name: str, scores: list[float], extra: str = "") -> None:
    seeds = ", ".join(f"{s:.1f}" for s in scores)
    print(
        f"{name:48s} {np.mean(scores):5.1f} ± {np.std(scores):.1f}  (seeds: {seeds}){extra}",
        flush=True,
    )


def best_preset(data: DataBundle, name: str, seeds: int) -> float:
    """Plain training on ``data`` under every augmentation preset; the best mean."""
    best = -1.0
    for preset in PRESETS:
        scores = mean_score(data, f"instance+ce@augment={preset}", seeds)
        line(f"instance+ce on {name}, augment {preset}", scores)
        best = max(best, float(np.mean(scores)))
    return best


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
    full, same_size = balanced_bundles(args.source, lt)
    print(
        f"model {CONFIG.model}, {CONFIG.epochs} epochs, {CONFIG.optimizer} lr {CONFIG.lr}, "
        f"batch {CONFIG.batch_size}, augmentation: each row's own, else the model's default "
        f"({default_augment(CONFIG.model)})"
    )
    print(f"{'balanced accuracy (%), mean of ' + str(args.seeds) + ' seeds':48s}")
    ceiling = best_preset(full, f"the balanced set ({len(full.train):,})", args.seeds)
    middle = best_preset(same_size, f"balanced, same size ({len(same_size.train):,})", args.seeds)
    floor = best_preset(lt, f"the long-tailed set ({len(lt.train):,})", args.seeds)
    gap = ceiling - floor
    print(
        f"gap between the balanced and the long-tailed set, each at its best preset: {gap:.1f} "
        f"points, of which the imbalance (balanced, same size) {middle - floor:.1f}"
    )
    shares = {}
    for strategy in strategies:
        scores = mean_score(lt, strategy, args.seeds)
        shares[strategy] = (float(np.mean(scores)) - floor) / gap
        of_imbalance = (float(np.mean(scores)) - floor) / (middle - floor)
        line(
            strategy,
            scores,
            f"  closes {100 * shares[strategy]:.0f}% of the gap "
            f"({100 * of_imbalance:.0f}% of the imbalance's part)",
        )
    best = max(shares, key=shares.__getitem__)
    print(f"best: {best}, closing {100 * shares[best]:.0f}% of the {gap:.1f}-point gap")


if __name__ == "__main__":
    main()
