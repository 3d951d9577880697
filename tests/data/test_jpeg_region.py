"""Region decoding through libturbojpeg 3: the same pixels as the whole image decoded at the same
scale, for every subsampling, progressive files and odd sizes; the training crop identical with
and without it; damaged and unsupported files left to the whole-image route."""

from __future__ import annotations

import io
import platform
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from longtail.data import decode, jpeg_region
from longtail.data.decode import EncodedImage, decode_resized_crop, read_resized_crop

# the test extra installs the turbojpeg wheel where one exists (see pyproject.toml): there a
# missing library fails these tests instead of skipping them
WHEEL_EXISTS = sys.version_info < (3, 14) and platform.machine() in ("x86_64", "AMD64", "arm64")
pytestmark = pytest.mark.skipif(
    jpeg_region.LIBRARY is None and not WHEEL_EXISTS, reason="no libturbojpeg 3 wheel here"
)


def photo(width: int = 330, height: int = 250, seed: int = 0) -> Image.Image:
    """Smooth colour noise, so chroma upsampling has edges to get wrong."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 10, width // 10, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BICUBIC)


def encoded(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


def whole(data: bytes, reduction: int) -> np.ndarray:
    """The whole image at 1/reduction scale: a region as large as the image (no cropping)."""
    with Image.open(io.BytesIO(data)) as im:
        width, height = -(-im.width // reduction), -(-im.height // reduction)
    box = (0, 0, width, height)
    return jpeg_region.decode_region(data, reduction, box, lambda n: np.empty(n, np.uint8))


FILES = {
    "4:4:4": lambda: encoded(photo(), subsampling=0),
    "4:2:2": lambda: encoded(photo(), subsampling=1),
    "4:2:0": lambda: encoded(photo(), subsampling=2),
    "gray": lambda: encoded(photo().convert("L")),
    "progressive": lambda: encoded(photo(), progressive=True),
    "odd size": lambda: encoded(photo(333, 247)),
    "restart markers": lambda: encoded(photo(), restart_marker_rows=1),
    "optimized Huffman": lambda: encoded(photo(), optimize=True),
}


@pytest.mark.parametrize("kind", list(FILES))
@pytest.mark.parametrize("reduction", [1, 2, 4, 8])
def test_a_region_has_the_pixels_of_the_whole_image_decoded(kind, reduction):
    data = FILES[kind]()
    full = whole(data, reduction)
    height, width = full.shape[:2]
    rng = np.random.default_rng(reduction)
    boxes = [(0, 0, width, height), (0, 0, 1, 1), (width - 1, height - 1, 1, 1)]
    # left edges on and beside an iMCU boundary, where chroma upsampling needs a neighbour
    boxes += [(16 // reduction, 3, width // 2, height // 3), (16 // reduction + 1, 0, 5, 9)]
    for _ in range(40):
        w, h = int(rng.integers(1, width + 1)), int(rng.integers(1, height + 1))
        boxes.append(
            (int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h)
        )
    for left, top, w, h in boxes:
        region = jpeg_region.decode_region(data, reduction, (left, top, w, h), decode._scratch)
        assert region.shape == (h, w, 3)
        assert np.array_equal(region, full[top : top + h, left : left + w]), (left, top, w, h)
    if kind == "gray":
        assert np.array_equal(full[..., 0], full[..., 2])  # gray comes out RGB


def test_the_training_crop_is_identical_with_and_without_region_decoding(tmp_path, monkeypatch):
    path = tmp_path / "p.jpg"
    path.write_bytes(encoded(photo(1200, 900, seed=1)))
    image = decode.read_encoded(path)
    rng = np.random.default_rng(2)
    boxes = [(0, 0, 1200, 900), (600, 450, 600, 450), (16, 0, 300, 250)]
    for _ in range(30):
        w, h = int(rng.integers(20, 1201)), int(rng.integers(20, 901))
        boxes.append((int(rng.integers(0, 1200 - w + 1)), int(rng.integers(0, 900 - h + 1)), w, h))
    with_regions = [decode_resized_crop(image, 64, box) for box in boxes]
    monkeypatch.setattr(jpeg_region, "LIBRARY", None)
    for box, ours in zip(boxes, with_regions, strict=True):
        assert torch.equal(ours, decode_resized_crop(image, 64, box)), box


def test_damage_is_an_error_where_the_region_reads_it(tmp_path):
    data = encoded(photo(400, 400))
    truncated = data[: len(data) // 2]  # the lower half of the scan is missing
    with pytest.raises(ValueError):
        jpeg_region.decode_region(truncated, 1, (0, 300, 100, 100), decode._scratch)
    # a region above the damage is decoded exactly: the missing rows are never read
    top = jpeg_region.decode_region(truncated, 1, (0, 0, 400, 64), decode._scratch)
    assert np.array_equal(top, whole(data, 1)[:64])
    # the training crop falls back to the whole-image route, which names the file
    path = tmp_path / "truncated.jpg"
    path.write_bytes(truncated)
    with pytest.raises(OSError):
        read_resized_crop(path, 32, lambda w, h: (0, 300, 100, 100))
    with pytest.raises(ValueError):
        jpeg_region.decode_region(b"\xff\xd8\xff\xe0 not a JPEG", 1, (0, 0, 1, 1), decode._scratch)
    # a failure leaves nothing behind: the next file decodes
    after = jpeg_region.decode_region(data, 1, (0, 0, 400, 400), decode._scratch)
    assert np.array_equal(after, whole(data, 1))


def test_a_cmyk_jpeg_is_left_to_pillow(tmp_path, monkeypatch):
    data = encoded(photo(64, 48).convert("CMYK"))
    with pytest.raises(ValueError):
        jpeg_region.decode_region(data, 1, (0, 0, 8, 8), decode._scratch)
    image = EncodedImage(str(tmp_path / "cmyk.jpg"), data, 64, 48, 1, True)
    out = decode_resized_crop(image, 24, (8, 8, 32, 32))  # no reduction
    with Image.open(io.BytesIO(data)) as im:
        rgb = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    from torchvision.transforms.v2 import functional as TF

    expected = TF.resized_crop(rgb, 8, 8, 32, 32, [24, 24], antialias=True)
    assert (out.float() - expected.float()).abs().max() <= 1
    monkeypatch.setattr(jpeg_region, "LIBRARY", None)
    assert torch.equal(out, decode_resized_crop(image, 24, (8, 8, 32, 32)))


def test_threads_decode_with_their_own_decompressors():
    data = FILES["4:2:0"]()
    full = whole(data, 2)
    results: dict[int, bool] = {}

    def work(k: int) -> None:
        ok = True
        for i in range(20):
            box = (k * 7 + i, i, 40, 30)
            region = jpeg_region.decode_region(data, 2, box, lambda n: np.empty(n, np.uint8))
            ok &= np.array_equal(region, full[i : i + 30, k * 7 + i : k * 7 + i + 40])
        results[k] = ok

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == dict.fromkeys(range(4), True)


def test_no_library_means_whole_image_decoding(monkeypatch):
    monkeypatch.setattr(jpeg_region, "_library_files", lambda: [])
    assert jpeg_region.load_library() is None
    import ctypes.util

    libc = ctypes.util.find_library("c")  # loads, but has no TurboJPEG 3 API
    monkeypatch.setattr(jpeg_region, "_library_files", lambda: [libc, "/no/such/lib.so"])
    assert jpeg_region.load_library() is None
    monkeypatch.setattr(jpeg_region, "LIBRARY", None)
    with pytest.raises(RuntimeError, match="longtail\\[turbojpeg\\].*LONGTAIL_TURBOJPEG"):
        jpeg_region.decode_region(FILES["gray"](), 1, (0, 0, 1, 1), decode._scratch)


def test_the_environment_variable_names_the_library_first(monkeypatch):
    found = jpeg_region._library_files()
    monkeypatch.setenv("LONGTAIL_TURBOJPEG", found[-1])
    assert jpeg_region._library_files()[0] == found[-1]
    assert jpeg_region.load_library() is not None
    import ctypes.util

    libc = ctypes.util.find_library("c")
    for bad, why in ((libc, "no tj3Init"), ("/no/such/libturbojpeg.so", "no/such")):
        monkeypatch.setenv("LONGTAIL_TURBOJPEG", bad)
        with pytest.warns(UserWarning, match=f"LONGTAIL_TURBOJPEG={bad} is not usable.*{why}"):
            lib = jpeg_region.load_library()
        assert lib is not None  # the next candidate, the wheel's library
