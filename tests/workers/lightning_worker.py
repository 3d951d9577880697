"""Run by torchrun in tests/integrations/test_lightning.py: a 2-process Lightning DDP fit over 3 epochs with a
longtail sampler, each rank recording the dataset indices it trained on, epoch by epoch."""

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from longtail.sampling import BalancedBatchSampler, WeightedSampler

LABELS = np.repeat(np.arange(3), [30, 12, 5])


class Indexed(Dataset):
    targets = LABELS

    def __len__(self):
        return len(LABELS)

    def __getitem__(self, i):
        return torch.full((4,), float(i)), int(LABELS[i]), i


def balanced_batches(**world):
    """P classes x M images per batch (a batch sampler)."""
    return BalancedBatchSampler(LABELS, classes_per_batch=3, samples_per_class=2, seed=7, **world)


class Model(pl.LightningModule):
    def __init__(self, kind: str = "weighted"):
        super().__init__()
        self.net = torch.nn.Linear(4, 3)
        self.seen = {}
        self.kind = kind

    def train_dataloader(self):
        if self.kind == "balanced_batch":
            return DataLoader(Indexed(), batch_sampler=balanced_batches())
        sampler = WeightedSampler(labels=LABELS, scheme="inverse", seed=7)
        return DataLoader(Indexed(), batch_size=5, sampler=sampler)

    def training_step(self, batch, batch_idx):
        x, y, i = batch
        self.seen.setdefault(self.current_epoch, []).extend(i.tolist())
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main(out: str, use_distributed_sampler: str, kind: str) -> None:
    model = Model(kind)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=3,
        use_distributed_sampler=use_distributed_sampler == "true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model)
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(model.seen))
    # end the process group before the interpreter exits: left to shutdown, gloo's threads may
    # abort the process ("terminate called without an active exception")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
