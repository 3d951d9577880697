"""The fit loop: constructing it does no I/O and no collective; its one run state converts to
and from the files' 1-based numbering in one place; its listeners answer named events."""

import torch

from longtail.data.bundle import embedded_bundle
from longtail.training.config import TrainConfig
from longtail.training.events import Listener
from longtail.training.state import RunState, log_position
from longtail.training.trainer import Trainer


def test_constructing_the_loop_touches_no_file_and_no_process_group(tmp_path, monkeypatch):
    forbidden = tmp_path / "read-only"
    forbidden.mkdir()
    forbidden.chmod(0o500)
    joined = []
    monkeypatch.setattr(
        "longtail.training.trainer.join_process_group", lambda: joined.append(1) or (0, 1)
    )
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: joined.append(2))
    data = embedded_bundle()
    loop = Trainer(TrainConfig(epochs=1), data, forbidden / "run", resume=True)
    assert joined == [] and not (forbidden / "run").exists()
    assert loop.state == RunState(0, 0, "fresh") and loop.history == []


def test_the_run_state_converts_once_between_files_and_the_loop():
    state = RunState(stage=1, epoch=5)
    assert state.checkpoint_fields() == {"stage": 1, "epoch": 4}  # the last finished epoch
    again = RunState.from_checkpoint(state.checkpoint_fields())
    assert (again.stage, again.epoch, again.origin) == (1, 5, "resumed")
    state.finished_epoch(5)
    assert state.epoch == 6
    assert log_position({"epoch": 3, "stage": 2}) == (1, 2)
    assert log_position({"epoch": 1}) == (0, 0)  # rows of older logs have no stage


def test_listeners_hear_every_event_in_order(tmp_path):
    heard = []

    class Ear(Listener):
        def __getattribute__(self, name):
            if name in ("stage_start", "epoch_start", "epoch_end", "run_start", "run_end"):
                heard.append(name)
            return object.__getattribute__(self, name)

    loop = Trainer(
        TrainConfig(strategy="instance+ce:crt[epochs=1]", epochs=1, progress=False, num_workers=0),
        embedded_bundle(),
        tmp_path / "run",
    )
    setup = loop._setup

    def with_ear():
        setup()
        loop.listeners.append(Ear())

    loop._setup = with_ear
    result = loop.run()
    assert result.test is not None
    assert heard == [
        "run_start",
        "epoch_start",
        "epoch_end",
        "stage_start",
        "epoch_start",
        "epoch_end",
        "run_end",
    ]
