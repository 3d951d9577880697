"""Option files for ``longtail train --config`` and ``longtail compare --config``.

A TOML file holds the command-line options by their long names (``batch-size`` or
``batch_size``), e.g.::

    data = "/data/Million-AID"
    level = 1
    model = "resnet18"
    strategies = ["instance+ce", "class_balanced+focal", "sqrt+ce:crt"]
    epochs = 12
    augment = "aerial"

A JSON file may hold the same, or be a run's own ``config.json``: its settings and data source are
read back so that the run can be made again. Options given on the command line win over the file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from longtail._io import read_regular_file, strict_loads
from longtail.errors import LongtailError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EMBEDDED_SOURCE = "embedded Fashion-MNIST-LT"
MAX_BYTES = 1 << 20
"""The largest option file read (1 MiB): option files are a few lines."""


def read_options(path: str | Path, config_class: type | None = None) -> dict[str, Any]:
    """The options in the file at ``path`` as ``{option_dest: value}`` (dashes become
    underscores); a run's ``config.json`` is turned into the options that make that run, read
    through the settings of ``config_class`` (default
    :class:`~longtail.training.config.TrainConfig`)."""
    path = Path(path)
    if path.suffix.lower() not in (".toml", ".json"):
        raise LongtailError(f"--config {path}: give a .toml or .json file")
    try:
        text = read_regular_file(path, MAX_BYTES).decode("utf-8")
    except OSError as err:
        raise LongtailError(f"--config {path}: cannot read it ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise LongtailError(f"--config {path} is not UTF-8 text") from None
    try:
        if path.suffix.lower() == ".toml":
            raw: Any = tomllib.loads(text)
        else:
            raw = strict_loads(text)
    except (ValueError, RecursionError) as err:  # TOMLDecodeError and JSONDecodeError included
        raise LongtailError(
            f"--config {path} is not valid {path.suffix[1:].upper()}: {err}"
        ) from None
    if not isinstance(raw, dict):
        raise LongtailError(
            f"--config {path} must hold a table of options, not {type(raw).__name__}"
        )
    if isinstance(raw.get("identity"), dict) and isinstance(raw.get("config"), dict):
        return _saved_run(raw, config_class)
    return {str(k).replace("-", "_"): v for k, v in raw.items()}


def _saved_run(saved: dict[str, Any], config_class: type | None) -> dict[str, Any]:
    """Options that make again the run whose ``config.json`` is ``saved``."""
    from longtail.training.config import TrainConfig, option_names

    flags = option_names(config_class or TrainConfig)
    options: dict[str, Any] = {}
    for key, value in saved["config"].items():
        option, negated = flags.get(key, (key, False))
        options[option] = (not value) if negated and isinstance(value, bool) else value
    data = saved["identity"].get("data", {})
    source = data.get("source")
    if source != EMBEDDED_SOURCE:
        options["data"] = source
        options["image_size"] = data.get("image_size")
        options["level"] = data.get("level")
        options["split_seed"] = data.get("split_seed")
    return options


__all__ = [
    "EMBEDDED_SOURCE",
    "MAX_BYTES",
    "read_options",
]
