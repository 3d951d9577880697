"""Decode one region of a JPEG at a reduced scale: TurboJPEG 3's partial decompression.

libjpeg-turbo >= 3.0 decodes a region (``tj3SetCroppingRegion``) at a DCT scale
(``tj3SetScalingFactor``, 1/2^k here) without decoding the rest: the rows above the region are
entropy-decoded only (``jpeg_skip_scanlines``), the rows below are not read at all, and only the
region's columns, widened by one iMCU (8 to 32 pixels at full scale) each side, are
inverse-transformed, upsampled and colour-converted (``jpeg_crop_scanline``). The pixels are those
of the whole image decoded at the same scale (tested). A random-resized crop of a large photo costs
about a quarter less than decoding the whole image at the same scale
(``benchmarks/pipeline.py`` prints both).

The library is called through ctypes: the TurboJPEG 3 API reports every error as a return value
(libjpeg's longjmp stays inside it), so a corrupt file is a ``ValueError``, never a crash. It is
the file named by ``$LONGTAIL_TURBOJPEG``, else the one in the ``turbojpeg`` wheel
(``pip install 'longtail[turbojpeg]'``; its library file only, not its binding), else the system's
libturbojpeg when that is version 3. With none, :data:`LIBRARY` is ``None`` and callers decode
the whole image.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from longtail.errors import LongtailError

TJINIT_DECOMPRESS = 1
TJPARAM_STOPONWARNING = 0
TJPARAM_SUBSAMP = 4
TJPARAM_JPEGWIDTH = 5
TJPF_RGB = 0
MCU_WIDTH = {0: 8, 1: 16, 2: 16, 3: 8, 4: 8, 5: 32, 6: 8}
"""iMCU width in pixels by TurboJPEG subsampling (4:4:4, 4:2:2, 4:2:0, gray, 4:4:0, 4:1:1, 4:4:1):
a region's left edge must fall on a multiple of it, scaled."""


class _Scale(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int), ("denom", ctypes.c_int)]


class _Region(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("x", "y", "w", "h")]


ENV_VAR = "LONGTAIL_TURBOJPEG"
"""Path of a libturbojpeg (>= 3.0) to use before any other."""


def _library_files() -> list[str]:
    """Candidate libturbojpeg files: ``$LONGTAIL_TURBOJPEG``, the ``turbojpeg`` wheel's, then
    the system's."""
    found = [os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else []
    try:
        dist = importlib.metadata.distribution("turbojpeg")
        for file in dist.files or ():
            name = Path(file).name  # libturbojpeg-<hash>.so.0.3.0, ...dylib, turbojpeg-<hash>.dll
            if name.startswith("libturbojpeg") or name.startswith("turbojpeg") and ".dll" in name:
                found.append(str(dist.locate_file(file)))
    except importlib.metadata.PackageNotFoundError:
        pass
    system = ctypes.util.find_library("turbojpeg")
    if system:
        found.append(system)
    return found


def load_library() -> ctypes.CDLL | None:
    """The first candidate library that loads and has the TurboJPEG 3 API, with argument types
    declared; ``None`` if there is none. A ``$LONGTAIL_TURBOJPEG`` that is not one is named in a
    warning."""
    for file in _library_files():
        try:
            lib = ctypes.CDLL(file)
            lib.tj3Init  # noqa: B018 (absent before libjpeg-turbo 3.0)
        except (OSError, AttributeError) as err:
            if file == os.environ.get(ENV_VAR):
                why = (
                    "it has no tj3Init (libjpeg-turbo < 3.0)"
                    if isinstance(err, AttributeError)
                    else err
                )
                warnings.warn(f"{ENV_VAR}={file} is not usable: {why}", stacklevel=2)
            continue
        handle, buffer, size, i = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        lib.tj3Init.argtypes, lib.tj3Init.restype = [i], handle
        lib.tj3Destroy.argtypes, lib.tj3Destroy.restype = [handle], None
        lib.tj3Set.argtypes = [handle, i, i]
        lib.tj3Get.argtypes = [handle, i]
        lib.tj3DecompressHeader.argtypes = [handle, ctypes.c_char_p, size]
        lib.tj3SetScalingFactor.argtypes = [handle, _Scale]
        lib.tj3SetCroppingRegion.argtypes = [handle, _Region]
        lib.tj3Decompress8.argtypes = [handle, ctypes.c_char_p, size, buffer, i, i]
        lib.tj3GetErrorStr.argtypes, lib.tj3GetErrorStr.restype = [handle], ctypes.c_char_p
        return lib
    return None


LIBRARY = load_library()


class _Handle:
    """One thread's TurboJPEG decompressor (a handle is not shared between threads)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.ptr = lib.tj3Init(TJINIT_DECOMPRESS)
        if not self.ptr:
            raise MemoryError("TurboJPEG could not allocate a decompressor")
        lib.tj3Set(self.ptr, TJPARAM_STOPONWARNING, 1)  # a damaged file stops at once

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self.lib.tj3Destroy(self.ptr)

    def check(self, status: int) -> None:
        """Raise TurboJPEG's message for a failed call."""
        if status != 0:
            raise LongtailError(self.lib.tj3GetErrorStr(self.ptr).decode(errors="replace"))


_local = threading.local()


def decode_region(
    data: bytes,
    reduction: int,
    box: tuple[int, int, int, int],
    buffer_for: Callable[[int], np.ndarray],
) -> np.ndarray:
    """uint8 [height, width, 3] RGB: the ``box`` (left, top, width, height, in pixels of the image
    scaled by 1/``reduction``, which is 1, 2, 4 or 8) of the JPEG ``data``, decoded alone.

    ``buffer_for(nbytes)`` gives the memory to decode into (a uint8 array of at least ``nbytes``);
    the result is a view of it. Raises ``ValueError`` naming TurboJPEG's complaint for a file it
    cannot decode (corrupt or truncated before the box's last row, CMYK, 12-bit, unknown
    subsampling); damage below the box is never read, so never seen."""
    if LIBRARY is None:
        raise RuntimeError(
            f"no libturbojpeg 3 loaded: pip install 'longtail[turbojpeg]', or set {ENV_VAR}"
        )
    handle = getattr(_local, "handle", None)
    if handle is None:
        handle = _local.handle = _Handle(LIBRARY)
    try:
        return _decode(handle, data, reduction, box, buffer_for)
    except ValueError:
        _local.handle = None  # a handle left mid-file (a header it could not read) keeps failing
        raise


def _decode(
    handle: _Handle,
    data: bytes,
    reduction: int,
    box: tuple[int, int, int, int],
    buffer_for: Callable[[int], np.ndarray],
) -> np.ndarray:
    lib, ptr = handle.lib, handle.ptr
    left, top, width, height = box
    handle.check(lib.tj3DecompressHeader(ptr, data, len(data)))
    subsampling = lib.tj3Get(ptr, TJPARAM_SUBSAMP)
    if subsampling not in MCU_WIDTH:
        raise LongtailError("TurboJPEG cannot crop a JPEG of unknown chroma subsampling")
    step = MCU_WIDTH[subsampling] // reduction
    # one iMCU more on each side where the image goes on: chroma upsampling at a region's edge
    # would otherwise repeat the edge column instead of blending with its neighbour
    x0 = max(0, (left // step - 1) * step)
    x1 = min(left + width + step, -(-lib.tj3Get(ptr, TJPARAM_JPEGWIDTH) // reduction))
    decoded_width = x1 - x0
    handle.check(lib.tj3SetScalingFactor(ptr, _Scale(1, reduction)))
    handle.check(lib.tj3SetCroppingRegion(ptr, _Region(x0, top, decoded_width, height)))
    pitch = decoded_width * 3
    out = buffer_for(pitch * height)[: pitch * height]
    if out.size < pitch * height or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise RuntimeError(f"buffer_for({pitch * height}) gave {out.size} bytes, {out.dtype}")
    handle.check(lib.tj3Decompress8(ptr, data, len(data), out.ctypes.data, pitch, TJPF_RGB))
    return out.reshape(height, decoded_width, 3)[:, left - x0 : left - x0 + width]


__all__ = [
    "ENV_VAR",
    "LIBRARY",
    "MCU_WIDTH",
    "TJINIT_DECOMPRESS",
    "TJPARAM_JPEGWIDTH",
    "TJPARAM_STOPONWARNING",
    "TJPARAM_SUBSAMP",
    "TJPF_RGB",
    "decode_region",
    "load_library",
]
