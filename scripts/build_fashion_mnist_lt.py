"""Rebuild the embedded Fashion-MNIST-LT from the original files and check it matches the shipped one.

Usage: python scripts/build_fashion_mnist_lt.py SOURCE_DIR [--write]

SOURCE_DIR holds the four original ``*-ubyte.gz`` files (e.g. /usr/share/datasets/fashion-mnist from
Debian's dataset-fashion-mnist). Without --write it only compares; with --write it replaces the
shipped file.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources

import numpy as np

from longtail.data.fashion_mnist_lt import FILE_NAME, build_fashion_mnist_lt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder with the original Fashion-MNIST files")
    parser.add_argument("--write", action="store_true", help="write the shipped file")
    args = parser.parse_args()
    arrays = build_fashion_mnist_lt(args.source)
    target = resources.files("longtail.data").joinpath(FILE_NAME)
    if args.write:
        with open(str(target), "wb") as fh:
            np.savez_compressed(fh, **arrays)
        print(f"wrote {target}")
    with target.open("rb") as fh, np.load(fh) as shipped:
        mismatched = [
            k for k in arrays if k not in shipped or not np.array_equal(shipped[k], arrays[k])
        ]
        extra = [k for k in shipped.files if k not in arrays]
    for key, arr in arrays.items():
        print(f"{key:20s} {str(arr.shape):18s} {arr.dtype}")
    if mismatched or extra:
        print(f"MISMATCH: {mismatched + extra}")
        return 1
    print("identical to the shipped file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
