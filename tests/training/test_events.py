"""The loop's listeners: the plain log line, and every event heard in order."""

from __future__ import annotations

from helpers import run_cli
from longtail.data.bundle import embedded_bundle
from longtail.training.config import TrainConfig
from longtail.training.events import Listener
from longtail.training.trainer import Trainer


def test_without_a_terminal_train_logs_a_plain_line_per_epoch(tmp_path, capsys):
    argv = ["train", "--epochs", "2", "--workers", "0", "--out", tmp_path / "run"]
    code, printed, _ = run_cli(argv, capsys)
    assert code == 0
    lines = [line for line in printed.splitlines() if " epoch " in line and "left" in line]
    assert [line.split(":")[0] for line in lines] == [
        "instance+ce epoch 1/2",
        "instance+ce epoch 2/2",
    ]
    assert "val balanced accuracy" in lines[0] and "about" in lines[0]
    assert "(baseline)" not in printed and "seeds" not in printed  # one run, no comparison


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
