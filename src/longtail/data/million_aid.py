"""Million-AID (Long et al., "On Creating Benchmark Dataset for Aerial Image Interpretation",
IEEE JSTARS 2021): ~1M aerial scene images in a 3-level hierarchy of 8 / 28 / 51 classes.

The release keeps each split in a folder of class folders whose leaves sit at depth 3
(``train/agriculture_land/arable_land/dry_field/*.jpg``) or at depth 2 when a level-2 class has no
sub-classes (``train/water_area/lake/*.jpg``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from longtail.data.datasets import FolderDataset
from longtail.data.index import build_index
from longtail.errors import LongtailError, MissingInputError

URL = "https://captain-whu.github.io/DiRS/"
LEVEL1 = (
    "agriculture_land",
    "commercial_land",
    "industrial_land",
    "public_service_land",
    "residential_land",
    "transportation_land",
    "unutilized_land",
    "water_area",
)
NUM_LEAVES = 51


class MillionAID(FolderDataset):
    """Million-AID images of ``split`` labelled at hierarchy ``level`` (1: 8 classes, 2: 28, 3: the
    51 leaves). Checks the on-disk layout and says what is missing; ``targets`` and ``class_names``
    follow the chosen level. Other arguments go to :class:`FolderDataset`."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        level: int = 3,
        image_size: int = 224,
        rescan: bool = False,
        **kwargs: Any,
    ) -> None:
        if level not in (1, 2, 3):
            raise LongtailError(
                f"level must be 1 (8 classes), 2 (28) or 3 (51 leaves), got {level}"
            )
        folder = Path(root) / split
        expected = (
            f"{folder}/<level1>/<level2>[/<level3>]/*.jpg, with level-1 folders {', '.join(LEVEL1)}"
        )
        if not folder.is_dir():
            raise MissingInputError(
                f"Million-AID split folder {folder} not found; expected {expected}. "
                f"Million-AID is published at {URL}: download it and extract it so that {folder} exists."
            )
        index = build_index(folder, rescan=rescan)
        depths = {d: d.count("/") + 1 for d in index.class_dirs}
        bad_depth = [d for d, n in depths.items() if n not in (2, 3)]
        unknown = sorted({d.split("/", 1)[0] for d in index.class_dirs} - set(LEVEL1))
        if bad_depth or unknown:
            problem = (
                f"class folders at depth other than 2 or 3: {bad_depth[:5]}"
                if bad_depth
                else f"unknown level-1 folders: {unknown}"
            )
            raise LongtailError(
                f"{folder} is not laid out like Million-AID ({problem}); expected {expected}. See {URL}."
            )
        if index.num_classes != NUM_LEAVES:
            warnings.warn(
                f"{folder} has {index.num_classes} leaf classes, Million-AID has {NUM_LEAVES}; a subset?",
                stacklevel=2,
            )
        super().__init__(index, None, image_size, None if level == 3 else level, **kwargs)
        self.level = level


__all__ = [
    "LEVEL1",
    "NUM_LEAVES",
    "URL",
    "MillionAID",
]
