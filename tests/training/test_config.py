"""TrainConfig: an option declared once reaches help, option files, config.json and the identity; bounds named with their flag."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from longtail.data.bundle import embedded_bundle
from longtail.errors import LongtailError
from longtail.training.config import TrainConfig, option
from longtail.training.identity import run_identity


@dataclass
class EmaConfig(TrainConfig):
    """A config with one more setting, declared only here."""

    ema_decay: float = option(0.0, "decay of an exponential moving average", "--ema-decay")


def test_an_option_declared_once_reaches_help_option_files_config_and_identity(tmp_path):
    from longtail.cli import _apply_config_file, _config, build_parser

    parser = build_parser(EmaConfig)
    assert "--ema-decay" in parser.commands["train"].format_help()
    assert "--ema-decay" in parser.commands["compare"].format_help()
    args = parser.parse_args(["train", "--ema-decay", "0.5"])
    config = _config(args, "instance+ce", 3)
    assert isinstance(config, EmaConfig) and config.ema_decay == 0.5 and config.seed == 3
    (tmp_path / "opts.toml").write_text("ema-decay = 0.25\n")
    _apply_config_file(parser, "train", tmp_path / "opts.toml")
    assert _config(parser.parse_args(["train"]), "instance+ce", 0).ema_decay == 0.25
    with pytest.raises(ValueError, match="ema_decay must be a finite number"):
        EmaConfig(ema_decay=float("nan"))
    fingerprint = embedded_bundle().fingerprint()
    assert run_identity(config, fingerprint)["training"]["ema_decay"] == 0.5
    assert "ema_decay" not in run_identity(TrainConfig(), fingerprint)["training"]


def test_float_settings_are_bounded_where_torch_stores_them():
    for name in ("lr", "momentum", "weight_decay"):
        with pytest.raises(LongtailError, match=rf"{name} must be .*float32.*--"):
            TrainConfig(**{name: 1e39})
    TrainConfig(lr=3e38)
