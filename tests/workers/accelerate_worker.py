"""Run by torchrun in tests/suites/test_ddp.py: 3 epochs through a DataLoader prepared by
accelerate with a longtail sampler, each process recording the batches of dataset indices it
trained on."""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from lightning_worker import LABELS, Indexed
from torch.utils.data import DataLoader

from longtail.sampling import WeightedSampler


def main(out: str) -> None:
    accelerator = Accelerator(cpu=True)
    # one global plan per epoch: accelerate splits its batches between the processes
    sampler = WeightedSampler(labels=LABELS, scheme="inverse", seed=7, num_replicas=1)
    loader = DataLoader(Indexed(), batch_size=5, sampler=sampler)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    seen = {}
    for epoch in range(3):
        for x, y, i in loader:
            seen.setdefault(epoch, []).append(i.tolist())
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
    rank = accelerator.process_index
    Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
    accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
