"""Strategy strings: parsing, composition of stages, and errors that name the problem."""

from __future__ import annotations

import pytest

from longtail.cli import main
from longtail.strategies import parse_strategy


def test_strategy_parsing_and_errors(capsys):
    s = parse_strategy("weighted[scheme=smooth_inverse,alpha=500]+focal[gamma=1.5]")
    assert (s.sampler, s.sampler_params, s.loss, s.loss_params) == (
        "weighted",
        {"scheme": "smooth_inverse", "alpha": 500},
        "focal",
        {"gamma": 1.5},
    )
    assert parse_strategy("hybrid").loss == "ce" and parse_strategy("focal").sampler == "instance"
    with pytest.raises(ValueError, match="unknown sampler"):
        parse_strategy("smote+ce")
    with pytest.raises(ValueError, match="unknown loss"):
        parse_strategy("instance+dice")
    assert (
        main(
            [
                "compare",
                "--strategies",
                "instance+nope",
                "--seeds",
                "1",
                "--epochs",
                "1",
                "--out",
                "/tmp/never",
            ]
        )
        == 2
    )
    assert "unknown loss" in capsys.readouterr().err
