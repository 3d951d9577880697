"""Pretrain the embedded set's ``small_cnn`` backbone without labels (SimCLR's NT-Xent).

Usage: ``python scripts/pretrain_embedded_backbone.py FASHION_MNIST_DIR [--epochs 30]``

The images are the Fashion-MNIST training images that Fashion-MNIST-LT does not use (neither its
training nor its validation split): the embedded set's unlabelled pool, as Million-AID's million
unlabelled images are to its labelled ones. Only the image file is read; no label of any image
and no test image is used. Two augmented views of each image (a random resized crop, area
35-100% and aspect 3/4-4/3, a horizontal flip and a brightness / contrast jitter, drawn as one
affine warp per image) are pulled together and pushed from the other images of the batch:

    l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )

(Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML
2020), z the projection of the backbone's 128 features by a 128-128-64 MLP, sim the cosine,
t = 0.2. Seeded; writes ``src/longtail/data/small_cnn_embedded.pt``: the backbone's state dict
(``features.*``, no classifier), which ``--model small_cnn --pretrained embedded`` loads.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from longtail._io import atomic_write
from longtail.data.datasets import ArrayDataset
from longtail.data.fashion_mnist_lt import load_fashion_mnist_lt, read_idx, source_indices
from longtail.training.models import EMBEDDED_WEIGHTS, SmallCNN

TEMPERATURE = 0.2


def unlabelled_pool(source: Path) -> np.ndarray:
    """The Fashion-MNIST training images Fashion-MNIST-LT leaves out, [N, 28, 28] uint8."""
    images = read_idx(source / "train-images-idx3-ubyte.gz")
    used = np.zeros(len(images), dtype=bool)
    used[source_indices()] = True
    return images[~used]


def views(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random view of each image of ``x`` [B, 1, H, W] (normalised), as one affine warp."""
    b = x.shape[0]
    area = 0.35 + 0.65 * torch.rand(b, generator=gen)
    log_ratio = (torch.rand(b, generator=gen) * 2 - 1) * math.log(4 / 3)
    ratio = torch.exp(log_ratio)
    sx, sy = torch.sqrt(area * ratio).clamp(max=1), torch.sqrt(area / ratio).clamp(max=1)
    tx, ty = (
        (1 - sx) * (torch.rand(b, generator=gen) * 2 - 1),
        (1 - sy) * (torch.rand(b, generator=gen) * 2 - 1),
    )
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False, padding_mode="border")
    contrast = 0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=gen)
    brightness = (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.8
    return out * contrast + brightness


def nt_xent(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimCLR's loss over the 2B views of a batch (the formula in the module docstring)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / TEMPERATURE
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(sim, target)


def pretrain(pool: np.ndarray, epochs: int, batch: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images = load_fashion_mnist_lt("train").images
    embedded = ArrayDataset(images, np.zeros(len(images), dtype=np.int64))
    mean, std = float(embedded.mean[0]), float(embedded.std[0])  # the embedded set's normalisation
    data = (torch.from_numpy(pool).float().div(255).sub(mean).div(std)).unsqueeze(1)
    backbone = SmallCNN(1, 10).features
    head = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    params = [*backbone.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(data) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.05)
    for epoch in range(epochs):
        order = torch.randperm(len(data), generator=gen)
        total = 0.0
        for k in range(len(data) // batch):
            x = data[order[k * batch : (k + 1) * batch]]
            loss = nt_xent(head(backbone(views(x, gen))), head(backbone(views(x, gen))))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{epochs}: NT-Xent {total / (len(data) // batch):.4f}", flush=True)
    return {f"features.{k}": v for k, v in backbone.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder of the original Fashion-MNIST files")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pool = unlabelled_pool(args.source)
    print(f"{len(pool)} unlabelled images", flush=True)
    start = time.perf_counter()
    state = pretrain(pool, args.epochs, args.batch_size, args.seed)
    atomic_write(EMBEDDED_WEIGHTS, lambda fh: torch.save(state, fh))
    size = EMBEDDED_WEIGHTS.stat().st_size / 1024
    print(f"wrote {EMBEDDED_WEIGHTS} ({size:.0f} KiB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
