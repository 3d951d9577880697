"""--tune: what trains and what stays as it was (weights and BatchNorm statistics), the backbone's
learning rate, LoRA adapters that save and load, and the grammar refused before data loads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import small_embedded
from longtail.errors import LongtailError
from longtail.strategies import parse_strategy
from longtail.training.backbones import (
    add_lora,
    backbone_blocks,
    backbone_lr_groups,
    parse_tune,
    tuned_split,
)
from longtail.training.checkpoint import load
from longtail.training.config import TrainConfig
from longtail.training.evaluation import evaluate_model
from longtail.training.loop import train
from longtail.training.models import SmallCNN, build_model
from longtail.training.resolve import strategy_for_run
from longtail.training.setup import run_model
from longtail.training.trainer import Trainer


def _states(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_the_grammar_and_its_ranges():
    assert parse_tune("full").kind == "full" and parse_tune("frozen").kind == "frozen"
    assert parse_tune("last").n == 2 and parse_tune("last[n=3]").n == 3
    lora = parse_tune("lora[r=4,alpha=8]")
    assert (lora.kind, lora.r, lora.alpha) == ("lora", 4, 8)
    for bad, message in [
        ("half", "tune must be one of"),
        ("last[n=0]", "n must be an integer >= 1"),
        ("lora[r=8,alpha=0]", "alpha must be a finite number > 0"),
        ("frozen[n=1]", "has no parameter 'n'"),
    ]:
        with pytest.raises(LongtailError, match=message):
            parse_tune(bad)


def test_blocks_are_the_parametrised_children_a_lone_container_opened():
    cnn = SmallCNN(1, 10)
    assert backbone_blocks(cnn) == list(cnn.features)[:3]
    resnet = build_model("resnet18", 4, image_size=32)
    names = [n for n, m in resnet.named_children() if any(m is b for b in backbone_blocks(resnet))]
    assert names == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]


def test_last_n_trains_the_last_blocks_and_keeps_the_rest():
    cnn = SmallCNN(1, 10)
    split = tuned_split(cnn, parse_tune("last[n=1]"))
    stage3 = {id(p) for p in cnn.features[2].parameters()}
    assert {id(p) for p in split.backbone} == stage3
    assert split.frozen == {id(p) for p in cnn.features.parameters()} - stage3
    assert split.eval_blocks == (cnn.features[0], cnn.features[1])
    with pytest.raises(LongtailError, match="has 3 blocks"):
        tuned_split(cnn, parse_tune("last[n=4]"))


def test_the_backbone_learning_rate_is_a_group_of_its_own():
    cnn = SmallCNN(1, 10)
    split = tuned_split(cnn, parse_tune("full"))
    params = list(cnn.parameters())
    assert backbone_lr_groups(params, split, 0.1, 1.0) is params  # one group, as before
    head, body = backbone_lr_groups(params, split, 0.1, 0.01)
    assert {id(p) for p in head["params"]} == {id(p) for p in cnn.classifier.parameters()}
    assert body["lr"] == pytest.approx(0.001) and "lr" not in head
    optimizer = torch.optim.SGD([head, body], lr=0.1)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.001])


@pytest.fixture(scope="module")
def data():
    return small_embedded(40)


@pytest.mark.parametrize(
    ("tune", "moves"),
    [
        ("frozen", {"classifier"}),
        ("last[n=1]", {"classifier", "features.2"}),
        ("full", {"classifier", "features.0", "features.1", "features.2"}),
    ],
)
def test_a_run_changes_only_what_its_tune_trains(data, tmp_path, tune, moves):
    config = TrainConfig(model="small_cnn", tune=tune, epochs=1, batch_size=64, progress=False)
    start = _states(_model(config, data))
    Trainer(config, data, tmp_path / "run", False, None, None).run()  # the loop, on images
    end = load(tmp_path / "run" / "checkpoint.pt")["model"]
    changed = {_block(k) for k in _changed(start, end)}
    assert changed == moves  # frozen blocks keep their weights and BatchNorm statistics


def test_lora_trains_its_adapters_and_a_saved_run_scores_the_same(data, tmp_path):
    pytest.importorskip("peft", reason="pip install 'longtail[peft]' (the test extras have it)")
    config = TrainConfig(
        model="small_cnn", tune="lora[r=2,alpha=4]", epochs=1, batch_size=64, progress=False
    )
    start = _states(_model(config, data))
    assert any("lora_A" in k for k in start)
    result = train(config, data, tmp_path / "run")
    end = load(tmp_path / "run" / "checkpoint.pt")["model"]
    changed = _changed(start, end)
    assert changed and all("lora_" in k or k.startswith("classifier") for k in changed)
    again = _model(config, data)
    again.load_state_dict(load(tmp_path / "run" / "tested.pt")["model"])
    report = evaluate_model(again, data.test, data.distribution, torch.device("cpu"), num_workers=0)
    assert report.summary()["balanced_accuracy"] == result.test.summary["balanced_accuracy"]


def test_lora_without_peft_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(LongtailError, match=r"pip install 'longtail\[peft\]'"):
        add_lora(SmallCNN(1, 3), parse_tune("lora"))


def _model(config: TrainConfig, data) -> nn.Module:
    """The model a run of ``config`` starts from (built from its seed)."""
    strategy = parse_strategy(config.strategy)
    built = strategy_for_run(strategy, config, data)
    return run_model(config, data, built, strategy, torch.device("cpu"))


def _block(key: str) -> str:
    """``features.2`` for ``features.2.0.weight``, ``classifier`` for ``classifier.bias``."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "features" else parts[0]
