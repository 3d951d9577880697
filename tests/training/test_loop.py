"""The fit loop: a resumed run equals an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from longtail.data.bundle import embedded_bundle
from longtail.data.datasets import ArrayDataset
from longtail.data.fashion_mnist_lt import load_fashion_mnist_lt
from longtail.distribution import ClassDistribution
from longtail.training.loop import TrainConfig, train


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    data = embedded_bundle()
    tr = load_fashion_mnist_lt("train")
    data.train = ArrayDataset(tr.images[::10], tr.labels[::10], data.train.mean, data.train.std)
    data.distribution = ClassDistribution.from_labels(tr.labels[::10], class_names=tr.class_names)
    config = TrainConfig(strategy="curriculum+ldam_drw", epochs=3, batch_size=64, progress=False)
    full = train(config, data, tmp_path / "full")

    class Killed(Exception):
        pass

    def kill_after_second_epoch(epoch, row):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(config, data, tmp_path / "killed", on_epoch_end=kill_after_second_epoch)
    resumed = train(config, data, tmp_path / "killed", resume=True)
    assert resumed.epochs_run == 1
    assert resumed.test.summary == pytest.approx(full.test.summary)

    def without_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert without_time(resumed.history) == without_time(full.history)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(
        ValueError, match=r"other settings.*training.batch_size \(64 there, 128 now\)"
    ):
        train(
            TrainConfig(strategy="instance+ce", epochs=3, progress=False),
            data,
            tmp_path / "killed",
            resume=True,
        )
