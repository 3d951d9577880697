"""End to end: train on generated image folders (with a corrupt file), resume, DDP, compare."""

import csv
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from helpers import torchrun, write_tree
from longtail.cli import main
from longtail.data.bundle import embedded_bundle, folder_bundle
from longtail.data.datasets import ArrayDataset, FolderDataset, batch_collate
from longtail.data.decode import read_image
from longtail.data.fashion_mnist_lt import load_fashion_mnist_lt
from longtail.data.index import build_index
from longtail.data.loading import device_view
from longtail.distribution import ClassDistribution
from longtail.strategies import parse_strategy
from longtail.training.loop import TrainConfig, train

HERE = Path(__file__).parent
TREE = {"animals/cat": 24, "animals/dog": 12, "plants/tree": 8, "plants/flower": 6}


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    root = write_tree(tmp_path_factory.mktemp("imgs") / "data", TREE, size=20)
    (root / "animals" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root


def small_config(**kw):
    base = {
        "model": "small_cnn",
        "epochs": 2,
        "batch_size": 8,
        "num_workers": 0,
        "progress": False,
        "lr": 3e-3,
    }
    return TrainConfig(**{**base, **kw})


def test_train_end_to_end_with_corrupt_image(image_tree, tmp_path, caplog):
    bad_log = tmp_path / "bad.log"
    data = folder_bundle(image_tree, image_size=16, bad_image_log=bad_log)
    assert data.distribution.num_classes == 4 and data.distribution.num_levels == 2
    for part in (data.train, data.val, data.test):
        assert set(part.targets.tolist()) == {0, 1, 2, 3}  # stratified: every class everywhere
    out = tmp_path / "run"
    result = train(small_config(strategy="weighted+focal"), data, out)
    with open(out / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)
    assert set(result.test.summary) >= {"balanced_accuracy", "tail_recall", "head_f1", "ece"}
    assert json.loads((out / "metrics.json").read_text())["test"]["per_class"][0]["class"] == "cat"
    # the corrupt file was reported (path and reason), once, and did not stop training
    lines = bad_log.read_text().splitlines()
    assert len(lines) == len(set(lines)) >= 1 and "broken.jpg" in lines[0]
    assert "broken.jpg" in caplog.text


def test_hierarchy_level_as_label(image_tree):
    data = folder_bundle(image_tree, image_size=16, level=1)
    assert data.train.class_names == ["animals", "plants"]
    assert data.distribution.class_names == ("animals", "plants")
    assert data.distribution.counts.sum() == len(data.train)


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


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    from longtail.training import checkpoint

    path = tmp_path / "c.pt"
    checkpoint.save_atomic({"model": {"w": torch.ones(2)}}, path)
    real_save = torch.save

    def disk_full(obj, fh, *args, **kwargs):
        real_save(obj, fh)  # half a file reaches the disk, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(
        OSError, match="No space left on device.*previous checkpoint is intact.*--resume"
    ):
        checkpoint.save_atomic({"model": {"w": torch.zeros(2)}}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file keeps the disk full
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(2))  # the old one survives


def test_two_process_torchrun_training(image_tree, tmp_path):
    proc = torchrun(HERE / "ddp_train_worker.py", str(image_tree), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["world"] == 2
    assert ranks[0]["summary"] == ranks[1]["summary"]  # metrics reduced across ranks
    assert ranks[0]["stages"] == ranks[1]["stages"] == [1, 1, 2]  # and through the second stage
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "log.csv").exists()


def test_cli_compare_two_strategies_one_seed(tmp_path, monkeypatch):
    from longtail.report import plots

    drawn = {}
    real_save = plots._save

    def keep(fig, path):
        drawn[Path(path).name] = fig.axes[0].images[0].get_array() if fig.axes[0].images else None
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    out = tmp_path / "cmp"
    strategies = "instance+ce,weighted[scheme=sqrt_inverse]+focal[gamma=1],instance+ce:logit_adjust"
    argv = [
        "compare",
        "--strategies",
        strategies,
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    code = main(argv)
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["strategies"] == strategies.split(",")
    # the heat map's cells are the per-class recall changes of results.json, in points, with the
    # classes sorted by training count
    recall = {k: np.array(v, dtype=float) for k, v in results["per_class_recall"].items()}
    order = np.argsort(-np.array(results["class_counts"]), kind="stable")
    expected = [100 * (recall[s] - recall["instance+ce"])[order] for s in strategies.split(",")[1:]]
    cells = drawn["recall_change.png"]
    assert cells.shape == (2, 10)
    np.testing.assert_allclose(cells.filled(np.nan), np.array(expected), rtol=0, atol=1e-9)
    report = (out / "report.md").read_text()
    assert "recall_change.png" in report
    tau = results["chosen_tau"]["instance+ce:logit_adjust"][0]
    assert (
        f"Second stages chose tau on the validation split (by seed: instance+ce:logit_adjust {tau:g})"
        in report
    )
    bal = results["metrics"]["balanced_accuracy"]
    assert bal["instance+ce"]["delta_points"] == 0
    assert 0.3 < bal["instance+ce"]["mean"] <= 1
    for name in (
        "report.md",
        "results.csv",
        "comparison.md",
        "per_class_recall.png",
        "class_counts.png",
        "confusion_best.png",
    ):
        assert (out / name).stat().st_size > 0
    assert "tail recall" in (out / "report.md").read_text()
    # a second call reuses the finished runs
    mtime = (out / "runs" / "instance+ce" / "seed0" / "metrics.json").stat().st_mtime
    assert main(argv) == 0
    assert (out / "runs" / "instance+ce" / "seed0" / "metrics.json").stat().st_mtime == mtime


def test_cli_train_on_folder(image_tree, tmp_path, capsys):
    out = tmp_path / "t"
    assert (
        main(
            [
                "train",
                "--data",
                str(image_tree),
                "--image-size",
                "16",
                "--model",
                "small_cnn",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--workers",
                "0",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "metrics.json").exists()
    assert "unreadable image" in capsys.readouterr().err


def test_strategy_parsing_and_errors(capsys):
    s = parse_strategy("weighted[scheme=smooth_inverse,alpha=500]+focal[gamma=1.5]")
    assert (s.sampler, s.sampler_params, s.loss, s.loss_params) == (
        "weighted",
        {"scheme": "smooth_inverse", "alpha": 500},
        "focal",
        {"gamma": 1.5},
    )
    assert parse_strategy("hybrid").loss == "ce" and parse_strategy("focal").sampler == "instance"
    with pytest.raises(ValueError, match="unknown sampler"):
        parse_strategy("smote+ce")
    with pytest.raises(ValueError, match="unknown loss"):
        parse_strategy("instance+dice")
    assert (
        main(
            [
                "compare",
                "--strategies",
                "instance+nope",
                "--seeds",
                "1",
                "--epochs",
                "1",
                "--out",
                "/tmp/never",
            ]
        )
        == 2
    )
    assert "unknown loss" in capsys.readouterr().err


def test_folder_dataset_all_corrupt_class_fails_clearly(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 2})
    (tmp_path / "d" / "b").mkdir()
    (tmp_path / "d" / "b" / "x.jpg").write_bytes(b"junk")
    ds = FolderDataset(build_index(root), image_size=8)
    with pytest.raises(ValueError, match="every image of class 'b' is unreadable"):
        ds[2]


def test_folder_dataset_replaces_an_image_pillow_refuses_as_too_large(tmp_path, monkeypatch):
    from PIL import Image

    root = write_tree(tmp_path / "d", {"a": 2}, size=10)
    Image.new("RGB", (40, 40), (255, 0, 0)).save(root / "a" / "0_huge.jpg")
    ds = FolderDataset(build_index(root), image_size=8, bad_image_log=tmp_path / "bad.log")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 40x40 is over twice the limit
    x, y = ds[0]
    assert x.shape == (3, 8, 8) and y == 0
    assert "0_huge.jpg" in (tmp_path / "bad.log").read_text()
    assert "DecompressionBombError" in (tmp_path / "bad.log").read_text()


def test_folder_dataset_normalises_and_batches_like_single_items(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2}, size=30)
    ds = FolderDataset(build_index(root), image_size=16, resize_size=20)
    raw = read_image(ds.index.filepath(0), 16, 20)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (raw.float() / 255 - mean[:, None, None]) / std[:, None, None]
    x, y = ds[0]
    torch.testing.assert_close(x, expected)
    xb, yb = ds.batch([0, 4])
    torch.testing.assert_close(xb[0], expected)
    assert yb.tolist() == [0, 1]
    # through DataLoader workers (batches built in shared memory): the same tensors
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=batch_collate)
    torch.testing.assert_close(next(iter(loader))[0], ds.batch([0, 1])[0])
    # a plain DataLoader (torch's default collate) gives the same batches
    x_plain, y_plain = next(iter(DataLoader(ds, batch_size=2)))
    torch.testing.assert_close(x_plain, ds.batch([0, 1])[0])
    assert y_plain.tolist() == [0, 0]


def test_folder_dataset_feeds_uint8_normalised_on_the_device(tmp_path):
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2}, size=30)
    index = build_index(root)
    expected = FolderDataset(index, image_size=16).batch([1, 3])[0]
    for device in ("cuda", "cpu"):  # only the device's type is read
        ds = FolderDataset(index, image_size=16)
        view, finish = device_view(Subset(ds, [1, 3]), torch.device(device))
        assert isinstance(view, Subset) and view.indices == [1, 3]
        xb, _ = view.dataset.batch([1, 3])
        assert xb.dtype == torch.uint8 and view[0][0].dtype == torch.uint8
        assert ds.normalize and ds[1][0].dtype == torch.float32  # the dataset given is unchanged
        torch.testing.assert_close(finish(xb), expected)  # the step that runs on the device
    with pytest.raises(TypeError, match="uint8"):
        ds.normalize_batch(expected)


def test_train_on_torchvision_image_folder(tmp_path):
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    from longtail.data.bundle import bundle_from_datasets

    root = write_tree(tmp_path / "tv", {"a": 12, "b": 4, "c": 2}, size=20)
    tf = transforms.Compose(
        [transforms.Resize(16), transforms.CenterCrop(16), transforms.ToTensor()]
    )
    ds = ImageFolder(str(root), transform=tf)
    data = bundle_from_datasets(ds, ds, ds, image_size=16)
    assert data.distribution.class_names == ("a", "b", "c")
    assert data.distribution.counts.tolist() == [12, 4, 2]
    result = train(
        small_config(strategy="class_balanced+balanced_softmax", num_workers=0),
        data,
        tmp_path / "run",
    )
    assert result.test.per_class[2]["class"] == "c" and result.test.per_class[2]["support"] == 2
    with pytest.raises(ValueError, match="targets"):
        bundle_from_datasets(ds, torch.utils.data.TensorDataset(torch.zeros(2)))


def test_array_dataset_batches_with_either_collate():
    images = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    ds = ArrayDataset(images, np.array([0, 1, 0, 2, 1]), mean=[0.0], std=[1.0])
    whole = next(iter(DataLoader(ds, batch_size=3, collate_fn=batch_collate)))
    plain = next(iter(DataLoader(ds, batch_size=3)))
    for x, y in (whole, plain):
        assert x.shape == (3, 1, 4, 4) and y.tolist() == [0, 1, 0]
        torch.testing.assert_close(x[:, 0], torch.from_numpy(images[:3]).float() / 255)
