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


def test_the_other_tools_examples_run_as_written(tmp_path):
    import json
    import os
    import subprocess
    import sys

    section = README.read_text().split("## Working with other tools", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "the option-file and timm examples are missing from the README"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for block in blocks:
        proc = subprocess.run(
            ["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    runs = tmp_path / "runs"
    results = json.loads((runs / "exp" / "results.json").read_text())
    assert results["strategies"] == ["instance+ce", "weighted+ce", "sqrt+ce:crt"]
    one, again = (json.loads((runs / d / "metrics.json").read_text()) for d in ("one", "one-again"))
    assert one["test"]["summary"] == again["test"]["summary"]
    timm_run = json.loads((runs / "timm" / "metrics.json").read_text())
    assert timm_run["config"]["model"] == "timm:test_efficientnet" and "test" in timm_run


def test_the_lightning_example_runs_as_written(tmp_path, monkeypatch):
    section = README.read_text().split("**PyTorch Lightning.**", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # Lightning writes its logs in the working folder
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    logged = namespace["trainer"].callback_metrics
    assert {"val_balanced_accuracy", "val_head_recall", "val_tail_recall"} <= set(logged)
    assert 0.3 < float(logged["val_balanced_accuracy"]) <= 1


def test_the_accelerate_example_runs_as_written():
    section = README.read_text().split("**Hugging Face accelerate.**", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["sampler"].epoch == 1  # accelerate's set_epoch reached the sampler
    assert torch.isfinite(namespace["loss"])


def test_the_torchgeo_example_runs_as_written(tmp_path, monkeypatch):
    from helpers import MILLION_AID_LIKE, write_tree

    section = README.read_text().split("**torchgeo.**", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    root = tmp_path / "data" / "Million-AID"
    write_tree(root / "train", {k: n + 10 for k, n in MILLION_AID_LIKE.items()}, size=20)
    write_tree(root / "test", {k: 2 for k in MILLION_AID_LIKE}, size=20, seed=1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    result = namespace["result"]
    assert result.config["model"] == "small_cnn" and len(result.test.per_class) == 5
    assert namespace["dist"].at_level(1).counts.tolist() == [47, 28]
