"""Helpers for the tests: small image trees, torchrun, a quiet Lightning trainer, a killed run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from longtail.data.bundle import embedded_bundle
from longtail.data.datasets import ArrayDataset
from longtail.distribution import ClassDistribution
from longtail.training.config import TrainConfig

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SRC = ROOT / "src" / "longtail"
WORKERS = TESTS / "workers"


def write_tree(root: Path, counts: Mapping[str, int], size: int = 12, seed: int = 0) -> Path:
    """Write ``counts[rel_dir]`` random RGB JPEGs into each ``root/rel_dir``."""
    rng = np.random.default_rng(seed)
    for rel, n in counts.items():
        folder = root / rel
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{i:04d}.jpg")
    return root


def write_splits(
    root: Path,
    train: Sequence[int] = (24, 10, 6),
    held_out: int = 3,
    size: int = 12,
) -> Path:
    """A ``train/`` / ``val/`` / ``test/`` tree of classes c0, c1, ...: ``train[k]`` training
    images of class k and ``held_out`` of each class in val and test."""
    counts = {f"train/c{k}": n for k, n in enumerate(train)}
    counts |= {f"{part}/c{k}": held_out for part in ("val", "test") for k in range(len(train))}
    return write_tree(root, counts, size=size)


MILLION_AID_LIKE = {
    "agriculture_land/arable_land/dry_field": 9,
    "agriculture_land/arable_land/paddy_field": 3,
    "agriculture_land/grassland": 5,
    "water_area/lake": 2,
    "water_area/river": 6,
}


def torchrun(script: Path, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run ``script`` under ``torchrun --standalone --nproc_per_node 2`` (gloo on CPU)."""
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(TESTS), str(WORKERS)])
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def quiet_trainer(tmp_path: Path, callbacks: list, **kwargs):
    """A Lightning ``Trainer`` on the CPU that logs, checkpoints and prints nothing."""
    import lightning.pytorch as pl

    return pl.Trainer(
        accelerator="cpu",
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


class Killed(Exception):
    """A training stopped from inside, as a killed process would be."""


def count_calls(monkeypatch, owner: object, name: str) -> list:
    """Wrap ``owner.name`` so that each call appends to the list returned."""
    real, calls = getattr(owner, name), []

    def counted(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(owner, name, counted)
    return calls


def train_killed(
    config, data, out: Path, monkeypatch, owner: object, name: str, at: int, counts=None
):
    """Train ``config`` in ``out`` until the ``at``-th call of ``owner.name`` (of those for which
    ``counts(*args)`` is true, if given), where it dies with :class:`Killed`; ``owner.name`` is
    itself again afterwards."""
    import pytest

    from longtail.training.loop import train

    real, calls = getattr(owner, name), []

    def dying(*args, **kw):
        if counts is None or counts(*args, **kw):
            calls.append(1)
            if len(calls) == at:
                raise Killed
        return real(*args, **kw)

    monkeypatch.setattr(owner, name, dying)
    with pytest.raises(Killed):
        train(config, data, out)
    monkeypatch.setattr(owner, name, real)


def long_tail_labels(k: int, n_max: int, n_min: int, seed: int = 0) -> np.ndarray:
    """Exponential profile n_i = n_max (n_min / n_max)^(i / (k-1)), labels shuffled."""
    counts = np.floor(n_max * (n_min / n_max) ** (np.arange(k) / (k - 1))).astype(int)
    labels = np.repeat(np.arange(k), counts)
    return np.random.default_rng(seed).permutation(labels)


# a three-level tree: a rare parent with many children, a common parent with one, one between
SCENES = {  # leaf: (top, middle, images)
    "r1": ("R", "R1", 5),
    "r2": ("R", "R1", 10),
    "r3": ("R", "R1", 20),
    "r4": ("R", "R2", 3),
    "r5": ("R", "R2", 7),
    "c1": ("C", "C1", 1000),
    "m1": ("M", "M1", 200),
    "m2": ("M", "M1", 50),
    "m3": ("M", "M2", 400),
}


SCENE_NAMES = list(SCENES)


SCENE_COUNTS = np.array([n for _, _, n in SCENES.values()])


SCENE_LABELS = np.repeat(np.arange(len(SCENE_NAMES)), SCENE_COUNTS)


SCENE_TREE = [
    [(top,) for top, _, _ in SCENES.values()],
    [(top, mid) for top, mid, _ in SCENES.values()],
    [(top, mid, leaf) for leaf, (top, mid, _) in SCENES.items()],
]


def small_embedded(step: int):
    """The embedded bundle with every ``step``-th training image."""
    data = embedded_bundle()
    data.train = _subsample(data.train, step)
    names = data.distribution.class_names
    data.distribution = ClassDistribution.from_labels(data.train.targets.numpy(), class_names=names)
    return data


def _subsample(dataset: ArrayDataset, step: int) -> ArrayDataset:
    """Every ``step``-th image of an in-memory dataset (a new dataset)."""
    view = ArrayDataset.__new__(ArrayDataset)
    view.__dict__.update(dataset.__dict__)
    view.x, view.targets = dataset.x[::step], dataset.targets[::step]
    return view


def short_config() -> TrainConfig:
    """Two quick epochs without augmentation or progress bars."""
    return TrainConfig(epochs=2, batch_size=128, progress=False, augment="none")


QUIET = ["--workers", "0", "--no-progress"]
"""Command-line options of a quiet in-process run."""
TINY = ["--model", "small_cnn", "--image-size", "8", "--epochs", "1", "--batch-size", "8"]
"""Command-line options of a run that takes a second."""


def run_cli(argv: Sequence[object], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``longtail ARGV``, which must print no traceback."""
    from longtail.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def small_tree(root: Path, counts: Mapping[str, int], size: int = 8, seed: int = 0) -> Path:
    """:func:`write_tree` of 8-pixel images."""
    return write_tree(root, counts, size=size, seed=seed)


def small_config(**kw) -> TrainConfig:
    """A two-epoch small_cnn run without workers or progress bars, with ``kw`` changed."""
    base = {
        "model": "small_cnn",
        "epochs": 2,
        "batch_size": 8,
        "num_workers": 0,
        "progress": False,
        "lr": 3e-3,
    }
    return TrainConfig(**{**base, **kw})
