"""Decode an image file straight to the uint8 [3, size, size] tensor a model is fed.

The geometry is torchvision's ``Resize(resize_size) + CenterCrop(size)`` (shorter side to
``resize_size``, centre ``size`` x ``size`` crop), with torch's antialiased bilinear resampling of
uint8 images. Decoding takes the cheapest route:

- a JPEG at least twice ``resize_size`` on its shorter side is decoded at a reduced scale
  (libjpeg's DCT scaling through Pillow's ``draft``: 1/2, 1/4 or 1/8, the smallest still
  >= ``resize_size``), so a 4000 px photo bound for 224 px is never decoded at full size;
- any other JPEG is decoded by libjpeg-turbo straight into a tensor, through simplejpeg or
  TorchCodec when installed, else torchvision (whose decoders are deprecated since 0.29); the
  pixels are then those of torchvision's own pipeline, to within one level;
- everything else (PNG, TIFF, WebP, ..., and JPEGs with an EXIF rotation) by Pillow.

For training, :func:`read_resized_crop` takes any box of the image (a random-resized crop) to
``size`` x ``size`` the same way, choosing the box on the header's geometry so that the JPEG can be
reduced on decode whenever the box keeps enough pixels.

Grayscale (8 and 16 bits), palette, CMYK and alpha images come out RGB; EXIF orientation is
respected. An unreadable file raises ``OSError`` (Pillow's ``UnidentifiedImageError`` is one).
"""

from __future__ import annotations

import importlib
import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

ORIENTATION = 0x0112  # the EXIF tag


def _simplejpeg(data: bytes) -> Tensor:
    import simplejpeg

    return torch.from_numpy(simplejpeg.decode_jpeg(data, colorspace="RGB")).permute(2, 0, 1)


def _torchcodec(data: bytes) -> Tensor:
    from torchcodec.decoders import decode_jpeg

    return decode_jpeg(data, mode="RGB")


def _torchvision(data: bytes) -> Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # in favour of TorchCodec
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB)


def installed_jpeg_decoders() -> dict[str, Callable[[bytes], Tensor]]:
    """The libjpeg-turbo bindings that load here, fastest first: JPEG bytes -> uint8 [3, H, W]
    RGB. simplejpeg and TorchCodec are optional; torchvision's is always there."""
    found = {}
    for name, module, decoder in (
        ("simplejpeg", "simplejpeg", _simplejpeg),
        ("torchcodec", "torchcodec.decoders", _torchcodec),
    ):
        try:
            importlib.import_module(module)
            found[name] = decoder
        except (ImportError, OSError, RuntimeError):  # absent, or its native library won't load
            pass
    found["torchvision"] = _torchvision
    return found


JPEG_DECODERS = installed_jpeg_decoders()
decode_jpeg_rgb = next(iter(JPEG_DECODERS.values()))


def read_image(path: str | Path, size: int, resize_size: int | None = None) -> Tensor:
    """uint8 [3, size, size]: the image at ``path`` with its shorter side scaled to
    ``resize_size`` (default ``size``) and centre-cropped to ``size`` x ``size``."""
    resize_size = resize_size or size
    data = Path(path).read_bytes()
    try:
        im = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise UnidentifiedImageError(f"{path} is not an image file Pillow can read") from None
    with im:
        orientation = im.getexif().get(ORIENTATION, 1)
        if im.format == "JPEG" and orientation == 1 and min(im.size) < 2 * resize_size:
            try:
                pixels = decode_jpeg_rgb(data)
            except (RuntimeError, ValueError):  # let Pillow decode it, or name the problem
                pixels = _decode_with_pillow(im, resize_size, orientation)
        else:
            pixels = _decode_with_pillow(im, (resize_size, resize_size), orientation)
    return center_crop_resize(pixels, size, resize_size)


TRANSPOSING = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height

Box = tuple[int, int, int, int]


def read_resized_crop(path: str | Path, size: int, choose_box: Callable[[int, int], Box]) -> Tensor:
    """uint8 [3, size, size]: the box ``(left, top, width, height) = choose_box(W, H)`` of the
    image at ``path`` (W x H as displayed, EXIF orientation applied) resized to ``size`` x
    ``size`` (torch's antialiased uint8 kernel), as torchvision's ``resized_crop`` would.

    The box is chosen on the header's geometry before any pixel is decoded, so a JPEG is decoded
    at the smallest scale that keeps the box at least ``size`` pixels both ways (libjpeg's DCT
    scaling by 1/2, 1/4 or 1/8, through simplejpeg when installed, else Pillow); the box's edges
    then fall on the reduced image's pixel grid (moved by at most half a reduced pixel)."""
    data = Path(path).read_bytes()
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnidentifiedImageError(f"{path} is not an image file Pillow can read") from None
    with im:
        orientation = im.getexif().get(ORIENTATION, 1)
        width, height = im.size[::-1] if orientation in TRANSPOSING else im.size
        left, top, box_w, box_h = choose_box(width, height)
        need = (math.ceil(size * width / box_w), math.ceil(size * height / box_h))
        if im.format == "JPEG" and orientation == 1:
            pixels = _decode_jpeg_at_least(data, im, need)
        else:
            stored = need[::-1] if orientation in TRANSPOSING else need
            pixels = _decode_with_pillow(im, stored, orientation)
    sy, sx = pixels.shape[1] / height, pixels.shape[2] / width
    top, left = (
        min(round(top * sy), pixels.shape[1] - 1),
        min(round(left * sx), pixels.shape[2] - 1),
    )
    box_h = max(1, min(round(box_h * sy), pixels.shape[1] - top))
    box_w = max(1, min(round(box_w * sx), pixels.shape[2] - left))
    crop = pixels[:, top : top + box_h, left : left + box_w]
    crop = crop.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels-last: the fast kernel
    return TF.resize(crop, [size, size], antialias=True)


def _decode_jpeg_at_least(data: bytes, im: Image.Image, need: tuple[int, int]) -> Tensor:
    """uint8 [3, H, W] of a JPEG decoded at the smallest 1/2^k scale (k <= 3) with W >= need[0]
    and H >= need[1] (libjpeg's M/8 scales between 1/2 and 1 decode slower than full size)."""
    width, height = im.size
    factor = max(1, min(width // need[0], height // need[1]))
    reduction = next(r for r in (8, 4, 2, 1) if factor >= r)
    try:
        if reduction == 1:
            return decode_jpeg_rgb(data)
        if "simplejpeg" in JPEG_DECODERS:
            import simplejpeg

            array = simplejpeg.decode_jpeg(
                data,
                colorspace="RGB",
                min_width=-(-width // reduction),
                min_height=-(-height // reduction),
            )
            return torch.from_numpy(array).permute(2, 0, 1)
    except (RuntimeError, ValueError):  # let Pillow decode it, or name the problem
        pass
    return _decode_with_pillow(im, need, 1)


def _decode_with_pillow(im: Image.Image, draft: tuple[int, int], orientation: int) -> Tensor:
    """uint8 [3, H, W] RGB; a JPEG reduced on decode to the smallest 1/2^k scale whose stored
    width and height are at least ``draft``."""
    if im.format == "JPEG":
        im.draft("RGB", draft)
    if orientation != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode in WIDE_MODES:
        return _wide_to_rgb(im)
    if im.mode != "RGB":
        # through RGBA so that transparent palette/alpha pixels take their colour, not black
        im = (
            im.convert("RGBA").convert("RGB") if im.mode in ("P", "LA", "PA") else im.convert("RGB")
        )
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
"""Single-channel modes wider than 8 bits: Pillow's ``convert("RGB")`` clips them to 255 (a 16-bit
PNG comes out nearly white), so they are scaled to 8 bits here instead."""


def _wide_to_rgb(im: Image.Image) -> Tensor:
    """16-bit (and 32-bit integer) gray scaled by 255 / 65535, i.e. to the high byte; float images
    holding [0, 1] by 255, others by their own maximum."""
    x = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        top = 1.0 if x.size and np.nanmax(x) <= 1.0 else max(float(np.nanmax(x)), 1.0)
    else:
        top = 65535.0 if not x.size or x.max() <= 65535 else float(x.max())
    gray = np.clip(np.rint(np.nan_to_num(x) * (255.0 / top)), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(gray)).expand(3, *gray.shape).clone()


def center_crop_resize(pixels: Tensor, size: int, resize_size: int) -> Tensor:
    """uint8 [3, H, W] -> [3, size, size] by torchvision's ``Resize(resize_size, antialias=True)``
    then ``CenterCrop(size)``, on a channels-last view (the fast uint8 kernel)."""
    pixels = pixels.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # no copy if already HWC
    return TF.center_crop(TF.resize(pixels, [resize_size], antialias=True), [size])
