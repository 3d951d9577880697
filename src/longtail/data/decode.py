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
reduced on decode whenever the box keeps enough pixels, and decoding the box alone where
libturbojpeg 3 is installed (:mod:`longtail.data.jpeg_region`).

Grayscale (8 and 16 bits), palette, CMYK and alpha images come out RGB; EXIF orientation is
respected. An unreadable file raises ``OSError`` (Pillow's ``UnidentifiedImageError`` is one).
"""

from __future__ import annotations

import importlib
import io
import math
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from longtail.data import jpeg_region

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
    image = read_encoded(path)
    pixels = None
    small = min(image.width, image.height) < 2 * resize_size  # too small to reduce on decode
    if image.is_jpeg and image.orientation == 1 and small:
        try:
            pixels = decode_jpeg_rgb(image.data)
        except (RuntimeError, ValueError):  # let Pillow decode it, or name the problem
            pass
    if pixels is None:
        with _open(image.path, image.data) as im:
            pixels = _decode_with_pillow(im, (resize_size, resize_size), image.orientation)
    return center_crop_resize(pixels, size, resize_size)


TRANSPOSING = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes and what its header says: the size as displayed (EXIF orientation
    applied), the orientation, and whether it is a JPEG."""

    path: str
    data: bytes
    width: int
    height: int
    orientation: int
    is_jpeg: bool


def read_encoded(path: str | Path) -> EncodedImage:
    """The file at ``path`` and its header, without decoding a pixel. A JPEG whose header holds no
    orientation (no EXIF block, no XMP orientation) is read by simplejpeg's header parser when
    installed, others by Pillow."""
    data = Path(path).read_bytes()
    if data[:3] == b"\xff\xd8\xff" and "simplejpeg" in JPEG_DECODERS:
        if not _may_be_rotated(data):
            import simplejpeg

            try:
                height, width, _, _ = simplejpeg.decode_jpeg_header(data)
                return EncodedImage(str(path), data, width, height, 1, True)
            except ValueError:  # Pillow reads it, or names the problem
                pass
    with _open(path, data) as im:
        orientation = im.getexif().get(ORIENTATION, 1)
        width, height = im.size[::-1] if orientation in TRANSPOSING else im.size
        return EncodedImage(str(path), data, width, height, orientation, im.format == "JPEG")


def _may_be_rotated(jpeg: bytes) -> bool:
    """Whether a JPEG's header segments (those before its first scan) may hold an orientation:
    an EXIF block, or XMP naming ``tiff:Orientation`` (Pillow reads both). A header that does not
    parse counts as may, so that Pillow reads it or names the problem."""
    pos, end = 2, len(jpeg)
    while pos + 4 <= end:
        if jpeg[pos] != 0xFF:
            return True
        marker = jpeg[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no more header segments
            return False
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if marker == 0xE1:  # APP1: EXIF or XMP
            body = jpeg[pos + 4 : pos + 2 + length]
            if body.startswith(b"Exif\0\0") or b"tiff:Orientation" in body:
                return True
        pos += 2 + length
    return True


def _open(path: str | Path, data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise UnidentifiedImageError(f"{path} is not an image file Pillow can read") from None


def read_resized_crop(path: str | Path, size: int, choose_box: Callable[[int, int], Box]) -> Tensor:
    """uint8 [3, size, size]: the box ``choose_box(W, H)`` of the image at ``path`` (W x H as
    displayed) resized to ``size`` x ``size``; see :func:`decode_resized_crop`."""
    image = read_encoded(path)
    return decode_resized_crop(image, size, choose_box(image.width, image.height))


def decode_resized_crop(image: EncodedImage, size: int, box: Box) -> Tensor:
    """uint8 [3, size, size]: the ``box`` (left, top, width, height; on the image as displayed,
    EXIF orientation applied) resized to ``size`` x ``size`` with torch's antialiased uint8
    kernel, as torchvision's ``resized_crop`` would.

    As the box is known before any pixel is decoded, a JPEG is decoded at the smallest scale that
    keeps the box at least ``size`` pixels both ways (libjpeg's DCT scaling by 1/2, 1/4 or 1/8);
    the box's edges then fall on the reduced image's pixel grid (moved by at most half a reduced
    pixel). With libturbojpeg 3 (:mod:`longtail.data.jpeg_region`) only the box is decoded, else
    the whole image at that scale (simplejpeg when installed, else Pillow): same pixels."""
    width, height = image.width, image.height
    need = (math.ceil(size * width / box[2]), math.ceil(size * height / box[3]))
    crop = None  # uint8 [h, w, 3], a view of a decode buffer
    if image.is_jpeg and image.orientation == 1:
        reduction = _reduction(image, need)
        reduced = (-(-width // reduction), -(-height // reduction))
        if jpeg_region.LIBRARY is not None:
            try:
                region = _reduced_box(box, (width, height), reduced)
                crop = torch.from_numpy(
                    jpeg_region.decode_region(image.data, reduction, region, _scratch)
                )
            except ValueError:  # the whole-image route decodes it, or names the problem
                pass
        if crop is None:
            pixels = _decode_jpeg_reduced(image, reduction, need)
    else:
        stored = need[::-1] if image.orientation in TRANSPOSING else need
        with _open(image.path, image.data) as im:
            pixels = _decode_with_pillow(im, stored, image.orientation)
    if crop is None:
        left, top, box_w, box_h = _reduced_box(box, (width, height), pixels.shape[:0:-1])
        crop = pixels[:, top : top + box_h, left : left + box_w].permute(1, 2, 0)
    # a copy (the decode buffer is reused), channels-last for the fast uint8 resize kernel
    crop = crop.clone(memory_format=torch.contiguous_format).permute(2, 0, 1)
    return TF.resize(crop, [size, size], antialias=True)


def _reduced_box(box: Box, full: tuple[int, int], reduced: tuple[int, int]) -> Box:
    """``box`` on an image of size ``full`` (W, H) moved to the pixel grid of the same image
    decoded at size ``reduced``: edges rounded to the nearest reduced pixel, at least one pixel,
    inside the image."""
    left, top, box_w, box_h = box
    sx, sy = reduced[0] / full[0], reduced[1] / full[1]
    top = min(round(top * sy), reduced[1] - 1)
    left = min(round(left * sx), reduced[0] - 1)
    box_h = max(1, min(round(box_h * sy), reduced[1] - top))
    box_w = max(1, min(round(box_w * sx), reduced[0] - left))
    return left, top, box_w, box_h


def _reduction(image: EncodedImage, need: tuple[int, int]) -> int:
    """The largest of 8, 4, 2, 1 that divides the image's width and height to at least
    ``need`` (libjpeg's M/8 scales between 1/2 and 1 decode slower than full size)."""
    factor = max(1, min(image.width // need[0], image.height // need[1]))
    return next(r for r in (8, 4, 2, 1) if factor >= r)


def _decode_jpeg_reduced(image: EncodedImage, reduction: int, need: tuple[int, int]) -> Tensor:
    """uint8 [3, H, W] of an upright JPEG decoded whole at 1/``reduction`` scale (Pillow's draft
    chooses the same scale from ``need``). Through simplejpeg the pixels land in a scratch buffer
    reused by the next call of this thread: the caller copies what it keeps."""
    out_w, out_h = -(-image.width // reduction), -(-image.height // reduction)
    try:
        if "simplejpeg" in JPEG_DECODERS:
            import simplejpeg

            array = simplejpeg.decode_jpeg(
                image.data,
                colorspace="RGB",
                min_width=out_w,
                min_height=out_h,
                buffer=_scratch(out_w * out_h * 3),
            )
            return torch.from_numpy(array).permute(2, 0, 1)
        if reduction == 1:
            return decode_jpeg_rgb(image.data)
    except (RuntimeError, ValueError):  # let Pillow decode it, or name the problem
        pass
    with _open(image.path, image.data) as im:
        return _decode_with_pillow(im, need, 1)


_local = threading.local()


def _scratch(nbytes: int) -> np.ndarray:
    """This thread's decode buffer, at least ``nbytes`` long: decoding into fresh memory costs
    a page fault per 4 KiB, as much as a reduced-scale decode itself for large photos."""
    buf = getattr(_local, "buffer", None)
    if buf is None or buf.size < nbytes:
        buf = _local.buffer = np.empty(max(nbytes, 1 << 20), dtype=np.uint8)
    return buf


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
