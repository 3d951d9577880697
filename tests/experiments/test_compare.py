"""The compare command's orchestration: finished runs reused only when their identity matches."""

from __future__ import annotations

from helpers import QUIET, TINY, small_tree
from longtail.cli import main


def test_compare_refuses_to_reuse_runs_of_other_data(tmp_path, capsys):
    a = small_tree(tmp_path / "A", {"x": 12, "y": 6, "z": 5})
    b = small_tree(tmp_path / "B", {"x": 12, "y": 9, "z": 5}, seed=1)
    out = tmp_path / "cmp"
    argv = ["compare", "--strategies", "instance+ce", "--seeds", "1", *TINY, *QUIET]
    assert main([*argv, "--data", str(a), "--out", str(out)]) == 0
    first = (out / "runs" / "instance+ce" / "seed0" / "metrics.json").read_text()
    capsys.readouterr()
    assert main([*argv, "--data", str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "data.counts.train" in err and "data.source" in err
    assert (out / "runs" / "instance+ce" / "seed0" / "metrics.json").read_text() == first
    # how the run is executed is not part of its identity: a finished run is reused
    assert main([*argv[:-3], "--workers", "1", "--data", str(a), "--out", str(out)]) == 0
    assert "(reused)" in capsys.readouterr().out
