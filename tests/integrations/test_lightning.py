"""longtail inside Lightning: DDP shards a longtail sampler once and advances its epochs; the callback logs group metrics and feeds the curriculum."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import WORKERS, quiet_trainer, write_splits


@pytest.fixture
def tree(tmp_path):
    return write_splits(tmp_path / "data", (12, 6, 3), held_out=2, size=40)


@pytest.mark.parametrize(
    "kind, use_distributed_sampler",
    [("weighted", "true"), ("weighted", "false"), ("balanced_batch", "false")],
)
def test_lightning_ddp_shards_a_longtail_sampler_once_and_advances_its_epochs(
    tmp_path, kind, use_distributed_sampler
):
    from lightning_worker import LABELS, balanced_batches

    from helpers import torchrun
    from longtail.sampling import WeightedSampler

    worker = WORKERS / "lightning_worker.py"
    proc = torchrun(worker, str(tmp_path), use_distributed_sampler, kind)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    plans = []
    for epoch in range(3):
        if (
            kind == "balanced_batch"
        ):  # a batch sampler: Lightning needs use_distributed_sampler=False
            shards = []
            for r in range(2):
                sampler = balanced_batches(num_replicas=2, rank=r)
                sampler.set_epoch(epoch)
                shards.append([i for batch in sampler for i in batch])
            assert ranks[0][str(epoch)] == shards[0] and ranks[1][str(epoch)] == shards[1]
            plans.append(shards[0] + shards[1])
            continue
        sampler = WeightedSampler(labels=LABELS, scheme="inverse", seed=7, num_replicas=1)
        sampler.set_epoch(epoch)
        plan = list(sampler)  # the global plan of this epoch
        padded = plan + plan[: len(plan) % 2]
        # each rank saw its own half of the plan, once: no second sharding, no lost epoch
        assert ranks[0][str(epoch)] == padded[0::2]
        assert ranks[1][str(epoch)] == padded[1::2]
        plans.append(plan)
    assert plans[0] != plans[1] != plans[2]


def test_lightning_callback_logs_group_metrics_and_feeds_the_curriculum(tmp_path):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from longtail.distribution import ClassDistribution
    from longtail.integrations.lightning import LongtailMetrics
    from longtail.metrics import MetricAccumulator
    from longtail.sampling import CurriculumSampler

    gen = torch.Generator().manual_seed(0)
    y = torch.repeat_interleave(torch.arange(3), torch.tensor([40, 12, 4]))
    x = torch.randn(len(y), 5, generator=gen) + y[:, None]
    data = TensorDataset(x, y)
    tree = [("p",), ("p",), ()]  # a and b under p, c on its own
    dist = ClassDistribution.from_labels(y.numpy(), class_names=["a", "b", "c"], hierarchy=tree)
    curriculum = CurriculumSampler(y.numpy(), seed=0)
    before = curriculum.state_dict()

    class Model(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(5, 3)

        def train_dataloader(self):
            return DataLoader(data, batch_size=8, sampler=curriculum)

        def val_dataloader(self):
            return DataLoader(data, batch_size=16)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            return {"logits": self.net(batch[0]), "target": batch[1]}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    metrics = LongtailMetrics(dist)
    model = Model()
    trainer = quiet_trainer(tmp_path, [metrics], max_epochs=2)
    trainer.fit(model)
    logged = trainer.callback_metrics
    assert {"val_balanced_accuracy", "val_head_recall", "val_tail_f1"} <= set(logged)
    expected = MetricAccumulator.for_distribution(dist)
    with torch.no_grad():
        expected.update(model.net(x), y)
    report = expected.compute(dist)
    summary = report.summary()
    assert float(logged["val_balanced_accuracy"]) == pytest.approx(summary["balanced_accuracy"])
    top = report.levels[1].summary()["balanced_accuracy"]
    assert float(logged["val_level1_balanced_accuracy"]) == pytest.approx(top)
    assert float(logged["val_mistake_severity"]) == pytest.approx(summary["mistake_severity"])
    assert metrics.report.summary()["tail_recall"] == pytest.approx(summary["tail_recall"])
    assert str(curriculum.state_dict()) != str(before)  # validation recall reached the sampler


def test_a_missing_lightning_names_the_extra(monkeypatch):
    import builtins
    import sys

    real_import = builtins.__import__

    def no_lightning(name, *args, **kwargs):
        if name.split(".")[0] == "lightning":
            raise ImportError("No module named 'lightning'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lightning)
    monkeypatch.delitem(sys.modules, "longtail.integrations.lightning", raising=False)
    for name in [m for m in sys.modules if m.split(".")[0] == "lightning"]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"needs lightning: pip install 'longtail\[lightning\]'"):
        import longtail.integrations.lightning  # noqa: F401
