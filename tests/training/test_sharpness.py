"""SAM and ImbSAM steps against their formulas; a sharpness-aware run resumes identically."""

import pytest
import torch

from longtail.training.sharpness import parse_optimizer, sharpness_step

torch.manual_seed(0)
X = torch.randn(6, 3)
Y = torch.tensor([0, 0, 0, 1, 2, 2])  # class 2 is the tail: rows 4 and 5
TAIL = torch.tensor([False, False, True])


def _model():
    torch.manual_seed(1)
    return torch.nn.Linear(3, 3)


def _loss(model, rows):
    logits = model(X[rows])
    return torch.nn.functional.cross_entropy(logits, Y[rows], reduction="sum") / len(Y)


def _expected(model, lr, rho, flat_rows, kept_rows):
    """w - lr * (grad L_kept(w) + grad L_flat(w + rho g / ||g||)), g = grad L_flat(w)."""
    params = list(model.parameters())
    g = torch.autograd.grad(_loss(model, flat_rows), params)
    norm = torch.sqrt(sum((x**2).sum() for x in g))
    kept = torch.autograd.grad(_loss(model, kept_rows), params) if len(kept_rows) else None
    with torch.no_grad():
        for p, gi in zip(params, g, strict=True):
            p.add_(rho * gi / norm)
    g2 = torch.autograd.grad(_loss(model, flat_rows), params)
    with torch.no_grad():
        for p, gi in zip(params, g, strict=True):
            p.sub_(rho * gi / norm)
    total = [a + (b if kept is not None else 0) for a, b in zip(g2, kept or g2, strict=True)]
    return [p.detach() - lr * t for p, t in zip(params, total, strict=True)]


def test_sam_steps_with_the_gradient_at_the_perturbed_weights():
    model, lr, rho = _model(), 0.1, 0.2
    every = torch.arange(6)
    expected = _expected(_model(), lr, rho, every, torch.tensor([], dtype=torch.long))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    sharpness_step(rho, optimizer, lambda: (_loss(model, every), None))
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e)


def test_imbsam_flattens_only_the_tail_classes_loss():
    model, lr, rho = _model(), 0.1, 0.2
    tail = TAIL[Y].nonzero().flatten()
    head = (~TAIL[Y]).nonzero().flatten()
    expected = _expected(_model(), lr, rho, tail, head)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    sharpness_step(rho, optimizer, lambda: (_loss(model, tail), _loss(model, head)))
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e)
    # with e taken from the whole batch instead (SAM), the step differs
    sam = _expected(_model(), lr, rho, torch.arange(6), torch.tensor([], dtype=torch.long))
    assert not torch.allclose(sam[0], expected[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("adam", "optimizer must be one of adamw, sgd, sam, imbsam"),
        ("sam[rho=0]", "rho must be a finite number > 0"),
        ("sam[base=lbfgs]", "base must be one of adamw, sgd"),
        ("imbsam[radius=1]", "no parameter 'radius'"),
        ("sgd[rho=1]", "takes no parameters"),
    ],
)
def test_bad_optimizer_options_are_refused(text, message):
    from longtail.training.config import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(optimizer=text)


def test_parsed_optimizers():
    assert parse_optimizer("sgd").sharpness is None
    spec = parse_optimizer("imbsam[rho=0.1,base=adamw]")
    assert (spec.base, spec.sharpness, spec.rho) == ("adamw", "imbsam", 0.1)


def test_a_sharpness_aware_run_killed_mid_epoch_resumes_to_the_same_result(tmp_path, monkeypatch):
    import longtail.training.step as step_module
    from helpers import count_calls, train_killed, write_splits
    from longtail.data.bundle import folder_bundle
    from longtail.training.loop import TrainConfig, train

    data = folder_bundle(write_splits(tmp_path / "data"), image_size=8)
    config = TrainConfig(
        strategy="instance+ce",
        epochs=2,
        batch_size=8,
        optimizer="imbsam[rho=0.05,base=sgd]",
        lr=0.05,
        num_workers=0,
        progress=False,
    )
    calls = count_calls(monkeypatch, step_module, "sharpness_step")
    full = train(config, data, tmp_path / "full")
    assert len(calls) == 2 * 5  # every step of both epochs was sharpness-aware
    monkeypatch.undo()
    killed = tmp_path / "killed"  # at the second step of epoch 2
    train_killed(config, data, killed, monkeypatch, step_module, "sharpness_step", at=7)
    resumed = train(config, data, tmp_path / "killed", resume=True)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert resumed.test.summary == full.test.summary
    plain = train(TrainConfig(**{**config.__dict__, "optimizer": "sgd"}), data, tmp_path / "p")
    assert plain.history[-1]["train_loss"] != full.history[-1]["train_loss"]
