"""Warm-up + cosine learning rates against their formula, and the choice of the tested model."""

import csv
import json
import math
import re

import pytest
import torch

from longtail.data.bundle import embedded_bundle
from longtail.training.loop import TrainConfig, evaluate_model, train
from longtail.training.models import build_model
from longtail.training.schedule import best_epoch, lr_factor


def test_warmup_then_cosine_at_chosen_steps():
    total, warmup = 100, 10
    assert lr_factor(0, total, warmup) == pytest.approx(0.1)  # (t + 1) / W
    assert lr_factor(4, total, warmup) == pytest.approx(0.5)
    assert lr_factor(9, total, warmup) == pytest.approx(1.0)
    assert lr_factor(10, total, warmup) == pytest.approx(1.0)  # cos(0)
    assert lr_factor(55, total, warmup) == pytest.approx(0.5)  # halfway through the decay
    assert lr_factor(40, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi * 30 / 90)))
    assert lr_factor(99, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_factor(0, total, 0) == 1.0  # no warm-up
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_factor(0, 10, 10)


def test_best_epoch_of_a_hand_made_history():
    history = [
        {"epoch": 1, "val_balanced_accuracy": 0.50},
        {"epoch": 2, "val_balanced_accuracy": 0.71},
        {"epoch": 3, "val_balanced_accuracy": 0.71},  # a tie: the earlier epoch wins
        {"epoch": 4, "val_balanced_accuracy": float("nan")},
        {"epoch": 5, "val_balanced_accuracy": 0.64},  # the last epoch is not the best
    ]
    assert best_epoch(history) == 2
    with pytest.raises(ValueError, match="no epoch"):
        best_epoch([])


class ScriptedValidation:
    """Validation whose balanced accuracy is set by the test, epoch by epoch: the real
    ``evaluate_model`` scores logits that are right on every image (an epoch marked best) or
    always class 0 (1/K), so which epoch validates best never depends on floating-point rounding.
    Each validated model's weights are kept; test-set evaluations pass through unchanged."""

    def __init__(self, monkeypatch, val, best: set[int]) -> None:
        from longtail.metrics import MetricAccumulator
        from longtail.training import trainer

        self.val, self.best, self.states = val, best, {}
        real = trainer.evaluate_model

        def evaluate(model, dataset, distribution, device, **kw):
            if dataset is not self.val:
                return real(model, dataset, distribution, device, **kw)
            epoch = len(self.states) + 1
            self.states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
            y = torch.as_tensor(dataset.targets)
            right = y if epoch in self.best else torch.zeros_like(y)
            acc = MetricAccumulator(distribution.num_classes)
            acc.update(torch.nn.functional.one_hot(right, distribution.num_classes).float(), y)
            return acc.compute(distribution)

        monkeypatch.setattr(trainer, "evaluate_model", evaluate)


def assert_same_weights(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_tests_its_best_validation_epoch_and_logs_the_schedule(tmp_path, monkeypatch):
    data = embedded_bundle()
    scripted = ScriptedValidation(monkeypatch, data.val, best={2})
    config = TrainConfig(
        strategy="class_balanced+ce",
        epochs=4,
        warmup_epochs=0,
        lr=0.01,
        batch_size=512,
        augment="none",
        num_workers=0,
        progress=False,
    )
    result = train(config, data, tmp_path / "run")
    history = result.history
    assert [r["val_balanced_accuracy"] for r in history] == [0.1, 1.0, 0.1, 0.1]
    assert best_epoch(history) == 2 and result.selected_epoch == 2
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["selected_epoch"] == 2
    saved = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    assert_same_weights(saved, scripted.states[2])  # the weights validated at epoch 2
    assert not torch.equal(saved["classifier.weight"], scripted.states[4]["classifier.weight"])
    model = build_model("mlp", 10, 1, 28)
    model.load_state_dict(saved)
    report = evaluate_model(model, data.test, data.distribution, torch.device("cpu"))
    assert report.summary()["balanced_accuracy"] == pytest.approx(
        result.test.summary["balanced_accuracy"]
    )
    steps = -(-len(data.train) // 512)  # class-balanced sampling draws N per epoch
    with open(tmp_path / "run" / "log.csv") as fh:
        logged = [float(r["lr"]) for r in csv.DictReader(fh)]
    for epoch, lr in enumerate(logged, 1):  # the rate of each epoch's last step
        assert lr == pytest.approx(0.01 * lr_factor(epoch * steps - 1, 4 * steps, 0))


def test_warmup_steps_follow_the_loader(tmp_path):
    data = embedded_bundle()
    config = TrainConfig(
        epochs=2, warmup_epochs=1, lr=0.01, batch_size=1024, num_workers=0, progress=False
    )
    train(config, data, tmp_path / "w")
    steps = -(-len(data.train) // 1024)
    with open(tmp_path / "w" / "log.csv") as fh:
        logged = [float(r["lr"]) for r in csv.DictReader(fh)]
    assert logged[0] == pytest.approx(0.01)  # the last warm-up step reaches the base rate
    assert logged[1] == pytest.approx(0.01 * lr_factor(2 * steps - 1, 2 * steps, steps))


def test_cosine_head_logits_by_hand():
    from longtail.training.models import CosineClassifier

    head = CosineClassifier(2, 2, scale=30.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[3.0, 4.0]])  # angle to (1, 0): cos = 0.6; to (1, 1): cos = 7 / (5 sqrt 2)
    torch.testing.assert_close(head(x), torch.tensor([[18.0, 30 * 7 / (5 * math.sqrt(2))]]))


def test_heads_chosen_by_strategy_and_option():
    from longtail.strategies.registry import component
    from longtail.training.loop import classifier_head
    from longtail.training.models import CosineClassifier

    ldam = component("loss", "ldam_drw").head
    assert classifier_head(None, ldam, "ldam_drw", {}) == ("cosine", 1.0)  # ldam_drw's own head
    assert classifier_head(None, None, "ce", {}) == ("linear", 1.0)
    assert classifier_head("cosine", None, "ce", {}) == ("cosine", 30.0)
    with pytest.raises(ValueError, match=re.escape("ldam_drw[s=1]")):
        classifier_head("linear", ldam, "ldam_drw", {})
    assert classifier_head("linear", ldam, "ldam_drw", {"s": 1}) == ("linear", 1.0)
    model = build_model("mlp", 10, 1, 28, head="cosine", head_scale=30.0)
    assert isinstance(model.classifier, CosineClassifier) and model.classifier.scale == 30.0
    resnet = build_model("resnet18", 5, 3, 32, head="cosine")
    assert isinstance(resnet.fc, CosineClassifier)


def test_last_epoch_option_tests_the_last_model(tmp_path, monkeypatch):
    from longtail.cli import main

    data = embedded_bundle()
    monkeypatch.setattr("longtail.cli._bundle", lambda args, out: data)
    scripted = ScriptedValidation(monkeypatch, data.val, best={2})
    out = tmp_path / "last"
    argv = ["train", "--strategy", "class_balanced+ce", "--epochs", "4", "--warmup-epochs", "0"]
    argv += ["--lr", "0.01", "--batch-size", "512", "--workers", "0", "--no-progress"]
    argv += ["--augment", "none"]
    assert main([*argv, "--last-epoch", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selected_epoch"] == 4 and best_epoch(metrics["history"]) == 2
    model = build_model("mlp", 10, 1, 28)
    model.load_state_dict(scripted.states[4])  # the last epoch's weights are the ones tested
    report = evaluate_model(model, data.test, data.distribution, torch.device("cpu"))
    assert report.summary()["balanced_accuracy"] == pytest.approx(
        metrics["test"]["summary"]["balanced_accuracy"]
    )
