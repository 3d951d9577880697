"""The longtail command: train and compare end to end from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from longtail.cli import main


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


def test_compare_from_the_shipped_backbone_learns_on_features(tmp_path, capsys):
    from longtail.experiments.comparison import Comparison

    out = tmp_path / "pre"
    argv = ["compare", "--model", "small_cnn", "--pretrained", "embedded", "--tune", "frozen"]
    argv += ["--lr", "0.01", "--strategies", "instance+ce", "--seeds", "1", "--epochs", "1"]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    comparison = Comparison.load(out / "results.json")
    assert comparison.config["tune"] == "frozen" and comparison.config["pretrained"] == "embedded"
    assert comparison.at_chance == []  # pretrained features: a head learns in one epoch
    identity = json.loads((out / "runs" / "instance+ce" / "seed0" / "config.json").read_text())
    assert identity["identity"]["data"]["features"]["pretrained_sha256"]
