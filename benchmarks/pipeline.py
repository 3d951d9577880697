"""Input-pipeline throughput to 224x224 tensors: longtail's FolderDataset vs torchvision's ImageFolder,
same run, same DataLoader settings, for evaluation and for training.

Usage: python benchmarks/pipeline.py [--per-size 300] [--workers 2] [--sizes 160 320 640 1280 2560]
                                     [--only eval|train]

Evaluation rows: ImageFolder with Resize(256) + CenterCrop(224) + ToTensor against longtail's
evaluation geometry (the same). Training rows: ImageFolder with RandomResizedCrop(224) +
RandomHorizontalFlip + ToTensor against longtail's ``standard`` augmentation (the same crop
distribution and flip), fed by the keyed batch sampler ``longtail train`` uses; with libturbojpeg 3
installed (``longtail[turbojpeg]``) each crop is decoded alone, as the first lines of output say.

Writes a tree of real photographs (scikit-learn's two sample images, ``china.jpg`` and
``flower.jpg``, resized with random crops and flips, JPEG quality 90) for each longer-side size, in
5 classes, then times one pass over each size's images for both pipelines: images per second,
median of ``--repeats`` rounds that interleave the pipelines. longtail hands over uint8 batches (a
quarter of the bytes) and is measured twice, as ``longtail train`` uses it: on a CPU, normalising
each batch in the main process (timed), and feeding a GPU, which normalises (not timed).
The main process copies every batch into a fixed buffer, as the copy to a GPU would.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, SequentialSampler


def write_photos(root: Path, sizes: list[int], per_size: int, seed: int = 0) -> None:
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(seed)
    for size in sizes:
        for i in range(per_size):
            src = photos[i % len(photos)]
            w, h = src.size
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            im = src.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            scale = size / max(cw, ch)
            im = im.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BICUBIC)
            folder = root / f"px{size}" / f"class{i % 5}"
            folder.mkdir(parents=True, exist_ok=True)
            im.save(folder / f"{i:05d}.jpg", quality=90)


def pass_timer(dataset, workers: int, batch_size: int = 32, finish=None):
    """A function that runs one pass over ``dataset`` and returns its images per second;
    ``finish`` (if given) runs on each batch in the main process, as the training loop's step."""
    from longtail.data.augment import KeyedBatchSampler
    from longtail.data.datasets import FolderDataset, batch_collate

    kwargs = {"num_workers": workers, "persistent_workers": workers > 0}
    if isinstance(dataset, FolderDataset):
        kwargs["collate_fn"] = batch_collate  # it returns whole batches from __getitems__
        keyed = KeyedBatchSampler(SequentialSampler(dataset), batch_size, seed=0)
        loader = DataLoader(dataset, batch_sampler=keyed, **kwargs)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, **kwargs)
    epochs = iter(range(1 << 30))

    staging: dict[torch.dtype, torch.Tensor] = {}  # stands for the GPU's input buffer

    def one_pass() -> float:
        if isinstance(dataset, FolderDataset):
            keyed.set_epoch(next(epochs))  # new augmentations each pass, as in training
        t0 = time.perf_counter()
        n = 0
        for x, _ in loader:
            assert x.shape[1:] == (3, 224, 224)
            if finish is not None:
                x = finish(x)
            if staging.get(x.dtype) is None:
                staging[x.dtype] = torch.empty((batch_size, 3, 224, 224), dtype=x.dtype)
            staging[x.dtype][: len(x)].copy_(x)  # read every pixel, as the copy to a GPU would
            n += x.shape[0]
        return n / (time.perf_counter() - t0)

    return one_pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=Path(tempfile.gettempdir()) / "longtail-pipeline-bench"
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[160, 320, 640, 1280, 2560])
    parser.add_argument("--per-size", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("eval", "train"), help="run one of the two tables")
    args = parser.parse_args()

    from torchvision import transforms

    shutil.rmtree(args.root, ignore_errors=True)
    write_photos(args.root, args.sizes, args.per_size)
    torch.set_num_threads(1)
    print(
        f"{args.per_size} photos per size, {args.workers} DataLoader workers, batch 32, images/s and speed-up: medians of {args.repeats} interleaved rounds"
    )
    from longtail.data import jpeg_region

    library = jpeg_region.LIBRARY
    print(
        "longtail's training crops: "
        + (
            f"decoded alone by {library._name}"
            if library
            else "whole images decoded (no libturbojpeg 3)"
        )
    )
    tables = {
        "eval": (
            "Evaluation: ImageFolder + Resize(256) + CenterCrop(224) + ToTensor",
            transforms.Compose(
                [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()]
            ),
            "none",
        ),
        "train": (
            "Training: ImageFolder + RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor"
            " vs --augment standard",
            transforms.Compose(
                [
                    transforms.RandomResizedCrop(224),
                    transforms.RandomHorizontalFlip(),
                    transforms.ToTensor(),
                ]
            ),
            "standard",
        ),
    }
    for name, (title, tv_transform, preset) in tables.items():
        if args.only in (None, name):
            print(f"\n{title}")
            run_table(args, tv_transform, preset)
    if args.only in (None, "train") and library is not None:
        decode_costs(args.root / f"px{max(args.sizes)}")
    shutil.rmtree(args.root, ignore_errors=True)


def run_table(args: argparse.Namespace, tv_transform, preset: str) -> None:
    from torchvision.datasets import ImageFolder

    from longtail.data.datasets import FolderDataset
    from longtail.data.index import build_index

    print(
        f"{'longer side px':>15} {'ImageFolder':>12} {'longtail':>10} {'speed-up':>9}"
        f" {'uint8 for a GPU':>16} {'speed-up':>9}"
    )
    for size in args.sizes:
        folder = args.root / f"px{size}"
        index = build_index(folder, use_cache=False)
        ours = FolderDataset(
            index, image_size=224, resize_size=256, normalize=False, augment=preset
        )
        timers = [
            pass_timer(ImageFolder(str(folder), transform=tv_transform), args.workers),
            pass_timer(ours, args.workers, finish=ours.normalize_batch),  # CPU training
            pass_timer(ours, args.workers),  # feeding a GPU, which normalises
        ]
        # rounds interleave the three pipelines, so a change in machine speed hits all alike;
        # the first round warms the workers and the file cache and is not counted
        rounds = [[timer() for timer in timers] for _ in range(args.repeats + 1)][1:]
        rates = [statistics.median(r[k] for r in rounds) for k in range(3)]
        ratios = [statistics.median(r[k] / r[0] for r in rounds) for k in (1, 2)]
        print(
            f"{size:>15} {rates[0]:12.0f} {rates[1]:10.0f} {ratios[0]:8.2f}x"
            f" {rates[2]:16.0f} {ratios[1]:8.2f}x",
            flush=True,
        )


def decode_costs(folder: Path) -> None:
    """Milliseconds a file, one process, of libjpeg-turbo's work on the training crops of the
    photos in ``folder`` (one pass of ``standard`` boxes): each crop decoded alone, the whole
    image decoded at the same scale, and the entropy decoding of the whole file (a one-row
    region at the bottom, every coefficient decoded, none transformed)."""
    from longtail.data import decode, jpeg_region
    from longtail.data.augment import key_uniforms, resized_crop_boxes

    images = [decode.read_encoded(p) for p in sorted(folder.rglob("*.jpg"))]
    widths = np.array([im.width for im in images])
    heights = np.array([im.height for im in images])
    u = key_uniforms(0, 0, np.arange(len(images)))
    boxes = np.stack(resized_crop_boxes(widths, heights, u), axis=1).tolist()
    plans = []  # (data, reduction, crop on the reduced image, reduced size)
    for im, box in zip(images, boxes, strict=True):
        need = (-(-224 * im.width // box[2]), -(-224 * im.height // box[3]))
        r = decode._reduction(im, need)
        size = (-(-im.width // r), -(-im.height // r))
        plans.append((im.data, r, decode._reduced_box(box, (im.width, im.height), size), size))
    ways = {
        "crop alone": lambda r, crop, size: crop,
        "whole image, same scale": lambda r, crop, size: (0, 0, *size),
        "entropy decoding only": lambda r, crop, size: (0, size[1] - 1, 1, 1),
    }
    scales = np.bincount([r for _, r, _, _ in plans], minlength=9)[[1, 2, 4, 8]]
    print(
        f"\nlibjpeg-turbo, ms a file, one process ({folder.name}; crops at 1, 1/2, 1/4, 1/8: {scales.tolist()})"
    )
    for name, region in ways.items():
        t0 = time.perf_counter()
        for data, r, crop, size in plans:
            jpeg_region.decode_region(data, r, region(r, crop, size), decode._scratch)
        print(f"{name:>25} {1e3 * (time.perf_counter() - t0) / len(plans):6.2f}")


if __name__ == "__main__":
    main()
