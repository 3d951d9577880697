"""The fit loop: constructing it does no I/O and no collective; its one run state converts to
and from the files' 1-based numbering in one place; its listeners answer named events."""

import torch

from longtail.data.bundle import embedded_bundle
from longtail.training.config import TrainConfig
from longtail.training.state import RunState
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
