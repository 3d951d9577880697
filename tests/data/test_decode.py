"""read_image: same picture as torchvision's Resize + CenterCrop on every decode route, RGB from
any mode, EXIF orientation, reduce-on-decode, and clear errors for corrupt files."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

import longtail.data.decode as decode
from longtail.data.decode import read_image


@pytest.fixture(scope="module")
def photo():
    from sklearn.datasets import load_sample_images

    return Image.fromarray(load_sample_images().images[1])  # flower.jpg, 640x427


@pytest.fixture(params=list(decode.installed_jpeg_decoders()))
def jpeg_decoder(request, monkeypatch):
    """Each installed JPEG decoder in turn, recording its calls."""
    decoder = decode.installed_jpeg_decoders()[request.param]
    calls = []
    monkeypatch.setattr(decode, "decode_jpeg_rgb", lambda data: calls.append(1) or decoder(data))
    return calls


def torchvision_reference(path, size, resize_size):
    tf = transforms.Compose(
        [transforms.Resize(resize_size), transforms.CenterCrop(size), transforms.PILToTensor()]
    )
    with Image.open(path) as im:
        return tf(im.convert("RGB"))


@pytest.mark.parametrize(
    "name, width, route",
    [
        ("small.jpg", 180, "libjpeg"),  # enlarged: shorter side 120 -> 256
        ("medium.jpg", 640, "libjpeg"),  # shorter side 427: no 1/2 scale keeps >= 256
        ("large.jpg", 1600, "reduced"),  # shorter side 1067: decoded at 1/4 (267 px)
        ("medium.png", 640, "pillow"),
    ],
)
def test_matches_torchvision_resize_center_crop(
    tmp_path, photo, monkeypatch, jpeg_decoder, name, width, route
):
    path = tmp_path / name
    photo.resize((width, round(width * 427 / 640)), Image.BICUBIC).save(path, quality=95)
    seen = []
    reduced = decode._decode_jpeg_reduced
    monkeypatch.setattr(
        decode, "_decode_jpeg_reduced", lambda im, r, *a: seen.append(r) or reduced(im, r, *a)
    )
    ours = read_image(path, 224, 256)
    assert ours.dtype == torch.uint8 and ours.shape == (3, 224, 224)
    seen += ["libjpeg"] * len(jpeg_decoder)
    assert seen == {"pillow": [], "reduced": [4], "libjpeg": ["libjpeg"]}[route]
    diff = (ours.float() - torchvision_reference(path, 224, 256).float()).abs()
    # full-scale decodes give torchvision's pixels (off by at most one rounding step); a decode
    # at 1/4 scale differs by about one level in 255 on average (measured: 0.9)
    assert diff.mean() < (1.5 if route == "reduced" else 0.05), diff.mean()
    assert route == "reduced" or diff.max() <= 1


def test_reduce_on_decode_never_goes_below_the_resize_size(tmp_path, monkeypatch):
    Image.new("RGB", (2000, 1000), (10, 200, 30)).save(tmp_path / "big.jpg")
    shapes = []
    crop = decode.center_crop_resize
    monkeypatch.setattr(
        decode, "center_crop_resize", lambda px, *a: shapes.append(px.shape) or crop(px, *a)
    )
    out = read_image(tmp_path / "big.jpg", 224, 256)
    assert shapes == [(3, 500, 1000)]  # 1/2 scale; 1/4 would give a shorter side of 250 < 256
    assert out[:, 100, 100].tolist() == pytest.approx([10, 200, 30], abs=3)


def test_every_mode_comes_out_rgb(tmp_path, jpeg_decoder):
    Image.new("L", (30, 30), 128).save(tmp_path / "gray.png")
    Image.new("L", (30, 30), 128).save(tmp_path / "gray.jpg")
    Image.new("L", (900, 900), 128).save(tmp_path / "gray_big.jpg")  # draft route
    Image.new("LA", (30, 30), (90, 255)).save(tmp_path / "gray_alpha.png")
    pal = Image.new("P", (30, 30))
    pal.putpalette([0, 0, 255] * 256)
    pal.save(tmp_path / "pal.png")
    Image.new("CMYK", (30, 30), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("CMYK", (900, 900), (0, 255, 255, 0)).save(tmp_path / "cmyk_big.jpg")
    expected = {
        "gray.png": (128, 128, 128),
        "gray.jpg": (128, 128, 128),
        "gray_big.jpg": (128, 128, 128),
        "gray_alpha.png": (90, 90, 90),
        "pal.png": (0, 0, 255),
        "cmyk.jpg": (255, 0, 0),
        "cmyk_big.jpg": (255, 0, 0),
    }
    for name, rgb in expected.items():
        out = read_image(tmp_path / name, 16)
        assert out.shape == (3, 16, 16), name
        assert out[:, 8, 8].tolist() == pytest.approx(list(rgb), abs=3), name


@pytest.mark.parametrize("width", [40, 1200])  # decoded at full and at reduced scale
def test_exif_orientation_is_applied(tmp_path, width):
    landscape = Image.new("RGB", (width, width // 2))
    landscape.paste((255, 255, 255), (0, 0, width // 2, width // 2))  # left half white
    exif = Image.Exif()
    exif[decode.ORIENTATION] = 6  # rotate 90 degrees clockwise to display
    landscape.save(tmp_path / "rot.jpg", exif=exif)
    gray = read_image(tmp_path / "rot.jpg", 20, 20).float().mean(0)  # the centre square
    assert gray[:5].mean() > 200 and gray[-5:].mean() < 60  # the white half is now on top


def test_corrupt_files_raise_oserror(tmp_path, photo, jpeg_decoder):
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (tmp_path / "text.jpg").write_bytes(b"hello")
    photo.save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    for name in ("junk.jpg", "text.jpg", "truncated.jpg"):
        with pytest.raises(OSError):
            read_image(tmp_path / name, 16)
    with pytest.raises(OSError, match=r"text\.jpg is not an image file"):
        read_image(tmp_path / "text.jpg", 16)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.jpg", 16)


def test_center_crop_resize_geometry():
    # a 6 x 10 image whose columns count 0..9: resize 6 -> crop 4 keeps columns 3..6
    pixels = torch.arange(10, dtype=torch.uint8).repeat(3, 6, 1)
    out = decode.center_crop_resize(pixels, 4, 6)
    assert out.shape == (3, 4, 4) and out[0, 0].tolist() == [3, 4, 5, 6]


def test_a_jpeg_the_fast_decoder_refuses_is_decoded_by_pillow(tmp_path, monkeypatch):
    from torchvision.transforms.v2 import functional as TF

    rng = np.random.default_rng(3)
    path = tmp_path / "refused.jpg"
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path, quality=95)

    def refuse(data):
        raise ValueError("not for this decoder")

    monkeypatch.setattr(decode, "decode_jpeg_rgb", refuse)
    out = decode.read_image(path, 24, 32)
    full = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)
    expected = TF.center_crop(TF.resize(full, [32], antialias=True), [24])
    assert out.shape == (3, 24, 24) and (out.float() - expected.float()).abs().max() <= 1
