"""Mixed-sample training: mixup, CutMix and Remix against their formulas; resumable."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.losses import CrossEntropyLoss, FocalLoss
from longtail.mixing import mix_batch, mix_rng, mixed_loss, parse_mix, remix_weight

X = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
Y = torch.tensor([0, 1])


def test_mixup_is_the_convex_combination_with_the_paired_images():
    spec = parse_mix("mixup[alpha=0.4]")
    rng = mix_rng(3, 1, 7)
    batch = mix_batch(spec, X, Y, rng)
    again = np.random.default_rng([3, 1, 7, 0, 0x6D6978])
    lam = again.beta(0.4, 0.4)
    perm = again.permutation(2)
    torch.testing.assert_close(batch.x, lam * X + (1 - lam) * X[perm])
    assert batch.y_b.tolist() == Y[perm].tolist()
    assert torch.allclose(batch.weight, torch.full((2,), lam, dtype=torch.float32))


def test_cutmix_pastes_a_box_and_weighs_the_labels_by_the_area_left():
    spec = parse_mix("cutmix")
    for step in range(20):
        batch = mix_batch(spec, X, Y, mix_rng(0, 0, step))
        pasted = (batch.x != X).float().mean(dim=(1, 2, 3))  # share of pixels replaced
        swapped = (batch.y_b != batch.y_a).float()
        # every pixel differs between the two images, so the replaced share is 1 - lambda_y
        torch.testing.assert_close(pasted, (1 - batch.weight) * swapped)


def test_remix_leans_the_label_to_the_rarer_class():
    n_a = torch.tensor([300, 10, 50, 300])
    n_b = torch.tensor([10, 300, 40, 10])
    # lam = 0.3 < tau: a pair whose first class is 30x as common takes the rare label only
    w = remix_weight(0.3, n_a, n_b, kappa=3.0, tau=0.5)
    assert w.tolist() == pytest.approx([0.0, 0.3, 0.3, 0.0])
    # lam = 0.8, 1 - lam < tau: a first class 30x rarer keeps its label whole
    assert remix_weight(0.8, n_a, n_b, 3.0, 0.5).tolist() == pytest.approx([0.8, 1.0, 0.8, 0.8])


def test_the_mixed_loss_is_the_weighted_sum_of_the_two_targets_losses():
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    batch = mix_batch(parse_mix("mixup"), torch.randn(6, 5), y, mix_rng(1, 2, 3))
    lam = batch.weight[0].item()
    ce = CrossEntropyLoss()
    expected = lam * F.cross_entropy(logits, batch.y_a) + (1 - lam) * F.cross_entropy(
        logits, batch.y_b
    )
    torch.testing.assert_close(mixed_loss(ce, logits, batch), expected)
    focal = FocalLoss(gamma=2.0)
    mixed_loss(focal, logits, batch)
    assert ce.reduction == "mean" and focal.reduction == "mean"  # the losses given are unchanged


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("blend", "mix must be one of none, mixup, cutmix, remix"),
        ("mixup[beta=1]", "no parameter 'beta'"),
        ("mixup[alpha=0]", "alpha must be a finite number > 0"),
        ("remix[tau=1.5]", r"tau must be a finite number in \(0, 1\)"),
        ("none[alpha=1]", "takes no parameters"),
    ],
)
def test_bad_mix_options_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_mix(text)


@pytest.fixture
def small_data(tmp_path):
    from helpers import write_splits
    from longtail.data.bundle import folder_bundle

    return folder_bundle(write_splits(tmp_path / "data"), image_size=8)


def test_a_mixed_run_killed_mid_epoch_resumes_to_the_same_result(small_data, tmp_path, monkeypatch):
    import longtail.training.step as step_module
    from helpers import count_calls, train_killed
    from longtail.training.loop import TrainConfig, train

    config = TrainConfig(
        strategy="instance+ce:crt[epochs=1]",
        epochs=3,
        batch_size=8,
        mix="remix[alpha=0.4,kappa=2]",
        num_workers=0,
        progress=False,
    )
    calls = count_calls(monkeypatch, step_module, "mix_batch")
    full = train(config, small_data, tmp_path / "full")
    assert len(calls) == 3 * 5  # 40 images, batches of 8: every first-stage step, no cRT step
    assert full.identity["training"]["mix"] == "remix[alpha=0.4,kappa=2]"
    monkeypatch.undo()
    killed = tmp_path / "killed"  # at the second batch of epoch 2
    train_killed(config, small_data, killed, monkeypatch, step_module, "mix_batch", at=7)
    resumed = train(config, small_data, tmp_path / "killed", resume=True)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert resumed.test.summary == full.test.summary
    plain = train(TrainConfig(**{**config.__dict__, "mix": "none"}), small_data, tmp_path / "p")
    assert plain.history[0]["train_loss"] != full.history[0]["train_loss"]
