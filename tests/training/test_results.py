"""Run records: strict JSON, typed fields, and a round trip through their files."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import QUIET, TINY, small_embedded, small_tree, write_tree
from longtail._io import strict_loads
from longtail.cli import main
from longtail.training.config import TrainConfig
from longtail.training.results import RunResult


def test_every_json_file_is_strict_json(tmp_path):
    root = small_tree(tmp_path / "d", {"a": 12, "b": 5})  # 2 classes: the medium group is empty
    out = tmp_path / "cmp"
    argv = ["compare", "--data", str(root), "--strategies", "instance+ce", "--seeds", "1"]
    assert main([*argv, *TINY, *QUIET, "--out", str(out)]) == 0
    assert main(["analyze", str(root), "--out", str(tmp_path / "an")]) == 0
    files = [*out.rglob("*.json"), *(tmp_path / "an").rglob("*.json")]
    assert {f.name for f in files} >= {
        "results.json",
        "metrics.json",
        "config.json",
        "distribution.json",
    }
    for f in files:
        strict_loads(f.read_text())  # raises on NaN / Infinity
    metrics = strict_loads((out / "runs" / "instance+ce" / "seed0" / "metrics.json").read_text())
    assert metrics["test"]["summary"]["medium_recall"] is None


def test_results_round_trip_through_the_files_they_are_written_to(tmp_path):
    from longtail.experiments.compare import run_compare
    from longtail.experiments.comparison import Comparison
    from longtail.training.results import Divergence

    data = small_embedded(10)  # every class keeps training images (a prior for logit_adjust)
    base = TrainConfig(epochs=1, batch_size=256, progress=False, augment="none")
    comparison = run_compare(data, ["instance+ce", "sqrt+ce:logit_adjust"], [0], base, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert Comparison.load(tmp_path / "results.json").to_dict() == saved == comparison.to_dict()
    run = tmp_path / "runs" / "sqrt+ce_logit_adjust" / "seed0" / "metrics.json"
    result = RunResult.load(run)
    assert result.to_dict() == json.loads(run.read_text())
    assert result.test is not None and result.test.recall.shape == (10,)
    assert result.chosen_taus == [result.stages[0]["tau"]]
    diverged = RunResult({"a": 1}, {"b": 2}, [], diverged=Divergence("nan loss", 2, 5))
    record = diverged.to_dict()
    assert set(record) == {"identity", "config", "history", "diverged"}
    assert record["diverged"] == {"epoch": 2, "step": 5, "message": "nan loss"}
    assert RunResult.from_dict(record) == diverged
    with pytest.raises(ValueError, match="unknown keys \\['extra'\\]"):
        RunResult.from_dict({**record, "extra": 1})
    with pytest.raises(ValueError, match="missing keys \\['metrics'\\]"):
        Comparison.from_dict({"baseline": "x", "strategies": []})


def test_run_files_of_the_wrong_shape_are_a_line(tmp_path, capsys):
    data = write_tree(tmp_path / "d", {"a": 12, "b": 6, "c": 5})
    out = tmp_path / "run"
    argv = ["train", *TINY, *QUIET, "--data", str(data), "--out", str(out)]
    assert main(argv) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["model"][next(iter(state["model"]))]  # one tensor missing, identity intact
    torch.save(state, out / "checkpoint.pt")
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt does not fit this run" in err and "Traceback" not in err
    config = tmp_path / "deep.json"
    config.write_text('{"lr": ' + "[" * 5000 + "]" * 5000 + "}")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "o2")]) == 2
    assert "nested" in capsys.readouterr().err
