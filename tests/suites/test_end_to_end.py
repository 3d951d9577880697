"""End to end: train on generated image folders (with a corrupt file), resume, DDP, compare."""

import csv
import json

import numpy as np

from helpers import WORKERS, small_config, torchrun
from longtail.data.bundle import folder_bundle
from longtail.training.loop import train


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


def test_two_process_torchrun_training(image_tree, tmp_path):
    proc = torchrun(WORKERS / "ddp_train_worker.py", str(image_tree), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["world"] == 2
    assert ranks[0]["summary"] == ranks[1]["summary"]  # metrics reduced across ranks
    assert ranks[0]["stages"] == ranks[1]["stages"] == [1, 1, 2]  # and through the second stage
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "log.csv").exists()
