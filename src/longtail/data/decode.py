"""Decode an image file straight to the uint8 [3, size, size] tensor a model is fed.

The geometry is torchvision's ``Resize(resize_size) + CenterCrop(size)`` (shorter side to
``resize_size``, centre ``size`` x ``size`` crop), with torch's antialiased bilinear resampling of
uint8 images. Decoding takes the cheapest route:

- a JPEG at least twice ``resize_size`` on its shorter side is decoded at a reduced scale
  (libjpeg's DCT scaling: 1/2, 1/4 or 1/8, the smallest still >= ``resize_size``), so a
  4000 px photo bound for 224 px is never decoded at full size;
- any other JPEG is decoded by libjpeg-turbo straight into a tensor, through simplejpeg (also
  TorchCodec or torchvision, whose decoders are deprecated since 0.29, when simplejpeg does not
  load); the pixels are then those of torchvision's own pipeline, to within one level;
- everything else (PNG, TIFF, WebP, ..., and JPEGs with an EXIF rotation) by Pillow.

For training, :func:`read_resized_crop` takes any box of the image (a random-resized crop) to
``size`` x ``size`` the same way, choosing the box on the header's geometry so that the JPEG can be
reduced on decode whenever the box keeps enough pixels, and decoding the box alone where
libturbojpeg 3 is installed (:mod:`longtail.data.jpeg_region`).

Grayscale (8 and 16 bits), palette, CMYK and alpha images come out RGB; EXIF orientation is
respected. An unreadable file raises ``OSError`` (Pillow's ``UnidentifiedImageError`` is one).

What is read, and how, is the same on every route:

- only regular files are read (a FIFO or a device is refused without waiting on it), at most
  :data:`MAX_FILE_BYTES`;
- only the formats in :data:`FORMATS` are opened (Pillow's other plugins, such as PostScript,
  which runs Ghostscript, are never asked);
- a JPEG's header is parsed here (:func:`jpeg_frame`), and only 8-bit baseline, extended or
  progressive Huffman JPEGs are decoded; lossless, arithmetic-coded, hierarchical and 12-bit ones
  are refused with one message;
- an image that declares more pixels than Pillow's decompression-bomb limit
  (2 x ``PIL.Image.MAX_IMAGE_PIXELS``) is refused before any decoding, whichever decoder would
  have read it;
- JPEG data is decoded by libjpeg-turbo stopping at its first warning: a file cut short (even
  one that still ends with an end-of-image marker) is an ``OSError``, never an image filled grey.
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
from PIL.Image import DecompressionBombError
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from longtail._io import read_regular_file
from longtail.data import jpeg_region

ORIENTATION = 0x0112  # the EXIF tag
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""The Pillow formats an image file may be (PPM covers .pgm); any other file is unreadable."""
MAX_FILE_BYTES = 1 << 30
"""The largest image file read (1 GiB)."""


def _simplejpeg(data: bytes) -> Tensor:
    import simplejpeg

    return torch.from_numpy(simplejpeg.decode_jpeg(data, colorspace="RGB")).permute(2, 0, 1)


def _torchcodec(data: bytes) -> Tensor:
    from torchcodec.decoders import decode_jpeg

    check_jpeg_data(data)  # it would fill a damaged file's missing part grey
    return decode_jpeg(data, mode="RGB")


def _torchvision(data: bytes) -> Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    check_jpeg_data(data)  # it would fill a damaged file's missing part grey
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
    check_resized(image, resize_size)
    pixels = None
    small = min(image.width, image.height) < 2 * resize_size  # too small to reduce on decode
    if image.is_jpeg and image.orientation == 1 and not small:
        need = (resize_size, resize_size)
        pixels = _decode_jpeg_reduced(image, _reduction(image, need), need)
    elif image.is_jpeg and image.orientation == 1:
        try:
            pixels = decode_jpeg_rgb(image.data)
        except (RuntimeError, ValueError):  # let Pillow decode it, or name the problem
            pass
    if pixels is None:
        pixels = _pillow_pixels(image, (resize_size, resize_size), image.orientation)
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
    """The file at ``path`` and its header, without decoding a pixel. A JPEG's header is parsed
    here (:func:`jpeg_frame`); Pillow reads its orientation where its header segments may hold
    one (an EXIF block, an XMP orientation), and the header of every other format. Raises
    ``OSError`` for a file that is not a readable image of :data:`FORMATS`, and Pillow's
    ``DecompressionBombError`` for one that declares too many pixels."""
    data = read_regular_file(path, MAX_FILE_BYTES)
    if data[:3] == b"\xff\xd8\xff":
        segments, complete = header_segments(data)
        frame = _frame(segments, path)
        width, height, orientation = frame.width, frame.height, 1
        if _may_be_rotated(segments, complete):
            with _open(path, data) as im:
                orientation = im.getexif().get(ORIENTATION, 1)
            if orientation in TRANSPOSING:
                width, height = height, width
        image = EncodedImage(str(path), data, width, height, orientation, True)
    else:
        with _open(path, data) as im:
            orientation = im.getexif().get(ORIENTATION, 1)
            width, height = im.size[::-1] if orientation in TRANSPOSING else im.size
            image = EncodedImage(str(path), data, width, height, orientation, False)
    check_pixels(image.width, image.height, path)
    return image


def check_pixels(width: int, height: int, path: str | Path) -> None:
    """Refuse an image declaring more pixels than Pillow's decompression-bomb limit (2 x
    ``PIL.Image.MAX_IMAGE_PIXELS``; none when that is ``None``), on every decode route."""
    limit = Image.MAX_IMAGE_PIXELS
    if width < 1 or height < 1:
        raise OSError(f"{path} declares a {width} x {height} image; it is damaged")
    if limit is not None and width * height > 2 * limit:
        raise DecompressionBombError(
            f"{path} declares {width} x {height} = {width * height:,} pixels, over the "
            f"{2 * limit:,} that PIL.Image.MAX_IMAGE_PIXELS allows: a decompression bomb, or raise "
            "that limit if the image is genuine"
        )


def check_resized(image: EncodedImage, resize_size: int) -> None:
    """Refuse an image whose shorter side scaled to ``resize_size`` makes more pixels than
    ``PIL.Image.MAX_IMAGE_PIXELS`` (an extreme aspect ratio: a 1 x 65000 strip at 224 would be a
    224 x 14,560,000 tensor), before anything is decoded."""
    limit = Image.MAX_IMAGE_PIXELS
    short, long = sorted((image.width, image.height))
    resized = resize_size * math.ceil(resize_size * long / short)
    if limit is not None and resized > limit:
        raise DecompressionBombError(
            f"{image.path} is {image.width} x {image.height}: its shorter side scaled to "
            f"{resize_size} px would make {resized:,} pixels, over the {limit:,} that "
            "PIL.Image.MAX_IMAGE_PIXELS allows; crop it to a usual aspect ratio"
        )


@dataclass(frozen=True)
class JpegFrame:
    """What a JPEG's frame header (SOFn) says: stored size, components, precision, coding."""

    marker: int
    width: int
    height: int
    components: int
    precision: int


DECODED_FRAMES = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive"}
"""The JPEG codings decoded (Huffman-coded, 8 bits), by frame marker: every decoder used here
reads these alike."""
_OTHER_FRAMES = {0xC3: "lossless", 0xC5: "hierarchical", 0xC6: "hierarchical", 0xC7: "lossless"}
_OTHER_FRAMES |= {m: "arithmetic-coded" for m in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)}


Segment = tuple[int, bytes]


def header_segments(jpeg: bytes) -> tuple[list[Segment], bool]:
    """The header segments of a JPEG (those before its first scan) as (marker, body) pairs, and
    whether the walk reached the first scan (or the end) cleanly rather than stopping at bytes
    that are not a segment."""
    segments: list[Segment] = []
    pos, end = 2, len(jpeg)
    while pos + 4 <= end and jpeg[pos] == 0xFF:
        marker = jpeg[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no more header segments
            return segments, True
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        segments.append((marker, jpeg[pos + 4 : pos + 2 + length]))
        pos += 2 + length
    return segments, False


def jpeg_frame(data: bytes, path: str | Path = "JPEG") -> JpegFrame:
    """The frame header of the JPEG ``data`` (see :func:`header_segments`). Raises ``OSError``
    for a header that does not parse, and for a coding that is not decoded (lossless,
    arithmetic-coded, hierarchical, or other than 8 bits), naming it."""
    return _frame(header_segments(data)[0], path)


def _frame(segments: list[Segment], path: str | Path) -> JpegFrame:
    for marker, body in segments:
        if (marker in DECODED_FRAMES or marker in _OTHER_FRAMES) and len(body) >= 6:
            frame = JpegFrame(
                marker,
                width=int.from_bytes(body[3:5], "big"),
                height=int.from_bytes(body[1:3], "big"),
                components=body[5],
                precision=body[0],
            )
            kind = _OTHER_FRAMES.get(marker) or (frame.precision != 8 and f"{frame.precision}-bit")
            if kind:
                raise OSError(
                    f"{path} is a {kind} JPEG, which longtail does not decode; convert it to an "
                    "ordinary 8-bit JPEG or to PNG"
                )
            return frame
    raise OSError(f"{path} is not a readable JPEG: its header has no frame size")


def check_jpeg_data(data: bytes, path: str | Path = "JPEG") -> None:
    """Raise ``OSError`` if libjpeg-turbo, stopping at its first warning, finds the JPEG ``data``
    damaged (cut short, corrupt entropy data). Decoders that would go on silently (Pillow,
    torchvision) are called only after this check, which decodes at 1/8 scale."""
    import simplejpeg

    frame = jpeg_frame(data, path)
    space = "CMYK" if frame.components == 4 else "GRAY" if frame.components == 1 else "RGB"
    try:
        simplejpeg.decode_jpeg(data, colorspace=space, min_factor=8, strict=True)
    except ValueError as err:
        raise OSError(f"{path} is a damaged JPEG: {err}") from None


def _may_be_rotated(segments: list[Segment], complete: bool) -> bool:
    """Whether a JPEG's header segments may hold an orientation: an EXIF block, or XMP naming
    ``tiff:Orientation`` (Pillow reads both). A header that does not parse counts as may, so
    that Pillow reads it or names the problem."""
    for marker, body in segments:
        if marker == 0xE1 and (body.startswith(b"Exif\0\0") or b"tiff:Orientation" in body):
            return True  # APP1: EXIF or XMP
    return not complete


def _open(path: str | Path, data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except UnidentifiedImageError:
        raise UnidentifiedImageError(
            f"{path} is not an image file of a format read here ({', '.join(FORMATS)})"
        ) from None


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
        pixels = _pillow_pixels(image, stored, image.orientation)
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
    return _pillow_pixels(image, need, 1)


_local = threading.local()


def _scratch(nbytes: int) -> np.ndarray:
    """This thread's decode buffer, at least ``nbytes`` long: decoding into fresh memory costs
    a page fault per 4 KiB, as much as a reduced-scale decode itself for large photos."""
    buf = getattr(_local, "buffer", None)
    if buf is None or buf.size < nbytes:
        buf = _local.buffer = np.empty(max(nbytes, 1 << 20), dtype=np.uint8)
    return buf


def _pillow_pixels(image: EncodedImage, draft: tuple[int, int], orientation: int) -> Tensor:
    """uint8 [3, H, W] RGB of ``image`` decoded by Pillow (see :func:`_decode_with_pillow`); a
    JPEG is first checked for damage, which Pillow's decoder would fill grey in silence."""
    if image.is_jpeg:
        check_jpeg_data(image.data, image.path)
    with _open(image.path, image.data) as im:
        return _decode_with_pillow(im, draft, orientation)


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
    """16-bit (and 32-bit integer) gray scaled by 255 / 65535 and rounded, i.e. to the high byte;
    float images holding [0, 1] by 255, others by their own maximum. Integer images are scaled
    in integers (round(x * 255 / 65535) = (x * 255 + 32767) // 65535: never a tie), so a 16-bit
    image costs its own 2 bytes a pixel, 4 for the scaling and 3 for the result."""
    x = np.asarray(im)
    if im.mode == "F":
        x = np.nan_to_num(x.astype(np.float32, copy=False))
        top = 1.0 if x.size and x.max() <= 1.0 else max(float(x.max()), 1.0)
        gray = np.clip(np.rint(x * np.float32(255.0 / top)), 0, 255).astype(np.uint8)
    else:
        top = 65535 if not x.size or int(x.max()) <= 65535 else int(x.max())
        wide = x.astype(np.uint32) if x.dtype == np.uint16 else np.clip(x, 0, None).astype(np.int64)
        wide *= 255
        wide += top // 2
        wide //= top
        gray = wide.astype(np.uint8)
        del wide
    return torch.from_numpy(np.ascontiguousarray(gray)).expand(3, *gray.shape).clone()


def center_crop_resize(pixels: Tensor, size: int, resize_size: int) -> Tensor:
    """uint8 [3, H, W] -> [3, size, size] by torchvision's ``Resize(resize_size, antialias=True)``
    then ``CenterCrop(size)``, on a channels-last view (the fast uint8 kernel)."""
    pixels = pixels.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # no copy if already HWC
    return TF.center_crop(TF.resize(pixels, [resize_size], antialias=True), [size])


__all__ = [
    "DECODED_FRAMES",
    "FORMATS",
    "JPEG_DECODERS",
    "MAX_FILE_BYTES",
    "ORIENTATION",
    "TRANSPOSING",
    "WIDE_MODES",
    "Box",
    "center_crop_resize",
    "check_jpeg_data",
    "check_pixels",
    "check_resized",
    "decode_jpeg_rgb",
    "decode_resized_crop",
    "EncodedImage",
    "header_segments",
    "installed_jpeg_decoders",
    "jpeg_frame",
    "JpegFrame",
    "read_encoded",
    "read_image",
    "read_resized_crop",
    "Segment",
]
