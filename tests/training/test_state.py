"""The one run state: 0-based inside, 1-based in files, converted in one place."""

from __future__ import annotations

from longtail.training.state import RunState, log_position


def test_the_run_state_converts_once_between_files_and_the_loop():
    state = RunState(stage=1, epoch=5)
    assert state.checkpoint_fields() == {"stage": 1, "epoch": 4}  # the last finished epoch
    again = RunState.from_checkpoint(state.checkpoint_fields())
    assert (again.stage, again.epoch, again.origin) == (1, 5, "resumed")
    state.finished_epoch(5)
    assert state.epoch == 6
    assert log_position({"epoch": 3, "stage": 2}) == (1, 2)
    assert log_position({"epoch": 1}) == (0, 0)  # rows of older logs have no stage
