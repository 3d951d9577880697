"""The README's library example runs as written (on a small stand-in data set)."""

import re
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

README = Path(__file__).resolve().parent.parent / "README.md"


class Labelled(TensorDataset):
    """A TensorDataset with the ``targets`` and ``classes`` a torchvision dataset has."""

    def __init__(self, x, y, classes):
        super().__init__(x, y)
        self.targets, self.classes = y, classes


def test_library_example_runs_as_written():
    block = re.search(
        r"```python\n(from torch.utils.data import DataLoader.*?)```", README.read_text(), re.S
    )
    assert block, "the library example is missing from the README"
    code = block.group(1).replace("    ...\n", "    pass\n")
    gen = torch.Generator().manual_seed(0)
    y = torch.repeat_interleave(torch.arange(4), torch.tensor([60, 20, 8, 4]))
    train_set = Labelled(torch.randn(y.numel(), 6, generator=gen), y, ["a", "b", "c", "d"])
    namespace = {
        "train_set": train_set,
        "epochs": 2,
        "model": nn.Linear(6, 4),
        "test_loader": DataLoader(train_set, batch_size=32),
    }
    exec(compile(code, str(README), "exec"), namespace)
    summary = namespace["metrics"].compute(namespace["dist"]).summary()
    assert set(summary) >= {"balanced_accuracy", "head_recall", "tail_f1", "ece"}
    assert namespace["sampler"].epoch == 1  # set_epoch reached the sampler
