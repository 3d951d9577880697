"""A comparison as a graph of trainings: rows, their settings, and what rows share."""

from __future__ import annotations

import re

import pytest

from longtail.experiments.plan import parse_row


def test_a_row_reads_its_own_settings_typed_and_refuses_what_rows_share():
    row = parse_row("sqrt+ce:crt@mix=remix[alpha=0.2]@lr=0.002@select_best=false")
    assert row.strategy.label == "sqrt+ce:crt" and row.strategy.stage == "crt"
    assert row.recipe == (("mix", "remix[alpha=0.2]"), ("lr", 0.002), ("select_best", False))
    assert row.label == "sqrt+ce:crt@mix=remix[alpha=0.2]@lr=0.002@select_best=false"
    assert parse_row("instance+ce").recipe == ()
    readme = parse_row("instance+balanced_softmax@optimizer=sam[rho=0.1,base=adamw]@lr=0.002")
    assert readme.recipe == (("optimizer", "sam[rho=0.1,base=adamw]"), ("lr", 0.002))
    refused = {
        "instance+ce@epochs=3": "every row of a comparison shares it",
        "instance+ce@model=small_cnn": "every row of a comparison shares it",
        "instance+ce@target_prior=train": "every row of a comparison shares it",
        "instance+ce@colour=red": "cannot set 'colour'; it may set backbone_lr_scale, batch_size",
        "instance+ce@lr=fast": "lr must be a number, got 'fast'",
        "instance+ce@batch_size=0": "batch_size must be an integer >= 1",
        "instance+ce@mix=blend": "mix must be one of none, mixup, cutmix, remix",
        "instance+ce@lr=0.1@lr=0.2": "sets lr twice",
        "instance+ce@lr": "write a row's setting as @name=value",
        "nosuch+ce@lr=0.1": "unknown sampler",
        "@lr=0.1": "a row starts with its strategy",
    }
    for text, message in refused.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_row(text)
