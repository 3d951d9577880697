"""PyTorch datasets over in-memory arrays and over an :class:`~longtail.data.index.ImageIndex`.

Both expose ``targets`` (so every longtail sampler, and torch code that expects it, works) and
``__getitems__`` (the DataLoader fetches a whole batch in one call).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from longtail.data.index import ImageIndex

log = logging.getLogger("longtail.data")


class ArrayDataset(Dataset):
    """Images held in memory as uint8 [N, H, W] or [N, H, W, C], scaled to float and normalised
    per channel with ``mean``/``std`` (default: statistics of these images)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if images.ndim == 3:
            images = images[:, None]
        elif images.ndim == 4:
            images = images.transpose(0, 3, 1, 2)
        else:
            raise ValueError(f"images must be [N, H, W] or [N, H, W, C], got shape {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255)
        self.mean = torch.as_tensor(mean if mean is not None else x.mean(dim=(0, 2, 3)).tolist())
        self.std = torch.as_tensor(std if std is not None else x.std(dim=(0, 2, 3)).tolist())
        self.x = (x - self.mean[:, None, None]) / self.std[:, None, None]
        self.targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.targets[i]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.x[idx], self.targets[idx]


def load_image(path: str | Path, size: int, resize_size: int | None = None) -> Image.Image:
    """Decode an image as RGB, respecting EXIF orientation, with JPEG reduce-on-decode (Pillow's
    ``draft``) so a large photo bound for ``size`` pixels is not decoded at full resolution; then
    the geometry of "shorter side to ``resize_size`` (default ``size``), centre ``size`` x ``size``
    crop" (``resize_size=256, size=224`` is torchvision's Resize(256) + CenterCrop(224)) in one
    resampling of the crop region only."""
    resize_size = resize_size or size
    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("RGB", (resize_size, resize_size))  # smallest 1/2^k scale still >= resize_size
        if im.getexif().get(ORIENTATION, 1) != 1:
            im = ImageOps.exif_transpose(im)
        if im.mode != "RGB":
            im = (
                im.convert("RGBA").convert("RGB")
                if im.mode in ("P", "LA", "PA")
                else im.convert("RGB")
            )
        w, h = im.size
        side = min(w, h) * size / resize_size  # the crop's side in source pixels
        left, top = (w - side) / 2, (h - side) / 2
        return im.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))


ORIENTATION = 0x0112
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FolderDataset(Dataset):
    """Images of an :class:`ImageIndex` (subset ``indices``), decoded with :func:`load_image`.

    ``level`` picks the label: a hierarchy level (1 = top folders) or None for the leaf classes.
    An unreadable or corrupt image is reported once (path and reason, to the ``longtail.data``
    logger and to ``bad_image_log`` if given) and replaced by the next image of the same class,
    so an epoch never stops half-way and the label stream is unchanged.
    """

    def __init__(
        self,
        index: ImageIndex,
        indices: np.ndarray | None = None,
        image_size: int = 64,
        level: int | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        bad_image_log: str | Path | None = None,
        resize_size: int | None = None,
    ) -> None:
        self.index = index
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
        self._scale, self._shift = 1 / (255 * self.std), self.mean / self.std
        self.bad_image_log = Path(bad_image_log) if bad_image_log else None
        self._reported: set[int] = set()
        self._lock = threading.Lock()
        # next image of the same class (cyclic), for replacing unreadable ones
        t = self.targets.numpy()
        order = np.argsort(t, kind="stable")
        nxt = np.empty_like(order)
        counts = np.bincount(t)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = np.arange(t.size) - np.repeat(starts, counts)
        nxt[order] = order[np.repeat(starts, counts) + (pos + 1) % np.repeat(counts, counts)]
        self._next_in_class = nxt

    def __len__(self) -> int:
        return len(self.indices)

    def _report(self, i: int, err: Exception) -> None:
        with self._lock:
            if i in self._reported:
                return
            self._reported.add(i)
        path = self.index.filepath(int(self.indices[i]))
        log.warning("unreadable image %s (%s); using another image of the same class", path, err)
        if self.bad_image_log is not None:
            with open(self.bad_image_log, "a") as fh:
                fh.write(f"{path}\t{type(err).__name__}: {err}\n")

    def _decode(self, i: int) -> Tensor:
        """uint8 [3, size, size] of item i, or of a same-class replacement if it is unreadable."""
        j = i
        for _ in range(len(self)):
            try:
                im = load_image(
                    self.index.filepath(int(self.indices[j])), self.image_size, self.resize_size
                )
                return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
                self._report(j, err)
                j = int(self._next_in_class[j])
                if j == i:
                    raise RuntimeError(
                        f"every image of class {self.class_names[int(self.targets[i])]} is unreadable"
                    ) from err
        raise AssertionError("unreachable")  # pragma: no cover

    def _finish(self, x: Tensor) -> Tensor:
        """uint8 -> float in [0, 1], normalised, then the user's transform (per image or batch)."""
        x = x.float().mul_(self._scale).sub_(self._shift)  # (x/255 - mean) / std, in place
        return self.transform(x) if self.transform is not None else x

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self._finish(self._decode(i)), self.targets[i]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """A whole batch: decode to uint8, then normalise the stacked batch in one pass."""
        idx = [int(i) for i in indices]
        batch = torch.stack([self._decode(i) for i in idx])
        if self.transform is None:
            return self._finish(batch), self.targets[idx]
        return torch.stack([self._finish(x) for x in batch]), self.targets[idx]


def bad_images(log_path: str | Path) -> list[str]:
    """Distinct paths recorded in a bad-image log."""
    if not os.path.exists(log_path):
        return []
    with open(log_path) as fh:
        return sorted({line.split("\t", 1)[0] for line in fh if line.strip()})


def batch_collate(batch: Any) -> Any:
    """Collate for datasets whose ``__getitems__`` already returns a batch."""
    return batch
