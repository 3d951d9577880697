"""What the library takes: non-finite logits, several validation dataloaders under Lightning, and
strategy parameters that each component really reads."""

import numpy as np
import pytest
import torch

from helpers import quiet_trainer
from longtail.metrics import MetricAccumulator
from longtail.strategies import build_strategy, parse_strategy
from longtail.strategies.registry import REGISTRY

PARAMETERS = {
    kind: {n: spec.params for n, spec in specs.items()} for kind, specs in REGISTRY.items()
}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits_are_refused_not_scored_as_class_zero(bad):
    acc = MetricAccumulator(3)
    logits = torch.tensor([[0.1, 2.0, 0.3], [bad, bad, bad]])
    with pytest.raises(ValueError, match="1 of 2 rows of logits are nan or infinite"):
        acc.update(logits, torch.tensor([1, 0]))
    acc.update(logits[:1], torch.tensor([1]))  # nothing of the refused batch was counted
    assert acc.compute().summary()["accuracy"] == 1.0


SAMPLE_VALUES = {"number": 0.5, "bool": True, "integer": 2}
TEXT_VALUES = {"scheme": "smooth_inverse", "base": "inverse", "levels": "uniform"}
VALUES = {"alpha": 10.0, "over_max": 2.0, "max_ratio": 5.0, "beta": 0.99, "drw_beta": 0.99}


@pytest.mark.parametrize(
    ("kind", "name", "key"),
    [(k, n, p) for k, table in PARAMETERS.items() for n, ps in table.items() for p in ps],
)
def test_every_documented_parameter_is_read_by_its_component(kind, name, key):
    want = PARAMETERS[kind][name][key]
    value = (
        TEXT_VALUES.get(key) if want.kind == "text" else VALUES.get(key, SAMPLE_VALUES[want.kind])
    )
    params = {key: value}
    if key in ("alpha", "q", "beta") and "scheme" in PARAMETERS[kind][name]:
        params["scheme"] = {"alpha": "smooth_inverse", "q": "power", "beta": "effective_number"}[
            key
        ]
    text = ",".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()
    )
    spec = {
        "sampler": f"{name}[{text}]+ce",
        "loss": f"instance+{name}[{text}]",
        "stage": f"instance+ce:{name}[{text}]",
    }[kind]
    strategy = parse_strategy(spec)
    labels = np.repeat(np.arange(3), [12, 6, 3])
    built = build_strategy(strategy, labels, np.bincount(labels), seed=0, epochs=4, batch_size=6)
    component = {
        "sampler": built.stages[0].sampler,
        "loss": built.stages[0].loss,
        "stage": built.stages[-1],
    }[kind]
    assert component is not None  # built: the factory took the parameter


def test_lightning_keeps_several_validation_dataloaders_apart(tmp_path):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from longtail.distribution import ClassDistribution
    from longtail.integrations.lightning import LongtailMetrics

    y = torch.repeat_interleave(torch.arange(3), torch.tensor([30, 10, 5]))
    x = torch.randn(len(y), 5, generator=torch.Generator().manual_seed(0)) + y[:, None]
    first, second = TensorDataset(x, y), TensorDataset(x[y == 2], y[y == 2])  # only class 2
    dist = ClassDistribution.from_labels(y.numpy(), class_names=["a", "b", "c"])

    class Model(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(5, 3)

        def train_dataloader(self):
            return DataLoader(first, batch_size=8)

        def val_dataloader(self):
            return [DataLoader(first, batch_size=16), DataLoader(second, batch_size=4)]

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            return {"logits": self.net(batch[0]), "target": batch[1]}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    metrics = LongtailMetrics(dist)
    model = Model()
    trainer = quiet_trainer(tmp_path, [metrics], max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(model)
    logged = trainer.callback_metrics
    model.eval()
    for i, dataset in enumerate((first, second)):
        acc = MetricAccumulator(3)
        with torch.no_grad():
            acc.update(model.net(dataset.tensors[0]), dataset.tensors[1])
        expected = acc.compute(dist).summary()
        key = f"val_balanced_accuracy/dataloader_idx_{i}"
        assert float(logged[key]) == pytest.approx(expected["balanced_accuracy"])
        assert metrics.reports[i].summary()["accuracy"] == pytest.approx(expected["accuracy"])
    assert "val_balanced_accuracy" not in logged  # no number merged over both
