"""Ready-to-train data: train / validation / test datasets with the training distribution."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from longtail._io import OUTPUT_MARKER
from longtail._text import terminal_text
from longtail.data import IMAGE_SIZE
from longtail.data.datasets import ArrayDataset, FolderDataset, bad_images
from longtail.data.fashion_mnist_lt import load_fashion_mnist_lt
from longtail.data.index import ImageIndex, ScanProgress, build_index, check_no_shared_files
from longtail.data.splits import stratified_split
from longtail.distribution import ClassDistribution
from longtail.errors import LongtailError, shorten

log = logging.getLogger("longtail")


@dataclass
class DataBundle:
    """Train / validation / test datasets (each exposing ``targets``) and the training distribution.

    ``source`` describes where the data came from and how it was split (folder, level, image
    size, split seed, ...); with the per-split class counts it makes :meth:`fingerprint`, the data's
    part of a run's identity. ``bad_image_log`` is where folder datasets record unreadable images.
    """

    train: Dataset
    val: Dataset
    test: Dataset | None
    distribution: ClassDistribution
    in_channels: int
    image_size: int
    name: str = "data"
    extras: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    bad_image_log: Path | None = None
    _announced: set[str] = field(default_factory=set, repr=False)

    def fingerprint(self) -> dict[str, Any]:
        """What defines the data a model sees: the source and its settings, the class names (and
        the class tree, where there is one: a tree-aware sampler or loss depends on it), the
        class counts of every split, and a digest of each split's labels in order and, for
        folder data, its files with their sizes and modification times (so that moving an image
        to another class, or rewriting it in place, changes it)."""
        counts = {
            part: np.bincount(
                np.asarray(ds.targets), minlength=self.distribution.num_classes
            ).tolist()
            for part, ds in (("train", self.train), ("val", self.val), ("test", self.test))
            if ds is not None
        }
        return {
            "name": self.name,
            **self.source,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "classes": list(self.distribution.class_names),
            **({"tree": [list(p) for p in tree]} if (tree := self.distribution.hierarchy) else {}),
            "counts": counts,
            "content": {
                part: split_digest(ds)
                for part, ds in (("train", self.train), ("val", self.val), ("test", self.test))
                if ds is not None
            },
        }

    def unreadable_images(self) -> dict[str, str]:
        """Unreadable images recorded so far (path -> reason), each once."""
        return bad_images(self.bad_image_log) if self.bad_image_log is not None else {}

    def new_unreadable_images(self) -> dict[str, str]:
        """Those of :meth:`unreadable_images` not returned by an earlier call."""
        new = {p: r for p, r in self.unreadable_images().items() if p not in self._announced}
        self._announced.update(new)
        return new


def split_digest(dataset: Dataset) -> str:
    """SHA-256 of a split's labels in order, and of its file paths where it has them (a
    :class:`FolderDataset`, or a dataset with torchvision's ``samples``); for a
    :class:`FolderDataset` also of each file's size and modification time (rsync's quick check:
    an image rewritten in place changes the digest). A ``stat`` per file, no file read."""
    digest = hashlib.sha256(np.asarray(dataset.targets, dtype=np.int64).tobytes())
    if isinstance(dataset, FolderDataset):
        sizes, mtimes = dataset.index.file_stats()
        digest.update(sizes[dataset.indices].tobytes() + mtimes[dataset.indices].tobytes())
        picked = dataset.indices.tolist()
        paths = list(itemgetter(*picked)(dataset.index.paths)) if len(picked) > 1 else []
        paths += [dataset.index.paths[picked[0]]] if len(picked) == 1 else []
    else:
        paths = [str(sample[0]) for sample in getattr(dataset, "samples", ())]
    digest.update("\0".join(paths).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def embedded_bundle() -> DataBundle:
    """The embedded Fashion-MNIST-LT: long-tailed train, balanced val and test, normalised with
    the training images' mean and std; its distribution carries the two-level class tree."""
    tr, va, te = (load_fashion_mnist_lt(s) for s in ("train", "val", "test"))
    train = ArrayDataset(tr.images, tr.labels)
    mean, std = train.mean.tolist(), train.std.tolist()
    dist = ClassDistribution.from_labels(
        tr.labels, class_names=tr.class_names, hierarchy=tr.hierarchy
    )
    return DataBundle(
        train,
        ArrayDataset(va.images, va.labels, mean, std),
        ArrayDataset(te.images, te.labels, mean, std),
        dist,
        1,
        28,
        "Fashion-MNIST-LT",
        source={"source": "embedded Fashion-MNIST-LT"},
    )


def folder_bundle(
    source: str | Path,
    *,
    image_size: int = IMAGE_SIZE,
    level: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    rescan: bool = False,
    bad_image_log: str | Path | None = None,
    progress: ScanProgress | None = None,
    allow_outside: bool = False,
) -> DataBundle:
    """Datasets over a class-folder tree or CSV manifest.

    If ``source`` holds ``train/`` (and ``val/`` and/or ``test/`` beside it), those folders are the
    splits (they must hold the same classes); a split without its folder is carved out of ``train/``,
    stratified (``val_fraction`` / ``test_fraction`` of each class). Without ``train/`` every image
    is split that way, so that every class appears in each part. A validation split carved out
    with fewer than 5 images of some class is reported: model choices and curriculum weights
    would follow noise there, and a ``val/`` folder avoids it. ``level`` picks the hierarchy level
    used as the label (None: the leaf classes). One file in two split folders (a link, a hard
    link) is refused, naming both paths; ``allow_outside`` lets links lead out of the folder.
    """
    source = Path(source)
    folder = partial(FolderDataset, image_size=image_size, level=level, bad_image_log=bad_image_log)
    splits = split_folders(source, allow_outside)
    given = {n: path for n, path in splits.items() if n != "train"}
    indexing = partial(build_index, rescan=rescan, progress=progress, allow_outside=allow_outside)
    train_index = indexing(splits.get("train", source))
    parts: dict[str, FolderDataset] = {}
    for name, path in given.items():
        index = indexing(path)
        _check_same_classes(train_index, index, name)
        _check_disjoint([train_index, *(p.index for p in parts.values()), index])
        parts[name] = folder(index, None)
    carve = [n for n in ("val", "test") if n not in parts]
    labels = _labels(train_index, level)
    if carve:
        fractions = {"val": val_fraction, "test": test_fraction}
        *carved, train_idx = stratified_split(
            labels, [fractions[n] for n in carve], seed, train_index.class_names
        )
        for name, idx in zip(carve, carved, strict=True):
            parts[name] = folder(train_index, idx)
    else:
        train_idx = np.arange(len(train_index))
    if "val" in carve:
        _warn_small_validation(parts["val"])
    train = folder(train_index, train_idx)
    val, test = parts["val"], parts["test"]
    full = train_index.distribution()
    if level is not None and level < full.num_levels:
        names = train.class_names
        hierarchy = full.at_level(level).hierarchy
    else:
        names, hierarchy = list(train_index.class_names), train_index.hierarchy
    dist = ClassDistribution.from_labels(train.targets.numpy(), len(names), names, hierarchy)
    settings = {
        "source": str(source.resolve()),
        "level": level,
        "split_seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "splits": {n: "folder" if n in given else "stratified" for n in ("val", "test")},
    }
    return DataBundle(
        train,
        val,
        test,
        dist,
        3,
        image_size,
        str(source),
        {"index": train_index},
        settings,
        Path(bad_image_log) if bad_image_log else None,
    )


SPLITS = ("train", "val", "test")


def split_folders(source: str | Path, allow_outside: bool = False) -> dict[str, Path]:
    """The split folders of a data folder that holds ``train/`` (and ``val/``, ``test/``), by
    name; empty when it holds no ``train/`` (a manifest, or class folders). A split folder that
    is a link out of ``source`` is refused unless ``allow_outside`` (as a class folder is), and
    so is any other folder beside ``train/``, which would be left out without a word (hidden
    folders and longtail's own output folders aside)."""
    source = Path(source)
    if not (source / "train").is_dir():
        return {}
    found = {n: source / n for n in SPLITS if (source / n).is_dir()}
    real = os.path.realpath(source)
    for name, path in found.items():
        target = os.path.realpath(path)
        if not allow_outside and os.path.dirname(target) != real:
            raise LongtailError(
                f"{path} is a link to {target}, outside the data folder {source}; copy the "
                f"{name} split into the data folder, or pass --allow-outside to read it there"
            )
    with os.scandir(source) as entries:
        others = sorted(
            e.name
            for e in entries
            if e.is_dir()
            and e.name not in SPLITS
            and not e.name.startswith(".")
            and not os.path.exists(os.path.join(e.path, OUTPUT_MARKER))
        )
    if others:
        raise LongtailError(
            f"{source} holds train/ and also {terminal_text(shorten(others))}: beside train/, "
            "only val/ and test/ are read, so these would be left out. Move their class folders "
            "into train/ (or val/, test/), or move them out of the data folder"
        )
    return found


def _labels(index: ImageIndex, level: int | None) -> np.ndarray:
    return index.labels if level is None else index.level_labels(level)[0]


def _check_same_classes(train: ImageIndex, other: ImageIndex, name: str) -> None:
    if train.class_dirs != other.class_dirs:
        missing = sorted(set(train.class_dirs) ^ set(other.class_dirs))
        raise LongtailError(
            f"train/ and {name}/ hold different class folders: {missing[:10]}; both need the same classes"
        )


def _check_disjoint(indexes: list[ImageIndex]) -> None:
    """Refuse a file that the last index shares with an earlier one (one image in two splits)."""
    for other in indexes[:-1]:
        check_no_shared_files(other, indexes[-1], "each image belongs to one split")


MIN_VALIDATION_IMAGES = 5


def _warn_small_validation(val: FolderDataset) -> None:
    counts = np.bincount(val.targets.numpy(), minlength=len(val.class_names))
    few = [
        f"{val.class_names[i]} ({counts[i]})"
        for i in np.flatnonzero(counts < MIN_VALIDATION_IMAGES)
    ]
    if few:
        log.warning(
            "the validation split has fewer than %d images of %d class(es): %s; validation "
            "numbers for them are noisy. A val/ folder beside train/ is used as given",
            MIN_VALIDATION_IMAGES,
            len(few),
            terminal_text(shorten(few)),
        )


def bundle_from_datasets(
    train: Dataset,
    val: Dataset,
    test: Dataset | None = None,
    *,
    class_names: list[str] | None = None,
    in_channels: int = 3,
    image_size: int = 224,
    name: str = "data",
) -> DataBundle:
    """Wrap existing datasets that expose ``targets`` (torchvision ``ImageFolder``, torchgeo
    datasets, ...) for :func:`longtail.training.loop.train`; the distribution is counted from
    ``train.targets``, class names default to ``train.classes`` when present."""
    for part, label in ((train, "train"), (val, "val"), (test, "test")):
        if part is not None and not hasattr(part, "targets"):
            raise LongtailError(
                f"the {label} dataset has no 'targets' attribute (a label per sample); add one or use a longtail dataset"
            )
    names = class_names or getattr(train, "classes", None)
    targets = np.asarray(train.targets)
    k = len(names) if names else int(targets.max()) + 1
    dist = ClassDistribution.from_labels(targets, k, names)
    source = {"datasets": [type(d).__name__ for d in (train, val, test) if d is not None]}
    return DataBundle(train, val, test, dist, in_channels, image_size, name, source=source)


__all__ = [
    "MIN_VALIDATION_IMAGES",
    "SPLITS",
    "split_folders",
    "bundle_from_datasets",
    "DataBundle",
    "embedded_bundle",
    "folder_bundle",
    "split_digest",
]
