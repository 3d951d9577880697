"""longtail inside the tools practitioners use: timm backbones (the test extras install timm)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import quiet_trainer, write_splits, write_tree
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


def test_a_run_is_made_again_from_its_saved_config(tmp_path):
    from longtail.cli import main

    first = tmp_path / "first"
    argv = ["train", "--strategy", "weighted+ce:logit_adjust", "--epochs", "2", "--seed", "3"]
    argv += ["--lr", "0.002", "--augment", "none", "--last-epoch", "--no-progress"]
    assert main([*argv, "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert main(["train", "--config", str(first / "config.json"), "--out", str(again)]) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (first, again))
    assert a["test"]["summary"] == b["test"]["summary"]
    assert a["identity"] == b["identity"]
    assert b["config"]["seed"] == 3 and b["config"]["select_best"] is False


def test_a_toml_file_holds_every_option_and_the_command_line_wins(tmp_path, tree):
    from longtail.cli import main

    (tmp_path / "exp.toml").write_text(
        f'data = "{tree}"\n'
        'strategies = ["instance+ce", "sqrt+ce:crt[epochs=1]"]\n'
        "seeds = 1\nepochs = 3\nimage-size = 16\nbatch_size = 8\nworkers = 0\n"
        'augment = "aerial"\nno-progress = true\n'
    )
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(tmp_path / "exp.toml"), "--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["strategies"] == ["instance+ce", "sqrt+ce:crt[epochs=1]"]
    assert results["config"]["epochs"] == 1  # the command line over the file
    assert results["config"]["augment"] == "aerial" and results["config"]["batch_size"] == 8
    assert results["seeds"] == [0]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "epochs = 3\nepoch = 2\n",
            "train has no option 'epoch'; options: allow-outside, augment, batch-size",
        ),
        ('epochs = "ten"\n', "--epochs takes a number, got 'ten'"),
        ("epochs = 2.5\n", "--epochs takes an integer, got 2.5"),
        ('augment = "rotate"\n', "--augment must be one of standard, aerial, none"),
        ("last_epoch = 1\n", "last_epoch must be true or false"),
        ("epochs = [\n", "is not valid TOML"),
        ("epochs = inf\n", "--epochs takes a finite number, got inf"),
        ("epochs = nan\n", "--epochs takes a finite number, got nan"),
        ("seed = 1e300\n", "seed must be an integer >= 0"),
        ("seed = 0.5\n", "--seed takes an integer"),
        ("seed = 4611686018427387904\n", "seed must be an integer >= 0"),
        ("lr = inf\n", "--lr takes a finite number"),
    ],
)
def test_a_bad_config_file_is_refused_naming_the_problem(tmp_path, capsys, text, message):
    from longtail.cli import main

    path = tmp_path / "run.toml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "x")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "kind, use_distributed_sampler",
    [("weighted", "true"), ("weighted", "false"), ("balanced_batch", "false")],
)
def test_lightning_ddp_shards_a_longtail_sampler_once_and_advances_its_epochs(
    tmp_path, kind, use_distributed_sampler
):
    from helpers import torchrun
    from lightning_worker import LABELS, balanced_batches
    from longtail.sampling import WeightedSampler

    worker = Path(__file__).parent / "lightning_worker.py"
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


def test_accelerate_splits_a_global_longtail_plan_between_processes(tmp_path):
    from helpers import torchrun
    from lightning_worker import LABELS
    from longtail.sampling import WeightedSampler

    proc = torchrun(Path(__file__).parent / "accelerate_worker.py", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    plans = []
    for epoch in range(3):
        sampler = WeightedSampler(labels=LABELS, scheme="inverse", seed=7, num_replicas=1)
        sampler.set_epoch(epoch)
        plan = list(sampler)
        batches = [ranks[r][str(epoch)] for r in range(2)]
        assert len(batches[0]) == len(batches[1])  # as many steps on every process
        # batches alternate between the processes: together, in order, they are the plan (the
        # last one completed from the epoch's start, accelerate's even_batches)
        together = [i for pair in zip(*batches, strict=True) for batch in pair for i in batch]
        assert together[: len(plan)] == plan
        assert together[len(plan) :] == plan[: len(together) - len(plan)]
        plans.append(plan)
    assert plans[0] != plans[1] != plans[2]  # accelerate's set_epoch reached the sampler


@pytest.fixture
def million_aid(tmp_path):
    from helpers import MILLION_AID_LIKE

    root = tmp_path / "Million-AID"
    write_tree(root / "train", MILLION_AID_LIKE, size=12)
    write_tree(root / "test", {k: 2 for k in MILLION_AID_LIKE}, size=12, seed=1)
    return root


def test_torchgeo_million_aid_counts_levels_samplers_and_training(million_aid, tmp_path):
    from torchgeo.datasets import MillionAID

    from longtail.data.bundle import bundle_from_datasets
    from longtail.integrations.torchgeo import TorchGeoClassification
    from longtail.sampling import ClassBalancedSampler
    from longtail.training.loop import TrainConfig, train

    train_set = TorchGeoClassification(MillionAID(million_aid, split="train"))
    test_set = TorchGeoClassification(MillionAID(million_aid, split="test"))
    dist = train_set.distribution()
    counts = dict(zip(dist.class_names, dist.counts.tolist(), strict=True))
    assert counts == {"dry_field": 9, "paddy_field": 3, "grassland": 5, "lake": 2, "river": 6}
    assert dist.num_levels == 3
    top = dist.at_level(1)
    assert dict(zip(top.class_names, top.counts.tolist(), strict=True)) == {
        "agriculture_land": 17,
        "water_area": 8,
    }
    middle = dist.at_level(2)
    assert dict(zip(middle.class_names, middle.counts.tolist(), strict=True)) == {
        "arable_land": 12,
        "grassland": 5,
        "lake": 2,
        "river": 6,
    }
    # samplers read the labels from it; an item is (image, class index)
    sampler = ClassBalancedSampler(train_set, seed=0, num_samples=5000)
    drawn = np.bincount(train_set.targets[np.fromiter(sampler, dtype=np.int64)], minlength=5)
    assert np.abs(drawn / 5000 - 0.2).max() < 0.03  # 5 classes, equally often
    image, label = train_set[0]
    assert image.shape == (3, 12, 12) and image.dtype == torch.float32 and 0 <= image.min()
    assert label == train_set.targets[0]
    data = bundle_from_datasets(train_set, test_set, test_set, image_size=12, name="Million-AID")
    assert data.distribution.class_names == dist.class_names
    config = TrainConfig(strategy="class_balanced+focal", epochs=1, batch_size=4, num_workers=0)
    result = train(replace(config, progress=False), data, tmp_path / "run")
    assert result.config["augment"] == "dataset"  # torchgeo's own transforms, if any
    assert len(result.test.per_class) == 5
