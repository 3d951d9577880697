"""Memory a wide PNG costs while it is turned into 8-bit RGB, before and after integer scaling.

Usage: python benchmarks/decode_memory.py [--side 2048]

Decodes a ``side`` x ``side`` 16-bit gray PNG and a 1-bit PNG with Pillow, then measures (with
``tracemalloc``, which sees numpy's buffers) the peak bytes per pixel of longtail's conversion
to uint8 RGB (``decode._wide_to_rgb`` / ``decode._decode_with_pillow``) against the float64
conversion it replaced, written out below as the peer, in the same run. Pillow's own decode
buffer (2 bytes a pixel for 16-bit) comes on top of both.
"""

from __future__ import annotations

import argparse
import io
import tracemalloc

import numpy as np
import torch
from PIL import Image

from longtail.data import decode


def float64_to_rgb(im: Image.Image) -> torch.Tensor:
    """The conversion before: float64 intermediates."""
    x = np.asarray(im).astype(np.float64)
    top = 65535.0 if not x.size or x.max() <= 65535 else float(x.max())
    gray = np.clip(np.rint(np.nan_to_num(x) * (255.0 / top)), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(gray)).expand(3, *gray.shape).clone()


def peak_bytes(convert, im: Image.Image) -> tuple[int, torch.Tensor]:
    tracemalloc.start()
    out = convert(im)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, out


def png(array: np.ndarray, mode: str | None = None) -> Image.Image:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, "PNG")
    im = Image.open(io.BytesIO(buf.getvalue()))
    im.load()
    return im


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    side = parser.parse_args().side
    rng = np.random.default_rng(0)
    pixels = side * side
    wide = png(rng.integers(0, 65536, (side, side), dtype=np.uint16))
    print(f"{side} x {side} = {pixels:,} pixels; peak bytes per pixel of the conversion")
    before, a = peak_bytes(float64_to_rgb, wide)
    after, b = peak_bytes(decode._wide_to_rgb, wide)
    same = "identical" if torch.equal(a, b) else "DIFFERENT"
    print(
        f"16-bit PNG  float64 (before) {before / pixels:5.1f}   integer (now) {after / pixels:5.1f}"
        f"   ratio {after / before:.2f}   pixels {same}"
    )
    bits = png(rng.integers(0, 2, (side, side)).astype(bool))
    one, _ = peak_bytes(lambda im: decode._decode_with_pillow(im, (side, side), 1), bits)
    print(f"1-bit PNG   now {one / pixels:5.1f} (Pillow's convert to RGB, then one uint8 copy)")


if __name__ == "__main__":
    main()
