"""What a comparison writes: each seed's value in both result files, and small test classes flagged beside the numbers they move."""

from __future__ import annotations

from longtail.experiments.comparison import Comparison
from longtail.metrics import (
    compare_runs,
)
from longtail.report.tables import csv_table


def test_each_seed_value_is_kept_in_both_result_files():
    runs = {"ce": [{"tail_recall": 0.40}, {"tail_recall": 0.44}], "focal": [{"tail_recall": 0.6}]}
    comparison = Comparison.from_table(compare_runs(runs, metrics=("tail_recall",)))
    assert comparison.metrics["tail_recall"]["ce"].values == [0.40, 0.44]
    assert Comparison.from_dict(comparison.to_dict()) == comparison
    assert "leaf,tail_recall,ce,0.420000,0.020000,2,0.000,0.400000;0.440000" in csv_table(
        comparison
    )


def test_classes_with_too_few_test_images_are_flagged_beside_the_numbers_they_move(
    tmp_path, capsys
):
    from helpers import write_tree
    from longtail.cli import main

    counts = {"train/a": 20, "train/b": 12, "train/c": 6, "val/a": 3, "val/b": 3, "val/c": 3}
    counts |= {"test/a": 6, "test/b": 6, "test/c": 1}  # c: one test image
    root = write_tree(tmp_path / "data", counts, size=8)
    out = tmp_path / "out"
    argv = ["compare", "--data", root, "--strategies", "instance+ce", "--seeds", "1", "--epochs"]
    argv += ["1", "--image-size", "8", "--model", "small_cnn", "--workers", "0", "--no-progress"]
    assert main([str(a) for a in [*argv, "--out", out]]) == 0
    assert "fewer than 5 test images: c (1)" in capsys.readouterr().out.replace("\n", " ")
    comparison = Comparison.load(out / "results.json")
    assert comparison.small_test == {"c": 1} and comparison.small_test_groups == ["tail"]
    header = (out / "comparison.md").read_text().splitlines()[0]
    assert "tail R†" in header and "bal acc†" in header and "head R |" in header
    assert "fewer than 5 test images: c (1)" in (out / "report.md").read_text()
