"""What a data folder or manifest may make longtail do: never run a program, never read outside
itself (unless asked), never give one file two labels or two splits, never hang on a special file
or decode an image it was told is huge, never take a damaged JPEG for an image; and the data's
fingerprint sees labels and files, not only counts."""

import ctypes
import io
import os
import threading

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

import longtail.data.decode as decode
from helpers import write_tree
from longtail.data import jpeg_region
from longtail.data.bundle import folder_bundle
from longtail.data.index import ImageIndex, build_index, read_manifest
from longtail.distribution import ClassDistribution


def jpeg_bytes(size=(64, 48), seed=0, **save) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def frame_offset(data: bytes) -> int:
    """Position of the frame header's marker (FF C0 / C2) in a JPEG Pillow wrote."""
    return next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))


def routes(path):
    """Every way longtail reads a file: evaluation (centre crop) and a training crop."""
    return (
        lambda: decode.read_image(path, 16, 16),
        lambda: decode.read_resized_crop(path, 16, lambda w, h: (0, 0, w, h)),
    )


def finishes(call, seconds=10.0):
    """Run ``call`` in a thread; return what it raised (None if it returned), or fail if it hangs."""
    outcome = {}

    def run():
        try:
            call()
            outcome["error"] = None
        except Exception as err:  # noqa: BLE001 - the test looks at it
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert "error" in outcome, "reading blocked"
    return outcome["error"]


# ---------------------------------------------------------------- what is opened, and how
def test_a_postscript_file_named_jpg_is_never_handed_to_ghostscript(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(
        EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1) or 1 / 0
    )
    path = tmp_path / "x.jpg"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    for read in routes(path):
        with pytest.raises(OSError, match="not an image file of a format read here"):
            read()
    assert not opened


def test_special_files_are_not_images_and_never_block(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 3, "b": 3}, size=8)
    os.mkfifo(root / "a" / "pipe.jpg")
    index = build_index(root, use_cache=False)
    assert len(index) == 6 and not any(p.endswith("pipe.jpg") for p in index.paths)
    for read in routes(root / "a" / "pipe.jpg"):
        err = finishes(read)
        assert isinstance(err, OSError) and "not a regular file" in str(err)
    manifest = root / "m.csv"
    manifest.write_text("path,label\na/img_0000.jpg,a\na/pipe.jpg,a\nb/img_0000.jpg,b\n")
    err = finishes(lambda: read_manifest(manifest))
    assert isinstance(err, ValueError) and "row 3" in str(err) and "not a regular file" in str(err)


def test_a_declared_decompression_bomb_is_refused_on_every_route(tmp_path):
    data = bytearray(jpeg_bytes(progressive=True))
    at = frame_offset(data)
    data[at + 5 : at + 9] = (65500).to_bytes(2, "big") * 2  # height, width: 4.3e9 pixels
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(Image.DecompressionBombError, match="65500 x 65500"):
        decode.read_encoded(path)
    for read in routes(path):
        with pytest.raises(Image.DecompressionBombError):
            read()


@pytest.mark.parametrize("variant", ["upright", "large", "rotated"])
def test_a_jpeg_cut_short_but_ended_is_damaged_on_every_route(tmp_path, variant):
    size = (900, 700) if variant == "large" else (64, 48)  # "large": decoded at a reduced scale
    save = {}
    if variant == "rotated":  # decoded by Pillow, which would fill the rest grey
        exif = Image.Exif()
        exif[decode.ORIENTATION] = 6
        save["exif"] = exif
    whole = jpeg_bytes(size, **save)
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[: len(whole) * 2 // 3] + b"\xff\xd9")
    for read in routes(path):
        with pytest.raises(OSError, match="damaged JPEG|Corrupt JPEG|premature"):
            read()


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        (lambda d, at: d.__setitem__(at + 1, 0xC3), "lossless"),
        (lambda d, at: d.__setitem__(at + 1, 0xC9), "arithmetic-coded"),
        (lambda d, at: d.__setitem__(at + 4, 12), "12-bit"),
    ],
)
def test_jpeg_codings_not_decoded_are_refused_alike_everywhere(tmp_path, change, kind):
    data = bytearray(jpeg_bytes())
    change(data, frame_offset(data))
    path = tmp_path / "odd.jpg"
    path.write_bytes(bytes(data))
    messages = set()
    for read in routes(path):
        with pytest.raises(OSError, match=f"is a {kind} JPEG") as caught:
            read()
        messages.add(str(caught.value))
    assert len(messages) == 1  # one line, whatever the route


def tj_compress(pixels: np.ndarray, subsampling: int) -> bytes:
    """A JPEG of ``pixels`` with a TurboJPEG subsampling code (5 = 4:1:1, 6 = 4:4:1)."""
    lib = jpeg_region.LIBRARY
    lib.tj3Init.restype = ctypes.c_void_p
    handle = ctypes.c_void_p(lib.tj3Init(0))
    lib.tj3Set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.tj3Set(handle, 4, subsampling)  # TJPARAM_SUBSAMP
    lib.tj3Set(handle, 3, 90)  # TJPARAM_QUALITY
    out, size = ctypes.c_void_p(), ctypes.c_size_t(0)
    height, width = pixels.shape[:2]
    status = lib.tj3Compress8(
        handle, pixels.ctypes.data_as(ctypes.c_void_p), width, 0, height, 0,
        ctypes.byref(out), ctypes.byref(size),
    )  # fmt: skip
    assert status == 0
    return ctypes.string_at(out, size.value)


@pytest.mark.parametrize("subsampling", [5, 6])  # 4:1:1, 4:4:1
def test_valid_subsamplings_read_the_same_on_every_route(tmp_path, subsampling):
    if jpeg_region.LIBRARY is None:
        pytest.skip("needs libturbojpeg 3 to write them: pip install 'longtail[turbojpeg]'")
    pixels = np.ascontiguousarray(
        np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    )
    path = tmp_path / "odd.jpg"
    path.write_bytes(tj_compress(pixels, subsampling))
    header = decode.read_encoded(path)
    assert (header.width, header.height, header.is_jpeg) == (64, 48, True)
    evaluated = decode.read_image(path, 48, 48)
    cropped = decode.read_resized_crop(path, 48, lambda w, h: (8, 0, 48, 48))
    assert (evaluated.float() - cropped.float()).abs().mean() < 2  # the same centre square


# ---------------------------------------------------------------- what is indexed
def test_a_class_folder_linked_to_another_class_is_refused_naming_both(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2}, size=8)
    os.symlink(root / "a", root / "c")
    with pytest.raises(ValueError, match="same file") as caught:
        build_index(root, use_cache=False)
    assert str(root / "a") in str(caught.value) and str(root / "c") in str(caught.value)


def test_a_hard_link_across_classes_is_refused(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2}, size=8)
    os.link(root / "a" / "img_0000.jpg", root / "b" / "also.jpg")
    with pytest.raises(ValueError, match=r"a/img_0000\.jpg and .*b/also\.jpg are the same file"):
        build_index(root, use_cache=False)


def test_one_file_in_two_split_folders_is_refused(tmp_path):
    write_tree(tmp_path / "d" / "train", {"a": 6, "b": 6}, size=8)
    write_tree(tmp_path / "d" / "test", {"a": 2, "b": 2}, size=8, seed=1)
    os.link(
        tmp_path / "d" / "train" / "a" / "img_0000.jpg", tmp_path / "d" / "test" / "a" / "x.jpg"
    )
    with pytest.raises(ValueError, match="same file.*each image belongs to one split"):
        folder_bundle(tmp_path / "d", image_size=8, rescan=True)


def test_links_out_of_the_data_folder_need_allow_outside(tmp_path):
    elsewhere = write_tree(tmp_path / "elsewhere", {"secret": 2, "loose": 1}, size=8)
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2}, size=8)
    os.symlink(elsewhere / "secret", root / "c")  # a folder link
    os.symlink(elsewhere / "loose" / "img_0000.jpg", root / "a" / "out.jpg")  # a file link
    with pytest.raises(ValueError, match="outside the data folder.*--allow-outside"):
        build_index(root, use_cache=False)
    index = build_index(root, use_cache=False, allow_outside=True)
    assert sorted(index.class_dirs) == ["a", "b", "c"] and len(index) == 8
    os.remove(root / "a" / "out.jpg")  # only the folder link: still outside
    with pytest.raises(ValueError, match=r"d/c is a link to .*elsewhere/secret"):
        build_index(root, use_cache=False)


def test_manifest_rows_outside_its_folder_need_allow_outside(tmp_path):
    write_tree(tmp_path / "set", {"a": 2, "b": 2}, size=8)
    write_tree(tmp_path / "other", {"z": 1}, size=8)
    for row in (f"{tmp_path}/other/z/img_0000.jpg", "../other/z/img_0000.jpg"):
        csv = tmp_path / "set" / "m.csv"
        csv.write_text(f"path,label\na/img_0000.jpg,a\nb/img_0000.jpg,b\n{row},b\n")
        with pytest.raises(ValueError, match="row 4 .*outside the manifest's folder"):
            read_manifest(csv)
        assert len(read_manifest(csv, allow_outside=True)) == 3
    inside = f"{tmp_path}/set/b/img_0001.jpg"  # an absolute path inside the folder is fine
    csv.write_text(f"path,label\na/img_0000.jpg,a\nb/img_0000.jpg,b\n{inside},b\n")
    assert len(read_manifest(csv)) == 3


def test_two_spellings_of_one_file_in_a_manifest_are_one_file(tmp_path):
    write_tree(tmp_path / "set", {"a": 2, "b": 2}, size=8)
    os.symlink(tmp_path / "set" / "a", tmp_path / "set" / "alias")
    csv = tmp_path / "set" / "m.csv"
    for spelling in (
        f"{tmp_path}/set/a/img_0000.jpg",
        "alias/img_0000.jpg",
        "./a/../a/img_0000.jpg",
    ):
        csv.write_text(f"path,label\na/img_0000.jpg,a\nb/img_0000.jpg,b\n{spelling},b\n")
        with pytest.raises(
            ValueError, match=r"rows 2 \(.*\) and 4 .* name the same file|rows 2 and 4"
        ):
            read_manifest(csv)


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 cut short"])
def test_a_damaged_index_cache_is_rebuilt(tmp_path, damage):
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2}, size=8)
    cache = tmp_path / "cache"
    build_index(root, cache_dir=cache)
    (file,) = cache.iterdir()
    file.write_bytes(damage)
    index = build_index(root, cache_dir=cache)
    assert len(index) == 5
    assert len(ImageIndex.load(file)[0]) == 5  # and written again


# ---------------------------------------------------------------- what identifies the data
def test_the_fingerprint_sees_an_image_moved_between_classes(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 8, "b": 8}, size=8)
    before = folder_bundle(root, image_size=8, rescan=True).fingerprint()
    # one image of a moved to b and one of b to a: the same counts, other labels
    os.rename(root / "a" / "img_0000.jpg", root / "b" / "moved.jpg")
    os.rename(root / "b" / "img_0001.jpg", root / "a" / "moved.jpg")
    after = folder_bundle(root, image_size=8, rescan=True).fingerprint()
    assert before["counts"] == after["counts"]
    assert before != after and before["content"] != after["content"]


def test_class_names_cannot_break_a_markdown_table():
    dist = ClassDistribution.from_labels([0, 0, 1, 2], class_names=["a|b", "two\nlines", "<i>x"])
    rows = [line for line in dist.to_markdown().splitlines() if line.startswith("| ")]
    per_class = [r for r in rows if r.endswith(("head |", "medium |", "tail |"))]
    assert len(per_class) == 3
    assert all(r.replace("\\|", "").count("|") == 5 for r in per_class)  # 4 cells each
    assert any("a\\|b" in r for r in per_class) and any("two\\nlines" in r for r in per_class)
    assert any("&lt;i&gt;x" in r for r in per_class)
