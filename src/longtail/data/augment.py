"""Training augmentation whose randomness is a function of (seed, epoch, sample position).

Presets (:data:`PRESETS`):

- ``standard``: a random-resized crop (torchvision's ``RandomResizedCrop``: area fraction
  uniform in [0.08, 1], log aspect ratio uniform in [log 3/4, log 4/3], up to 10 tries, then the
  centre crop; Szegedy et al., "Going deeper with convolutions", CVPR 2015) and a horizontal
  flip with probability 1/2. On the embedded 28x28 set: a random 28x28 crop of the image padded by
  2 pixels, and the flip.
- ``aerial``: the same crop, then one of the 8 symmetries of the square (4 rotations by 90
  degrees, each flipped or not), uniformly: overhead scenes have no "up".
- ``none``: no augmentation (folder images are resized and centre-cropped as for evaluation).

A DataLoader worker cannot see the epoch, and workers' random states depend on when they were
started, so randomness is not drawn from a random state: :class:`KeyedBatchSampler` wraps the
training sampler and yields batches that carry their keys (seed, epoch, and each sample's
position in the epoch), and :func:`key_uniforms` turns keys into uniform numbers with a counter-based
hash (SplitMix64; Steele et al., "Fast splittable pseudorandom number generators", OOPSLA 2014).
A run resumed mid-training therefore sees exactly the augmentations of an uninterrupted one,
whatever the number of workers, and an image drawn twice in an epoch is augmented twice
differently.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, Sampler

from longtail.data import PRESETS
from longtail.errors import LongtailError

CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10
PAD = 2  # the embedded set's random-crop padding, pixels
DRAWS = 2 * CROP_ATTEMPTS + 3  # per sample: area and ratio per try, top, left, symmetry


class KeyedBatch(list):
    """A batch of image indices that carries its random stream: sample k of the batch draws from
    (``seed``, ``epoch``, position ``start + step * k``)."""

    def __init__(
        self, indices: Sequence[int], seed: int, epoch: int, start: int, step: int
    ) -> None:
        super().__init__(indices)
        self.seed, self.epoch, self.start, self.step = seed, epoch, start, step

    def positions(self) -> np.ndarray:
        return self.start + self.step * np.arange(len(self), dtype=np.int64)


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise LongtailError(f"augment must be one of {', '.join(PRESETS)}, got {preset!r}")
    return preset


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def key_uniforms(seed: Any, epoch: Any, position: Any, draws: int = DRAWS) -> np.ndarray:
    """float64 [n, draws] uniform in [0, 1): independent streams per (seed, epoch, position)
    (arrays broadcast to n), the same on every machine and in every process."""
    s = np.atleast_1d(np.asarray(seed, dtype=np.int64)).astype(np.uint64)
    e = np.atleast_1d(np.asarray(epoch, dtype=np.int64)).astype(np.uint64)
    p = np.atleast_1d(np.asarray(position, dtype=np.int64)).astype(np.uint64)
    stream = _splitmix64(s ^ _splitmix64(e ^ _splitmix64(p)))
    with np.errstate(over="ignore"):
        counters = stream[:, None] + np.arange(1, draws + 1, dtype=np.uint64) * np.uint64(
            0xD1B54A32D192ED03
        )
    bits = _splitmix64(counters) >> np.uint64(11)
    return bits.astype(np.float64) * (1.0 / 2**53)


def batch_uniforms(items: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """(indices, uniforms [n, DRAWS]) of a batch: from its keys for a :class:`KeyedBatch`, else
    from a fresh stream drawn from torch's random state (as torchvision's transforms do)."""
    if isinstance(items, KeyedBatch):
        return list(items), key_uniforms(items.seed, items.epoch, items.positions())
    seed = int(torch.randint(0, 2**62, ()).item())
    return [int(i) for i in items], key_uniforms(seed, 0, np.arange(len(items)))


def resized_crop_boxes(
    width: np.ndarray, height: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left, top, crop width, crop height), int64 [n], of torchvision's ``RandomResizedCrop``
    on images of ``width`` x ``height`` with scale (0.08, 1) and ratio (3/4, 4/3): the first of 10
    tries whose box fits, else the centre crop clamped to the ratio range. ``u`` holds the
    uniforms [n, >= 2 * 10 + 2] (per try: area, log ratio; then top, left)."""
    w0 = np.asarray(width, dtype=np.float64)[:, None]
    h0 = np.asarray(height, dtype=np.float64)[:, None]
    area = w0 * h0 * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u[:, 0:CROP_ATTEMPTS])
    lo, hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    aspect = np.exp(lo + (hi - lo) * u[:, CROP_ATTEMPTS : 2 * CROP_ATTEMPTS])
    w = np.rint(np.sqrt(area * aspect))
    h = np.rint(np.sqrt(area / aspect))
    fits = (w > 0) & (w <= w0) & (h > 0) & (h <= h0)
    first = fits.argmax(axis=1)
    rows = np.arange(len(u))
    cw, ch = w[rows, first], h[rows, first]
    w0, h0 = w0[:, 0], h0[:, 0]
    # no try fits: the whole image, cut to the nearest allowed aspect ratio, centred
    ratio = w0 / h0
    fw = np.where(ratio > CROP_RATIO[1], np.rint(h0 * CROP_RATIO[1]), w0)
    fh = np.where(ratio < CROP_RATIO[0], np.rint(w0 / CROP_RATIO[0]), h0)
    found = fits.any(axis=1)
    cw, ch = np.where(found, cw, fw), np.where(found, ch, fh)
    top = np.where(
        found, np.floor(u[:, 2 * CROP_ATTEMPTS] * (h0 - ch + 1)), np.floor((h0 - ch) / 2)
    )
    left = np.where(
        found, np.floor(u[:, 2 * CROP_ATTEMPTS + 1] * (w0 - cw + 1)), np.floor((w0 - cw) / 2)
    )
    return (left.astype(np.int64), top.astype(np.int64), cw.astype(np.int64), ch.astype(np.int64))


def symmetries(preset: str, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal flip, number of 90-degree rotations) per sample, from the last uniform column:
    ``standard`` flips with probability 1/2 and never rotates; ``aerial`` takes each of the 8
    symmetries of the square with probability 1/8; ``none`` does neither."""
    k = np.minimum((u[:, -1] * 8).astype(np.int64), 7)
    if preset == "aerial":
        return k >= 4, k % 4
    flip = (k >= 4) if preset == "standard" else np.zeros(len(u), dtype=bool)
    return flip, np.zeros(len(u), dtype=np.int64)


def apply_symmetry(image: Tensor, flip: bool, quarter_turns: int) -> Tensor:
    """``image`` [..., H, W] flipped left-right (if ``flip``), then rotated by 90 degrees
    ``quarter_turns`` times counter-clockwise."""
    if flip:
        image = image.flip(-1)
    return torch.rot90(image, int(quarter_turns), dims=(-2, -1)) if quarter_turns else image


def pad_crop_flip(x: Tensor, u: np.ndarray, preset: str, fill: Tensor) -> Tensor:
    """Batch [B, C, H, W] of the embedded set augmented by ``preset``, in one gather: a random
    H x W window of the image padded by :data:`PAD` pixels of ``fill`` [C] (the value of black),
    then the flip (``standard``) or one of the 8 symmetries (``aerial``)."""
    b, c, h, w = x.shape
    padded = fill.to(x.dtype).view(1, c, 1, 1).expand(b, c, h + 2 * PAD, w + 2 * PAD).clone()
    padded[:, :, PAD : PAD + h, PAD : PAD + w] = x
    dy = torch.from_numpy(np.minimum((u[:, 0] * (2 * PAD + 1)).astype(np.int64), 2 * PAD))
    dx = torch.from_numpy(np.minimum((u[:, 1] * (2 * PAD + 1)).astype(np.int64), 2 * PAD))
    rows = dy[:, None] + torch.arange(h)  # [B, H]
    cols = dx[:, None] + torch.arange(w)  # [B, W]
    flip, turns = symmetries(preset, u)
    flip_t = torch.from_numpy(flip)[:, None]
    cols = torch.where(flip_t, cols.flip(1), cols)
    out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2)  # [B, C, H, W]
    out = out.contiguous()
    for k in (1, 2, 3):  # rotate the samples that take k quarter turns, together
        chosen = torch.from_numpy(turns == k)
        if chosen.any():
            out[chosen] = torch.rot90(out[chosen], k, dims=(-2, -1))
    return out


class KeyedBatchSampler(Sampler[KeyedBatch]):
    """Batches of ``sampler`` (``batch_size`` indices each, the last one shorter unless
    ``drop_last``; or, given ``batch_size=None``, the batches a batch sampler yields) as
    :class:`KeyedBatch` es, so that an augmenting dataset draws each sample's randomness from
    (``seed``, epoch, position). Call :meth:`set_epoch` before each epoch; the wrapped sampler's
    own epoch is set by its owner. Positions count the samples of this process's epoch, offset by
    ``rank`` in steps of ``num_replicas`` so that DDP ranks never share a stream. Give it to a
    DataLoader as ``batch_sampler=``."""

    def __init__(
        self,
        sampler: Any,
        batch_size: int | None,
        seed: int,
        *,
        drop_last: bool = False,
        rank: int = 0,
        num_replicas: int = 1,
    ) -> None:
        self.batches = (
            sampler if batch_size is None else BatchSampler(sampler, batch_size, drop_last)
        )
        self.seed, self.rank, self.num_replicas = int(seed), rank, num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[KeyedBatch]:
        seen = 0
        for batch in self.batches:
            start = self.rank + self.num_replicas * seen
            yield KeyedBatch(batch, self.seed, self.epoch, start, self.num_replicas)
            seen += len(batch)


__all__ = [
    "CROP_ATTEMPTS",
    "CROP_RATIO",
    "CROP_SCALE",
    "DRAWS",
    "PAD",
    "PRESETS",
    "apply_symmetry",
    "batch_uniforms",
    "check_preset",
    "key_uniforms",
    "KeyedBatch",
    "KeyedBatchSampler",
    "pad_crop_flip",
    "resized_crop_boxes",
    "symmetries",
]
