"""Run by torchrun in test_ddp.py: each rank iterates a DataLoader with a longtail sampler."""

import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset

from longtail.sampling import ClassBalancedSampler, InstanceSampler


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    labels = np.repeat(np.arange(4), [400, 100, 30, 10])
    data = TensorDataset(torch.arange(labels.size), torch.from_numpy(labels))
    result = {}
    for name, sampler in {
        "instance": InstanceSampler(
            labels, seed=5
        ),  # replicas and rank come from the process group
        "class_balanced": ClassBalancedSampler(labels, seed=5),
    }.items():
        sampler.set_epoch(1)
        seen = [
            int(i) for batch, _ in DataLoader(data, batch_size=32, sampler=sampler) for i in batch
        ]
        result[name] = {"seen": seen, "replicas": sampler.num_replicas, "rank": sampler.rank}
    torch.manual_seed(100 + rank)  # ranks disagree: without a seed, rank 0's draw is broadcast
    unseeded = InstanceSampler(labels)
    result["unseeded"] = {"seen": list(unseeded)}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(result, fh)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
