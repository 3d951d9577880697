"""Data: folder and manifest indexes, datasets, the embedded default set, splits and bundles."""

IMAGE_SIZE = 64
"""The side of the square images a folder data set is read at unless told otherwise."""


__all__ = [
    "IMAGE_SIZE",
]
