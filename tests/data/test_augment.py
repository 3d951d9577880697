"""Augmentation presets: the crop's formula, the symmetries each preset may yield, randomness as a
function of (seed, epoch, position), and resume exactness of an augmented run."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, SequentialSampler
from torchvision.transforms.v2 import functional as TF

from helpers import train_killed, write_splits, write_tree
from longtail.data.augment import (
    CROP_ATTEMPTS,
    DRAWS,
    PAD,
    KeyedBatch,
    KeyedBatchSampler,
    apply_symmetry,
    key_uniforms,
    resized_crop_boxes,
    symmetries,
)
from longtail.data.bundle import folder_bundle
from longtail.data.datasets import ArrayDataset, FolderDataset, bad_images, batch_collate
from longtail.data.decode import read_resized_crop
from longtail.data.index import build_index
from longtail.training.loop import TrainConfig, train


def test_key_uniforms_are_a_deterministic_function_of_the_key():
    a = key_uniforms(7, 3, np.arange(50_000))
    assert a.shape == (50_000, DRAWS) and a.min() >= 0 and a.max() < 1
    assert np.array_equal(a, key_uniforms(7, 3, np.arange(50_000)))
    assert np.array_equal(a[123], key_uniforms(7, 3, 123)[0])  # one key alone, same numbers
    # uniform: mean 1/2 and variance 1/12 within 5 standard errors; columns uncorrelated
    n = a.size
    assert abs(a.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(a.var() - 1 / 12) < 0.002
    corr = np.corrcoef(a[:, :4].T)[np.triu_indices(4, 1)]
    assert np.abs(corr).max() < 5 / math.sqrt(len(a))
    # another seed, epoch or position is another stream
    for other in (key_uniforms(8, 3, np.arange(50_000)), key_uniforms(7, 4, np.arange(50_000))):
        assert np.mean(other == a) < 1e-4
    assert np.abs(np.corrcoef(a[:-1, 0], a[1:, 0])[0, 1]) < 5 / math.sqrt(len(a))


def reference_box(width: int, height: int, u: np.ndarray) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, written as its source reads, fed ``u``."""
    area = width * height
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for t in range(CROP_ATTEMPTS):
        target_area = area * (0.08 + 0.92 * u[t])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[CROP_ATTEMPTS + t])
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(u[2 * CROP_ATTEMPTS] * (height - h + 1))
            j = int(u[2 * CROP_ATTEMPTS + 1] * (width - w + 1))
            return j, i, w, h
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, int(round(width / (3 / 4)))
    elif in_ratio > 4 / 3:
        h, w = height, int(round(height * 4 / 3))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def test_resized_crop_boxes_follow_torchvision_random_resized_crop():
    rng = np.random.default_rng(0)
    n = 2000
    widths = rng.integers(1, 3000, n)
    heights = np.where(rng.random(n) < 0.1, rng.integers(1, 20, n), rng.integers(1, 3000, n))
    u = key_uniforms(0, 0, np.arange(n))
    left, top, w, h = resized_crop_boxes(widths, heights, u)
    ours = np.stack([left, top, w, h], 1)
    ref = np.array(
        [reference_box(int(a), int(b), u[k]) for k, (a, b) in enumerate(zip(widths, heights))]
    )
    assert np.array_equal(ours, ref)
    assert (left >= 0).all() and (top >= 0).all() and (left + w <= widths).all()
    assert (top + h <= heights).all() and (w >= 1).all() and (h >= 1).all()
    # a strip no try fits: the centre crop cut to the widest allowed ratio (hand-computed)
    box = resized_crop_boxes(np.array([1000]), np.array([10]), u[:1])
    assert [int(v[0]) for v in box] == [493, 0, 13, 10]
    # on a large square: area fraction in [0.08, 1] and aspect ratio in [3/4, 4/3] (+ rounding)
    left, top, w, h = resized_crop_boxes(np.full(n, 2000), np.full(n, 2000), u)
    fraction, aspect = w * h / 2000**2, w / h
    assert fraction.min() > 0.079 and fraction.max() <= 1
    assert aspect.min() > 0.749 and aspect.max() < 1.334 and aspect.max() > 1.3


def dihedral(image: torch.Tensor) -> list[torch.Tensor]:
    return [apply_symmetry(image, flip, turns) for flip in (False, True) for turns in range(4)]


def test_aerial_preset_only_yields_the_8_symmetries_of_the_crop(tmp_path):
    root = write_tree(tmp_path / "tree", {"a": 3, "b": 3}, size=48)
    index = build_index(root, use_cache=False)
    data = FolderDataset(index, image_size=16, normalize=False, augment="aerial")
    batch = KeyedBatch([0, 1, 2, 3, 4, 5] * 40, seed=3, epoch=1, start=0, step=1)
    images, labels = data.batch(batch)
    assert images.dtype == torch.uint8 and images.shape == (240, 3, 16, 16)
    u = key_uniforms(3, 1, batch.positions())
    standard = FolderDataset(index, image_size=16, normalize=False, augment="standard")
    plain = standard.batch(batch)[0]
    seen = []
    for k, i in enumerate(batch):
        path = index.filepath(int(data.indices[i]))
        box = [int(v[0]) for v in resized_crop_boxes(np.array([48]), np.array([48]), u[k : k + 1])]
        crop = read_resized_crop(path, 16, lambda w, h, box=box: tuple(box))
        symmetric = dihedral(crop)
        matches = [s for s, t in enumerate(symmetric) if torch.equal(t, images[k])]
        assert len(matches) == 1  # random-noise images have 8 distinct symmetries
        seen.append(matches[0])
        # the standard preset: the same crop, flipped or not, never rotated
        assert torch.equal(plain[k], symmetric[0]) or torch.equal(plain[k], symmetric[4])
    counts = np.bincount(seen, minlength=8)
    assert counts.min() >= 15  # each of the 8 about 240 / 8 = 30 times


def test_standard_preset_on_in_memory_images_is_a_padded_crop_and_a_flip():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    data = ArrayDataset(images, np.arange(5) % 2, mean=[0.5], std=[0.25], augment="standard")
    batch = KeyedBatch(list(range(5)) * 200, seed=0, epoch=0, start=0, step=1)
    x, y = data.batch(batch)
    assert x.shape == (1000, 1, 8, 8) and torch.equal(y, data.targets[list(batch)])
    black = (0 - 0.5) / 0.25
    offsets, flips = set(), 0
    for k, i in enumerate(batch):
        padded = torch.nn.functional.pad(data.x[i], (PAD,) * 4, value=black)
        found = [
            (dy, dx, flip)
            for dy in range(2 * PAD + 1)
            for dx in range(2 * PAD + 1)
            for flip in (False, True)
            if torch.equal(apply_symmetry(padded[:, dy : dy + 8, dx : dx + 8], flip, 0), x[k])
        ]
        assert len(found) == 1
        offsets.add(found[0][:2])
        flips += found[0][2]
    assert len(offsets) == (2 * PAD + 1) ** 2  # every shift occurs
    assert abs(flips / 1000 - 0.5) < 0.05  # 5 standard errors of 1000 fair flips
    none = ArrayDataset(images, np.arange(5) % 2, mean=[0.5], std=[0.25])
    assert torch.equal(none.batch(batch)[0], none.x[list(batch)])


def test_augmentation_depends_on_seed_epoch_position_not_on_workers(tmp_path):
    root = write_tree(tmp_path / "tree", {"a": 10, "b": 6}, size=40)
    index = build_index(root, use_cache=False)
    data = FolderDataset(index, image_size=16, augment="standard")

    def epoch(seed: int, number: int, workers: int) -> torch.Tensor:
        keyed = KeyedBatchSampler(SequentialSampler(data), 4, seed)
        keyed.set_epoch(number)
        kw = {"num_workers": workers, "collate_fn": batch_collate}
        return torch.cat([x for x, _ in DataLoader(data, batch_sampler=keyed, **kw)])

    first = epoch(0, 1, 0)
    assert torch.equal(first, epoch(0, 1, 2))  # worker processes do not change a pixel
    assert not torch.equal(first, epoch(0, 2, 0))
    assert not torch.equal(first, epoch(1, 1, 0))
    evaluation = FolderDataset(index, image_size=16)
    assert not torch.equal(first, evaluation.batch(range(16))[0])


def test_keyed_batches_under_ddp_never_share_a_stream():
    sampler = list(range(10))
    ranks = [
        [b.positions().tolist() for b in KeyedBatchSampler(sampler, 3, 0, rank=r, num_replicas=2)]
        for r in (0, 1)
    ]
    assert ranks[0] == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    assert ranks[1] == [[1, 3, 5], [7, 9, 11], [13, 15, 17], [19]]
    batches = [[0, 1], [2, 3, 4]]
    keyed = list(KeyedBatchSampler(batches, None, 5))  # a batch sampler's batches, kept
    assert [list(b) for b in keyed] == batches and keyed[1].positions().tolist() == [2, 3, 4]


@pytest.fixture(params=["simplejpeg", "pillow"])
def scaled_decoder(request, monkeypatch):
    """Reduced JPEG decoding through simplejpeg (when installed) or Pillow's draft."""
    from longtail.data import decode

    if request.param == "simplejpeg":
        if "simplejpeg" not in decode.JPEG_DECODERS:
            pytest.skip("simplejpeg is not installed")  # the test extra installs it
    else:
        others = {k: v for k, v in decode.JPEG_DECODERS.items() if k != "simplejpeg"}
        monkeypatch.setattr(decode, "JPEG_DECODERS", others)
    return request.param


def test_reduced_decode_matches_a_full_decode_of_the_same_box(tmp_path, scaled_decoder):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    photo = Image.fromarray(base).resize((1600, 1200), Image.BICUBIC)  # smooth, like a photo
    path = tmp_path / "p.jpg"
    photo.save(path, quality=95)
    full = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)
    for box in ((100, 80, 1200, 1000), (0, 0, 1600, 1200), (400, 300, 100, 90)):
        ours = read_resized_crop(path, 64, lambda w, h, box=box: box)
        # a 1200-px box bound for 64 px is decoded at 1/8: its edges fall on that grid
        r = 8 if box[2] >= 512 else 1
        snapped = [round(v / r) * r for v in box]
        ref = TF.resized_crop(
            full, snapped[1], snapped[0], snapped[3], snapped[2], [64, 64], antialias=True
        )
        diff = (ours.float() - ref.float()).abs()
        assert diff.mean() < 1.5, box


def test_a_crop_is_chosen_on_the_image_as_displayed(tmp_path):
    rng = np.random.default_rng(2)
    stored = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    exif = stored.getexif()
    exif[0x0112] = 6  # stored 50 x 30, shown rotated: 30 x 50
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    sizes = []

    def box(width, height):
        sizes.append((width, height))
        return 3, 20, 20, 25  # too small to decode at half size

    ours = read_resized_crop(path, 12, box)
    from PIL import ImageOps

    shown = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    full = torch.from_numpy(np.asarray(shown).copy()).permute(2, 0, 1)
    assert sizes == [(30, 50)] and full.shape[1:] == (50, 30)
    assert torch.equal(ours, TF.resized_crop(full, 20, 3, 25, 20, [12, 12], antialias=True))


@pytest.fixture
def small_tree(tmp_path):
    return write_splits(tmp_path / "data", (24, 10, 4), size=40)


def test_an_augmented_run_killed_mid_epoch_resumes_to_the_same_result(
    small_tree, tmp_path, monkeypatch
):
    data = folder_bundle(small_tree, image_size=16)
    config = TrainConfig(
        strategy="weighted+ce",
        epochs=3,
        batch_size=8,
        augment="aerial",
        num_workers=0,
        progress=False,
    )
    full = train(config, data, tmp_path / "full")
    assert full.config["augment"] == "aerial"
    assert full.identity["training"]["augment"] == "aerial"

    # 5 augmented batches an epoch (evaluation batches are not): the second batch of epoch 2
    augmented = lambda dataset, indices: dataset.augment != "none"  # noqa: E731
    killed = tmp_path / "killed"
    train_killed(config, data, killed, monkeypatch, FolderDataset, "batch", 7, augmented)
    resumed = train(
        TrainConfig(**{**config.__dict__, "num_workers": 2}), data, tmp_path / "killed", resume=True
    )
    assert resumed.epochs_run == 2
    assert resumed.test.summary == full.test.summary
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    # the preset is part of the identity: another one is another run
    with pytest.raises(ValueError, match=r"training.augment \('aerial' there, 'standard' now\)"):
        train(TrainConfig(**{**config.__dict__, "augment": "standard"}), data, tmp_path / "killed")


def test_augment_presets_are_checked_and_foreign_datasets_keep_their_transforms(tmp_path):
    from longtail.data.bundle import bundle_from_datasets
    from longtail.data.loading import resolve_augmentation

    with pytest.raises(ValueError, match="augment must be one of standard, aerial, none"):
        TrainConfig(augment="rotate")
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="augment must be one of"):
        ArrayDataset(images, np.arange(4) % 2, augment="flip")
    ours = ArrayDataset(images, np.arange(4) % 2)
    assert resolve_augmentation(ours, None) == "standard"

    class Foreign(torch.utils.data.Dataset):
        targets = [0, 1, 0, 1]

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(1, 8, 8), self.targets[i]

    assert resolve_augmentation(Foreign(), None) == "dataset"
    data = bundle_from_datasets(Foreign(), Foreign(), image_size=8, in_channels=1)
    with pytest.raises(ValueError, match="Foreign applies its own transforms"):
        train(TrainConfig(augment="aerial", epochs=1, progress=False), data, tmp_path / "run")


def test_an_unreadable_image_in_an_augmented_batch_is_reported_and_replaced(tmp_path):
    root = write_tree(tmp_path / "tree", {"a": 3, "b": 2}, size=40)
    broken = root / "a" / "img_0001.jpg"
    broken.write_bytes(broken.read_bytes()[:300])  # the header survives, the pixels do not
    (root / "b" / "img_0000.jpg").write_bytes(b"not an image")
    index = build_index(root, use_cache=False)
    log = tmp_path / "bad.log"
    data = FolderDataset(index, image_size=16, augment="aerial", bad_image_log=log)
    x, y = data.batch(KeyedBatch(list(range(5)), 0, 0, 0, 1))
    assert x.shape == (5, 3, 16, 16) and y.tolist() == [0, 0, 0, 1, 1]
    assert sorted(bad_images(log)) == sorted([str(broken), str(root / "b" / "img_0000.jpg")])
    paths = [index.filepath(int(i)) for i in data.indices]
    k = paths.index(str(broken))
    # the broken image's place holds its replacement, the next image of its class, with the
    # broken image's own random stream
    u = key_uniforms(0, 0, np.arange(5))
    flip, turns = symmetries("aerial", u)
    crop = data._read_augmented(paths[k + 1], u[k])
    expected = apply_symmetry(crop, bool(flip[k]), int(turns[k]))
    assert torch.equal(data._finish(expected.unsqueeze(0))[0], x[k])


def test_jpeg_headers_read_without_pillow_match_pillow(tmp_path, monkeypatch):
    from longtail.data import decode

    root = write_tree(tmp_path / "tree", {"a": 2}, size=20)
    plain = root / "a" / "img_0000.jpg"
    im = Image.open(plain)
    exif = im.getexif()
    exif[0x0112] = 8
    rotated = root / "a" / "rotated.jpg"
    Image.new("RGB", (30, 20)).save(rotated, exif=exif)
    fast = [decode.read_encoded(p) for p in (plain, rotated)]
    monkeypatch.setattr(decode, "JPEG_DECODERS", {"torchvision": decode._torchvision})
    slow = [decode.read_encoded(p) for p in (plain, rotated)]
    assert fast == slow
    assert (slow[1].width, slow[1].height, slow[1].orientation) == (20, 30, 8)


def test_an_orientation_anywhere_in_a_jpeg_header_is_seen(tmp_path, monkeypatch):
    from longtail.data import decode

    rng = np.random.default_rng(4)
    image = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    with_exif = buffer.getvalue()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    plain = buffer.getvalue()

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    comments = segment(0xFE, b"x" * 40_000) * 2  # the EXIF block starts 80 kB in
    xmp = segment(
        0xE1,
        b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><rdf:Description "
        b'tiff:Orientation="6"/></x:xmpmeta>',  # Pillow reads an XMP orientation too
    )
    files = {
        "far.jpg": with_exif[:2] + comments + with_exif[2:],
        "xmp.jpg": plain[:2] + xmp + plain[2:],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    fast = [decode.read_encoded(tmp_path / name) for name in files]
    assert [(e.width, e.height, e.orientation) for e in fast] == [(30, 50, 6)] * 2
    monkeypatch.setattr(decode, "JPEG_DECODERS", {"torchvision": decode._torchvision})
    assert fast == [decode.read_encoded(tmp_path / name) for name in files]  # Pillow's reading


def test_aerial_preset_on_in_memory_images_yields_the_8_symmetries_of_a_padded_crop():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 6, 6), dtype=np.uint8)
    data = ArrayDataset(images, np.arange(3) % 2, mean=[0.5], std=[0.25], augment="aerial")
    batch = KeyedBatch([0, 1, 2] * 100, seed=2, epoch=0, start=0, step=1)
    x, _ = data.batch(batch)
    black = (0 - 0.5) / 0.25
    kinds = []
    for k, i in enumerate(batch):
        padded = torch.nn.functional.pad(data.x[i], (PAD,) * 4, value=black)
        found = {
            s
            for dy in range(2 * PAD + 1)
            for dx in range(2 * PAD + 1)
            for s, t in enumerate(dihedral(padded[:, dy : dy + 6, dx : dx + 6]))
            if torch.equal(t, x[k])
        }
        assert len(found) == 1
        kinds += found
    assert np.bincount(kinds, minlength=8).min() >= 20  # each of the 8 about 300 / 8 times


def test_the_default_preset_follows_the_model():
    from longtail.data.bundle import embedded_bundle
    from longtail.training.resolve import resolved_config

    data = embedded_bundle()
    assert resolved_config(TrainConfig(model="mlp"), data).augment == "none"  # reads by position
    assert resolved_config(TrainConfig(model="small_cnn"), data).augment == "standard"
    assert resolved_config(TrainConfig(model="mlp", augment="standard"), data).augment == "standard"
