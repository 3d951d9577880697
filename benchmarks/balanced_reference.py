"""The ceiling for the demo: the demo's model and settings trained on the full, balanced
Fashion-MNIST training set (the 59,000 images not held out for validation) instead of the
long-tailed 14,639, evaluated on the same official test set.

Usage: python benchmarks/balanced_reference.py SOURCE_DIR [--seeds 3]

SOURCE_DIR holds the original Fashion-MNIST files (e.g. /usr/share/datasets/fashion-mnist from
Debian's dataset-fashion-mnist). Prints balanced accuracy per seed and the mean, next to plain
training on the long-tailed set, so the demo table can be read as "how much of the gap is closed".
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import numpy as np

from longtail.data.bundle import DataBundle, embedded_bundle
from longtail.data.datasets import ArrayDataset
from longtail.data.fashion_mnist_lt import read_idx
from longtail.distribution import ClassDistribution
from longtail.training.loop import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder with the original Fashion-MNIST files")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
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
        f"model {config.model}, {config.epochs} epochs, {config.optimizer} lr {config.lr}, batch {config.batch_size}"
    )
    results = {}
    for name, data in (("long-tailed (14,639)", lt), ("balanced (59,000)", balanced)):
        scores = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as out:
                r = train(replace(config, seed=seed), data, out)
            scores.append(r["test"]["summary"]["balanced_accuracy"])
        results[name] = scores
        print(
            f"{name:22s} balanced accuracy {100 * np.mean(scores):.1f} ± {100 * np.std(scores):.1f}  (seeds: {', '.join(f'{100 * s:.1f}' for s in scores)})"
        )


if __name__ == "__main__":
    main()
