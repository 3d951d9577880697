"""Data: folder and manifest indexes, datasets, the embedded default set, splits and bundles.

This package's own namespace holds only the constants the command line needs before anything
heavy is imported.
"""

IMAGE_SIZE = 64
"""The side of the square images a folder data set is read at unless told otherwise."""

PRESETS = ("standard", "aerial", "none")
"""The training augmentation presets (:mod:`longtail.data.augment`)."""

OWN_TRANSFORMS = "dataset"
"""The augmentation of a dataset that applies its own transforms."""


__all__ = [
    "IMAGE_SIZE",
    "OWN_TRANSFORMS",
    "PRESETS",
]
