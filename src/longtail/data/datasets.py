"""PyTorch datasets over in-memory arrays and over an :class:`~longtail.data.index.ImageIndex`.

Both expose ``targets`` (so every longtail sampler, and torch code that expects it, works) and
``__getitems__`` (the DataLoader fetches a whole batch in one call; pass
``collate_fn=batch_collate`` to keep it whole, as :func:`~longtail.data.loading.loader_kwargs` does).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL.Image import DecompressionBombError
from torch import Tensor
from torch.utils.data import Dataset, default_collate, get_worker_info

from longtail._io import open_output, read_regular_file
from longtail._text import terminal_text
from longtail.data import IMAGE_SIZE
from longtail.data.augment import (
    apply_symmetry,
    batch_uniforms,
    check_preset,
    pad_crop_flip,
    resized_crop_boxes,
    symmetries,
)
from longtail.data.decode import (
    EncodedImage,
    decode_resized_crop,
    read_encoded,
    read_image,
    read_resized_crop,
)
from longtail.data.index import ImageIndex
from longtail.errors import LongtailError
from longtail.sampling.plans import ClassGroups

log = logging.getLogger("longtail.data")


class BatchDataset(Dataset, ABC):
    """A dataset that gathers a whole batch at once with :meth:`batch`; the DataLoader gets it
    through ``__getitems__`` as a :class:`SampleBatch`; ``in_memory`` datasets need no
    DataLoader workers."""

    in_memory = False

    @abstractmethod
    def batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Images [B, C, H, W] and labels [B] of ``indices``."""

    def __getitems__(self, indices: Sequence[int]) -> SampleBatch:
        return SampleBatch(*self.batch(indices))


class ArrayDataset(BatchDataset):
    """Images held in memory as uint8 [N, H, W] or [N, H, W, C], scaled to float and normalised
    per channel with ``mean``/``std`` (default: statistics of these images).

    ``augment`` (see :mod:`longtail.data.augment`): ``standard`` takes a random crop of the image
    padded by 2 black pixels and flips it left-right with probability 1/2, ``aerial`` takes the
    crop in one of the 8 symmetries of the square, ``none`` (the default) leaves images as they
    are. Batches of a :class:`~longtail.data.augment.KeyedBatchSampler` draw from their keys."""

    in_memory = True

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: str = "none",
    ) -> None:
        if images.ndim == 3:
            images = images[:, None]
        elif images.ndim == 4:
            images = images.transpose(0, 3, 1, 2)
        else:
            raise LongtailError(
                f"images must be [N, H, W] or [N, H, W, C], got shape {images.shape}"
            )
        if len(images) != len(labels):
            raise LongtailError(f"{len(images)} images but {len(labels)} labels")
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255)
        self.mean = torch.as_tensor(mean if mean is not None else x.mean(dim=(0, 2, 3)).tolist())
        self.std = torch.as_tensor(std if std is not None else x.std(dim=(0, 2, 3)).tolist())
        self.x = (x - self.mean[:, None, None]) / self.std[:, None, None]
        self.targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.augment = check_preset(augment)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if self.augment != "none":
            x, y = self.batch([i])
            return x[0], y[0]
        return self.x[i], self.targets[i]

    def batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Images [B, C, H, W] and labels [B] of ``indices``, gathered (and augmented) at once."""
        if self.augment == "none":
            idx = torch.as_tensor(list(indices), dtype=torch.long)
            return self.x[idx], self.targets[idx]
        order, u = batch_uniforms(indices)
        idx = torch.as_tensor(order, dtype=torch.long)
        black = -self.mean / self.std
        return pad_crop_flip(self.x[idx], u, self.augment, black), self.targets[idx]


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FolderDataset(BatchDataset):
    """Images of an :class:`ImageIndex` (subset ``indices``), decoded with :func:`~longtail.data.decode.read_image`.

    ``level`` picks the label: a hierarchy level (1 = top folders) or None for the leaf classes.
    An unreadable or corrupt image is reported once (path and reason, to the ``longtail.data``
    logger and to ``bad_image_log`` if given) and replaced by the next image of the same class,
    so an epoch never stops half-way and the label stream is unchanged.

    Items are float images normalised with ``mean``/``std``; with ``normalize=False`` they stay
    uint8 (a quarter of the bytes to pass between processes and to copy to a GPU) and
    :meth:`normalize_batch` finishes them on the training device. ``transform`` is applied to
    what an item would otherwise be.

    ``augment`` (see :mod:`longtail.data.augment`): ``none`` (the default) resizes the shorter
    side to ``resize_size`` and takes the centre ``image_size`` square, as for evaluation;
    ``standard`` takes a random-resized crop (chosen on the file's geometry before decoding, so
    large JPEGs are still reduced on decode) and flips it left-right with probability 1/2;
    ``aerial`` takes the crop in one of the 8 symmetries of the square. Augmentation works on
    uint8 pixels, before normalisation. Batches of a
    :class:`~longtail.data.augment.KeyedBatchSampler` draw from their keys, so an epoch's
    augmentations depend on (seed, epoch) only.
    """

    def __init__(
        self,
        index: ImageIndex,
        indices: np.ndarray | None = None,
        image_size: int = IMAGE_SIZE,
        level: int | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        bad_image_log: str | Path | None = None,
        resize_size: int | None = None,
        normalize: bool = True,
        augment: str = "none",
    ) -> None:
        self.index = index
        self.normalize = normalize
        self.augment = check_preset(augment)
        self.resize_size = resize_size
        self.indices = (
            np.arange(len(index)) if indices is None else np.asarray(indices, dtype=np.int64)
        )
        if level is None:
            labels, self.class_names = index.labels, list(index.class_names)
        else:
            labels, self.class_names = index.level_labels(level)
        self.targets = torch.as_tensor(labels[self.indices], dtype=torch.long)
        self.image_size = image_size
        self.transform = transform
        self.mean = torch.tensor(mean)[:, None, None]
        self.std = torch.tensor(std)[:, None, None]
        self._scale, self._shift = 1 / (255 * self.std), self.mean / self.std  # x*scale - shift
        self.bad_image_log = Path(bad_image_log) if bad_image_log else None
        self._reported: set[int] = set()
        self._lock = threading.Lock()
        self._next_in_class = _next_in_class(self.targets.numpy(), len(self.class_names))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its lock (for spawned processes: local jobs, Ray tasks)."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.indices)

    def _report(self, i: int, err: Exception) -> None:
        """Record an unreadable image once per run: in ``bad_image_log`` when one is given (shared
        by every worker process and evaluation pass; the training loop reports what it holds),
        else as a warning of this process."""
        with self._lock:
            if i in self._reported:
                return
            self._reported.add(i)
        path = self.index.filepath(int(self.indices[i]))
        reason = f"{type(err).__name__}: {err}"
        if self.bad_image_log is not None:
            record_bad_image(self.bad_image_log, path, reason)
        else:
            log.warning(
                "unreadable image %s (%s); using another image of the same class",
                terminal_text(path),
                terminal_text(reason),
            )

    def _decode(self, i: int, u: np.ndarray | None = None) -> Tensor:
        """uint8 [3, size, size] of item i, or of a same-class replacement if it is unreadable;
        augmented with the uniforms ``u`` [DRAWS] unless ``augment`` is ``none``."""
        j = i
        for _ in range(len(self)):
            try:
                path = self.index.filepath(int(self.indices[j]))
                if self.augment == "none" or u is None:
                    return read_image(path, self.image_size, self.resize_size)
                return self._read_augmented(path, u)
            except READ_ERRORS as err:
                self._report(j, err)
                j = int(self._next_in_class[j])
                if j == i:
                    name = self.class_names[int(self.targets[i])]
                    raise UnreadableClassError(
                        f"every image of class {name!r} is unreadable (e.g. {path}: {err}); "
                        "fix or remove that class's images"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_augmented(self, path: str, u: np.ndarray) -> Tensor:
        """The random-resized crop of one image (no symmetry yet)."""

        def box(width: int, height: int) -> tuple[int, int, int, int]:
            left, top, w, h = resized_crop_boxes(np.array([width]), np.array([height]), u[None])
            return int(left[0]), int(top[0]), int(w[0]), int(h[0])

        return read_resized_crop(path, self.image_size, box)

    def _images(self, idx: list[int], u: np.ndarray | None) -> Iterator[Tensor]:
        """uint8 [3, S, S] of each item in turn: resized and centre-cropped, or augmented with
        its row of ``u``, the crop boxes of the whole batch drawn at once from the headers."""
        if u is None:
            yield from (self._decode(i) for i in idx)
            return
        headers = [self._header(i) for i in idx]
        widths = np.array([1 if h is None else h.width for h in headers])
        heights = np.array([1 if h is None else h.height for h in headers])
        boxes = np.stack(resized_crop_boxes(widths, heights, u), axis=1).tolist()
        flips, turns = symmetries(self.augment, u)
        for k, (i, header) in enumerate(zip(idx, headers, strict=True)):
            crop = None
            if header is not None:
                try:
                    crop = decode_resized_crop(header, self.image_size, tuple(boxes[k]))
                except READ_ERRORS:
                    pass
            if crop is None:  # reported, and replaced by an image of the same class
                crop = self._decode(i, u[k])
            yield apply_symmetry(crop, bool(flips[k]), int(turns[k]))

    def _header(self, i: int) -> EncodedImage | None:
        try:
            return read_encoded(self.index.filepath(int(self.indices[i])))
        except READ_ERRORS:
            return None

    def normalize_batch(self, x: Tensor) -> Tensor:
        """uint8 [..., 3, H, W] on any device -> float ``(x / 255 - mean) / std``."""
        if x.dtype != torch.uint8:
            raise TypeError(f"normalize_batch takes uint8 images (normalize=False), not {x.dtype}")
        return self._normalize_(x.float())

    def _normalize_(self, x: Tensor) -> Tensor:
        """In place on float x holding 0..255."""
        return x.mul_(self._scale.to(x.device)).sub_(self._shift.to(x.device))

    def _finish(self, x: Tensor) -> Tensor:
        """uint8 image or our own float batch buffer -> what an item is."""
        x = self._normalize_(x.float()) if self.normalize else x
        return self.transform(x) if self.transform is not None else x

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if self.augment != "none":
            x, y = self.batch([i])
            return x[0], y[0]
        return self._finish(self._decode(i)), self.targets[i]

    def batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Images [B, 3, S, S] and labels [B] of ``indices``, decoded into one tensor (normalised
        in one pass). In a DataLoader worker that tensor is allocated in shared memory, so
        handing it to the main process copies nothing (as torch's default collate does)."""
        if self.augment == "none":
            idx, u = [int(i) for i in indices], None
        else:
            idx, u = batch_uniforms(indices)
        images = self._images(idx, u)
        if self.transform is not None:
            return torch.stack([self._finish(x) for x in images]), self.targets[idx]
        dtype = torch.float32 if self.normalize else torch.uint8
        batch = torch.empty((len(idx), 3, self.image_size, self.image_size), dtype=dtype)
        if get_worker_info() is not None:
            batch.share_memory_()
        for k, image in enumerate(images):
            batch[k] = image
        return self._finish(batch), self.targets[idx]


def _next_in_class(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """For each item, the next item of its class (cyclic, in index order): the replacement of an
    unreadable image."""
    if targets.size == 0:
        return np.zeros(0, dtype=np.int64)
    groups = ClassGroups.from_labels(targets, num_classes)
    order, counts = groups.order.astype(np.int64), groups.counts
    first = np.repeat(groups.starts, counts)
    pos = np.arange(targets.size) - first
    nxt = np.empty_like(order)
    nxt[order] = order[first + (pos + 1) % np.repeat(counts, counts)]
    return nxt


READ_ERRORS = (OSError, ValueError, SyntaxError, DecompressionBombError)
"""What reading a broken image file raises."""


class UnreadableClassError(LongtailError):
    """Every image of a class is unreadable, so it cannot be replaced by another of its class."""


MAX_LOG_BYTES = 1 << 26
"""The largest bad-image log read back (64 MiB)."""


def record_bad_image(log_path: str | Path, path: str, reason: str) -> None:
    """Append ``path`` to a bad-image log (one JSON object a line, so any file name fits) unless
    it is there already; processes writing at once take turns (``flock`` where available)."""
    with os.fdopen(open_output(log_path, os.O_RDWR | os.O_APPEND), "r+", encoding="utf-8") as fh:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: appends of one line are atomic enough
            pass
        fh.seek(0)
        if path in _parse_bad_images(fh.read()):
            return
        fh.write(json.dumps({"path": path, "reason": reason}) + "\n")


def _parse_bad_images(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        try:
            rec = json.loads(line)
            out.setdefault(rec["path"], rec["reason"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def bad_images(log_path: str | Path) -> dict[str, str]:
    """Distinct unreadable images recorded in a bad-image log: path -> reason."""
    if not os.path.exists(log_path):
        return {}
    data = read_regular_file(log_path, MAX_LOG_BYTES)
    return _parse_bad_images(data.decode("utf-8", "replace"))


class SampleBatch(Sequence):
    """One batch seen as the sequence of (image, label) samples a DataLoader expects, each made
    on demand as a view into whole-batch tensors: torch's default collate stacks them as it would
    any samples, and :func:`batch_collate` hands back the batch tensors themselves, copying
    nothing."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.tensors = (x, y)

    def __len__(self) -> int:
        return len(self.tensors[1])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.tensors
        return x[i], y[i]


def batch_collate(batch: Any) -> Any:
    """Collate that keeps a :class:`SampleBatch` whole; anything else goes to torch's default."""
    return batch.tensors if isinstance(batch, SampleBatch) else default_collate(batch)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "READ_ERRORS",
    "ArrayDataset",
    "bad_images",
    "batch_collate",
    "BatchDataset",
    "FolderDataset",
    "record_bad_image",
    "SampleBatch",
    "UnreadableClassError",
]
