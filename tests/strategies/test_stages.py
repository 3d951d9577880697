"""Second stages: hand-computed heads, choices made on validation only, a frozen backbone, MaxNorm,
and resuming across the stage boundary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from longtail.data.bundle import embedded_bundle
from longtail.data.datasets import ArrayDataset
from longtail.data.fashion_mnist_lt import load_fashion_mnist_lt
from longtail.distribution import ClassDistribution
from longtail.metrics import MetricAccumulator
from longtail.strategies import build_strategy, parse_strategy
from longtail.strategies.stages import (
    LearnableWeightScaling,
    PostHocLogitAdjustment,
    StageContext,
    TauNormalisation,
    WeightBalancing,
)
from longtail.training.loop import TrainConfig, train


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.classifier = nn.Linear(2, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))  # norms 5, 2
            self.classifier.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x):
        return self.classifier(self.features(x))


def context(model: nn.Module, scores=None) -> tuple[StageContext, list]:
    asked = []

    def score(heads):
        asked.append(heads)
        return scores(heads) if scores else [0.0] * len(heads)

    def set_classifier(module):
        model.classifier = module

    return StageContext(model, lambda: model.classifier, set_classifier, score), asked


def test_tau_normalisation_gives_the_hand_computed_logits():
    model = TwoLayer()
    stage = TauNormalisation(grid=[0.5])
    ctx, _ = context(model)
    stage.begin(ctx)
    x = torch.tensor([[1.0, 1.0]])
    expected = [7 / math.sqrt(5) + 0.5, 2 / math.sqrt(2) - 0.5]
    assert model(x)[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert stage.summary() == {"stage": "tau_norm", "tau": 0.5}


def test_tau_and_the_adjustment_are_those_validation_scores_best():
    model = TwoLayer()
    x = torch.tensor([[1.0, 1.0]])
    # candidate k scores -(k - 7)^2: the 8th value of the grid, 0.7, is the best
    stage = TauNormalisation()
    ctx, asked = context(model, lambda heads: [-((k - 7) ** 2) for k in range(len(heads))])
    stage.begin(ctx)
    assert stage.tau == 0.7 and len(asked[0]) == 21
    # each candidate head is w / ||w||^tau applied to the features
    tau2 = asked[0][20](x)[0].tolist()
    assert tau2 == pytest.approx([7 / 25 + 0.5, 2 / 4 - 0.5], rel=1e-6)
    counts = np.array([90, 10])
    adjust = PostHocLogitAdjustment(counts, grid=[0.0, 1.0, 2.0])
    model = TwoLayer()
    plain = model(x)[0].detach().clone()
    ctx, _ = context(model, lambda heads: [0.1, 0.9, 0.5])
    adjust.begin(ctx)
    assert adjust.tau == 1.0
    expected = plain - torch.log(torch.tensor([0.9, 0.1]))  # z_j - tau log pi_j
    torch.testing.assert_close(model(x)[0].detach(), expected)


def test_learnable_weight_scaling_scales_each_class_logit():
    model = TwoLayer()
    x = torch.tensor([[1.0, 1.0]])
    plain = model(x)[0].detach().clone()  # [7.5, 1.5]
    stage = LearnableWeightScaling(np.array([0, 1, 1]), np.array([1, 2]), seed=0)
    ctx, _ = context(model)
    stage.begin(ctx)
    assert [p.shape for p in stage.parameters(ctx)] == [torch.Size([2])]
    with torch.no_grad():
        model.classifier.scales.copy_(torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(model(x)[0].detach(), plain * torch.tensor([2.0, 0.5]))


def test_max_norm_keeps_every_class_row_within_its_bound():
    model = TwoLayer()
    stage = WeightBalancing(np.array([0, 1, 1]), np.array([1, 2]), seed=0, max_norm=3.0)
    ctx, _ = context(model)
    stage.begin(ctx)
    w = model.classifier.weight.detach()
    # the row of norm 5 is scaled onto the bound, the row of norm 2 is left alone
    torch.testing.assert_close(w, torch.tensor([[1.8, 2.4], [0.0, 2.0]]))
    with torch.no_grad():
        model.classifier.weight.mul_(10)
    stage.after_step(ctx)
    assert model.classifier.weight.norm(dim=1).max() <= 3.0 + 1e-6
    default = WeightBalancing(np.array([0, 1, 1]), np.array([1, 2]), seed=0)
    model = TwoLayer()
    ctx, _ = context(model)
    default.begin(ctx)
    assert default.max_norm == pytest.approx(3.5)  # the mean row norm, (5 + 2) / 2


def test_stages_are_named_checked_and_compose_with_any_first_stage():
    s = parse_strategy("class_balanced+focal[gamma=1]:crt[epochs=3,lr=0.01]")
    assert (s.sampler, s.loss, s.stage, s.stage_params) == (
        "class_balanced",
        "focal",
        "crt",
        {"epochs": 3, "lr": 0.01},
    )
    built = build_strategy(s, np.array([0, 0, 1]), np.array([2, 1]), seed=0, epochs=4, batch_size=2)
    assert built.stage_bounds() == [(0, 4), (4, 7)] and built.stage_of(5) == 1
    with pytest.raises(
        ValueError,
        match="unknown second stage .crtt.*stages: crt, logit_adjust, lws, tau_norm, weight_balancing",
    ):
        parse_strategy("instance+ce:crtt")
    with pytest.raises(ValueError, match="at most 2"):
        parse_strategy("instance+ce:crt:lws")
    for bad, match in (
        ("instance+ce:crt[epochs=0]", "epochs must be an integer >= 1"),
        ("instance+ce:lws[lr=-1]", "lr must be a finite number > 0"),
        ("instance+ce:tau_norm[gamma=1]", "has no parameter .gamma."),
        ("instance+ldam_drw:tau_norm", "cosine classifier"),
    ):
        with pytest.raises(ValueError, match=match):
            build_strategy(
                parse_strategy(bad),
                np.array([0, 0, 1]),
                np.array([2, 1]),
                seed=0,
                epochs=4,
                batch_size=2,
            )


@pytest.fixture(scope="module")
def small_data():
    data = embedded_bundle()
    tr = load_fashion_mnist_lt("train")
    data.train = ArrayDataset(tr.images[::8], tr.labels[::8], data.train.mean, data.train.std)
    data.distribution = ClassDistribution.from_labels(tr.labels[::8], class_names=tr.class_names)
    return data


def config(strategy: str, **kw) -> TrainConfig:
    return TrainConfig(strategy=strategy, epochs=3, batch_size=128, progress=False, **kw)


def test_crt_retrains_the_classifier_and_leaves_the_backbone_bit_identical(small_data, tmp_path):
    plain = train(config("instance+ce"), small_data, tmp_path / "plain")
    crt = train(config("instance+ce:crt"), small_data, tmp_path / "crt")
    a = torch.load(tmp_path / "plain" / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "crt" / "checkpoint.pt", weights_only=True)["model"]
    backbone = [k for k in a if k.startswith("features.")]
    assert backbone and all(torch.equal(a[k], b[k]) for k in backbone)
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])
    assert [r["stage"] for r in crt.history] == [1, 1, 1, 2, 2]
    assert crt.selected_epoch in (4, 5) and plain.selected_epoch <= 3


def test_post_hoc_tau_is_chosen_on_validation_never_on_test(small_data, tmp_path):
    # validation holds only the rarest class: its balanced accuracy is that class's recall, which
    # a larger tau can only help; the balanced test set prefers a moderate tau
    data = embedded_bundle()
    data.train, data.distribution = small_data.train, small_data.distribution
    va = load_fashion_mnist_lt("val")
    rare = va.labels == 9
    data.val = ArrayDataset(va.images[rare], va.labels[rare], data.train.mean, data.train.std)
    result = train(config("instance+ce:logit_adjust"), data, tmp_path / "la")
    chosen = result.stages[0]["tau"]
    model_state = torch.load(tmp_path / "la" / "checkpoint.pt", weights_only=True)["model"]
    offset = model_state["classifier.offset"]
    log_prior = torch.log(torch.as_tensor(data.distribution.counts / data.distribution.total))
    torch.testing.assert_close(offset, (-chosen * log_prior).float())

    from longtail.training.models import build_model

    model = build_model("mlp", 10, 1, 28)
    model.load_state_dict(
        {
            k.replace("classifier.inner.", "classifier."): v
            for k, v in model_state.items()
            if k != "classifier.offset"
        }
    )
    model.eval()

    def best_tau(dataset) -> float:
        with torch.no_grad():
            logits = model(dataset.x)
        scores = []
        for tau in [round(0.1 * k, 1) for k in range(21)]:
            acc = MetricAccumulator(10)
            acc.update(logits - tau * log_prior.float(), dataset.targets)
            scores.append(acc.compute(data.distribution).summary()["balanced_accuracy"])
        return [round(0.1 * k, 1) for k in range(21)][int(np.argmax(scores))]

    assert chosen == best_tau(data.val)
    assert best_tau(data.test) != chosen  # so a choice made on the test set would differ


@pytest.mark.parametrize("strategy", ["instance+ce:crt", "instance+ce:logit_adjust"])
def test_a_run_resumed_across_the_stage_boundary_is_the_uninterrupted_run(
    small_data, tmp_path, strategy
):
    full = train(config(strategy), small_data, tmp_path / "full")

    class Killed(Exception):
        pass

    def kill_at_the_end_of_stage_one(epoch, row):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(
            config(strategy),
            small_data,
            tmp_path / "killed",
            on_epoch_end=kill_at_the_end_of_stage_one,
        )
    resumed = train(config(strategy), small_data, tmp_path / "killed", resume=True)
    assert resumed.test.summary == full.test.summary
    assert resumed.stages == full.stages
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if strategy.endswith("crt"):  # and inside the second stage

        def kill_in_stage_two(epoch, row):
            if epoch == 3:
                raise Killed

        with pytest.raises(Killed):
            train(config(strategy), small_data, tmp_path / "k2", on_epoch_end=kill_in_stage_two)
        again = train(config(strategy), small_data, tmp_path / "k2", resume=True)
        assert again.test.summary == full.test.summary
        assert again.epochs_run == 1
