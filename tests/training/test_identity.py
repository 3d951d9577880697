"""A run's identity: what it holds, what it leaves out, and what a resume checks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from helpers import QUIET, TINY, small_tree
from longtail.cli import main
from longtail.data.bundle import embedded_bundle
from longtail.training.config import TrainConfig, option
from longtail.training.identity import run_identity


def test_train_resume_refuses_a_checkpoint_of_other_data(tmp_path, capsys):
    a = small_tree(tmp_path / "A", {"x": 12, "y": 6, "z": 5})
    b = small_tree(tmp_path / "B", {"x": 12, "y": 6, "z": 5, "w": 5}, seed=1)
    out = tmp_path / "run"
    argv = ["train", *TINY, *QUIET, "--out", str(out)]
    assert main([*argv, "--data", str(a)]) == 0
    config = (out / "config.json").read_text()
    capsys.readouterr()
    assert main([*argv, "--data", str(b), "--resume"]) == 2
    assert "data.classes" in capsys.readouterr().err
    assert (out / "config.json").read_text() == config  # not overwritten before the check
    assert main([*argv, "--data", str(a), "--image-size", "12"]) == 2  # without --resume too
    assert "data.image_size" in capsys.readouterr().err


def test_an_execution_option_stays_out_of_the_identity():
    @dataclass
    class Verbose(TrainConfig):
        chatty: bool = option(False, "say more", "--chatty", execution=True)

    fingerprint = embedded_bundle().fingerprint()
    assert "chatty" not in run_identity(Verbose(chatty=True), fingerprint)["training"]
    assert "device" not in run_identity(Verbose(), fingerprint)["training"]


def test_the_identity_holds_the_digest_of_the_weights_file(tmp_path):
    from longtail.training.models import SmallCNN

    weights = tmp_path / "w.pt"
    torch.manual_seed(0)
    torch.save(SmallCNN(1, 10).state_dict(), weights)
    config = TrainConfig(model="small_cnn", pretrained=str(weights))
    first = run_identity(config, {"data": 1})
    assert len(first["training"]["pretrained_sha256"]) == 64
    torch.save(SmallCNN(1, 10).state_dict(), weights)  # other weights under the same name
    os.utime(weights, ns=(1, 1))
    assert (
        run_identity(config, {"data": 1})["training"]["pretrained_sha256"]
        != (first["training"]["pretrained_sha256"])
    )
    assert "pretrained_sha256" not in run_identity(TrainConfig(), {"data": 1})["training"]
