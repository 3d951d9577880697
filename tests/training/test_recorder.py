"""The run folder: what a recorder writes, what it reads back, and the runs it refuses to mix."""

from __future__ import annotations

import csv

import pytest
import torch

from longtail.training.identity import RunMismatch
from longtail.training.recorder import BEST, CHECKPOINT, LOG_FIELDS, RunRecorder

IDENTITY = {"strategy": "instance+ce", "seed": 0}


def _row(epoch: int, **extra: float) -> dict[str, float]:
    return {**dict.fromkeys(LOG_FIELDS, 0.5), "epoch": epoch, **extra}


def test_a_run_folder_round_trips_its_checkpoint_best_weights_and_log(tmp_path):
    with RunRecorder(tmp_path, IDENTITY, {"lr": 0.1}, writes=True, world=1) as recorder:
        recorder.check_folder()
        recorder.start()
        assert recorder.saved_checkpoint() is None
        recorder.checkpoint({"model": {"w": torch.arange(3.0)}, "history": []})
        recorder.save_best(4, {"w": torch.ones(2)})
        recorder.epoch_done([_row(1), _row(2, val_target_accuracy=0.7)])
        saved = recorder.saved_checkpoint()
    assert saved["identity"] == IDENTITY and saved["config"] == {"lr": 0.1}
    torch.testing.assert_close(saved["model"]["w"], torch.arange(3.0))
    torch.testing.assert_close(recorder.best_weights()["w"], torch.ones(2))
    with (tmp_path / "log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["val_target_accuracy"] == "0.7"
    assert list(rows[0])[: len(LOG_FIELDS)] == LOG_FIELDS


def test_a_folder_of_another_run_is_refused_naming_the_field(tmp_path):
    RunRecorder(tmp_path, IDENTITY, {}, writes=True, world=1).start()
    other = RunRecorder(tmp_path, {**IDENTITY, "seed": 1}, {}, writes=True, world=1)
    with pytest.raises(RunMismatch, match="seed"):
        other.check_folder()


def test_a_process_that_does_not_write_leaves_the_folder_alone(tmp_path):
    reader = RunRecorder(tmp_path, IDENTITY, {}, writes=False, world=1)
    reader.start()
    reader.checkpoint({"model": {}})
    reader.save_best(0, {})
    reader.epoch_done([_row(1)])
    assert not any(tmp_path.iterdir())
    assert not (tmp_path / CHECKPOINT).exists() and not (tmp_path / BEST).exists()
