"""Models by name: timm backbones from local weights, and a missing extra named in one line."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import write_splits
from longtail.training.models import build_model


@pytest.fixture
def tree(tmp_path):
    return write_splits(tmp_path / "data", (12, 6, 3), held_out=2, size=40)


def test_a_timm_backbone_loads_local_weights_and_trains(tree, tmp_path):
    import timm

    from longtail.cli import main

    reference = timm.create_model("test_efficientnet", num_classes=3)
    weights = tmp_path / "weights.pt"
    torch.save(reference.state_dict(), weights)
    model = build_model("timm:test_efficientnet", 3, 3, 32, pretrained=str(weights))
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    out = tmp_path / "run"
    argv = ["train", "--data", str(tree), "--model", "timm:test_efficientnet"]
    argv += ["--pretrained", str(weights), "--image-size", "32", "--epochs", "1"]
    argv += ["--batch-size", "8", "--workers", "0", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "timm:test_efficientnet"
    trained = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    changed = [k for k, v in reference.state_dict().items() if not torch.equal(v, trained[k])]
    assert changed  # the optimiser moved the loaded weights


def test_a_missing_timm_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ValueError, match=r"needs timm: pip install 'longtail\[timm\]'"):
        build_model("timm:test_efficientnet", 3, 3, 32)
