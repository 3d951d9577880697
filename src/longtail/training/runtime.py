"""Where and how a run executes: the process group, the device, seeding, mixed precision."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist

from longtail._distributed import rank_and_world
from longtail.data.index import available_cpus
from longtail.errors import LongtailError


def join_process_group() -> tuple[int, int]:
    """(rank, world size), initialising the process group when launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank_and_world()


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU when there is one, else the CPU) or a torch device string that exists here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LongtailError(
            f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LongtailError(
                f"device {name!r} was asked for but no CUDA GPU is available here; use --device cpu (or auto)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise LongtailError(
                f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise LongtailError(f"device {name!r} is not available here; use --device cpu (or auto)")
    return device


CPU_JOBS = 4
"""The most trainings a CPU machine runs at once (``compare --jobs auto``)."""


def training_threads() -> int:
    """Torch's thread count for a training started by the ``longtail`` command (``train`` and
    every training of ``compare``, whatever its ``--jobs``): on a CPU the cores' share of one of
    up to 4 jobs (1 on 2 cores), because a CPU result can depend on how many threads summed it;
    with GPUs, torch's own setting."""
    if torch.cuda.device_count():
        return torch.get_num_threads()
    cpus = available_cpus()
    return max(1, cpus // min(CPU_JOBS, cpus))


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's global and torch's random number generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code that uses the global RNG
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of a run seeded ``seed``."""
    return seed * 100_003 + epoch


def autocast(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler | None]:
    """The autocast context of mixed precision on CUDA (bf16 where supported, else fp16 with a
    gradient scaler, also returned), or a disabled one."""
    if not enabled or device.type != "cuda":
        return torch.autocast(device.type, enabled=False), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


__all__ = [
    "CPU_JOBS",
    "training_threads",
    "autocast",
    "epoch_seed",
    "join_process_group",
    "resolve_device",
    "seed_everything",
]
