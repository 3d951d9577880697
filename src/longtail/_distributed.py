"""This process's place in a DistributedDataParallel job: the one place (rank, world size) is
worked out."""

from __future__ import annotations

import torch

from longtail.errors import LongtailError


def rank_and_world(rank: int | None = None, num_replicas: int | None = None) -> tuple[int, int]:
    """(rank, world size): the ones given, else those of the initialised process group, else
    (0, 1). ``num_replicas=1`` asks for the whole of a plan, whatever this process's rank."""
    dist = torch.distributed
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised and num_replicas > 1 else 0
    if num_replicas < 1:
        raise LongtailError(f"num_replicas must be >= 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise LongtailError(
            f"rank must lie in [0, num_replicas - 1] = [0, {num_replicas - 1}], got {rank}"
        )
    return rank, num_replicas


__all__ = ["rank_and_world"]
