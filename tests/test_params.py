"""Parameters declared once: kinds and ranges checked before any data loads."""

from __future__ import annotations

import re

import pytest

from longtail.cli import main


@pytest.mark.parametrize(
    "row, message",
    [
        ("hybrid[under_ratio=2]+ce", r"under_ratio must be a finite number in \(0, 1\]"),
        ("weighted+ce@mix=remix[alpha=-1]", "alpha must be a finite number > 0"),
        ("weighted+ce@optimizer=sam[rho=-1]", "rho must be a finite number > 0"),
        ("balanced_batch[samples_per_class=0]+ce", "samples_per_class must be an integer >= 1"),
    ],
)
def test_parameter_ranges_are_checked_before_any_data_loads(tmp_path, capsys, row, message):
    missing = tmp_path / "no-such-data"  # loading it would fail with another message
    argv = ["compare", "--data", str(missing), "--strategies", row, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "does not exist" not in err
