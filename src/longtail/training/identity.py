"""A run's identity: everything that defines its result, and nothing that does not.

A finished run is reused, and a checkpoint resumed, only when the identity saved with it equals
the one asked for; otherwise the mismatch is refused, naming the fields that differ. The identity
holds the data's fingerprint (source, split settings, class names, per-split counts and a digest
of each split's labels and files) and every
training setting; how the run is executed (device string, DataLoader workers, progress bars) is
left out, so changing those never discards or blocks a finished run.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from longtail._io import jsonable, read_json
from longtail.errors import LongtailError
from longtail.training.config import execution_fields
from longtail.training.models import weights_digest

MAX_CONFIG_BYTES = 1 << 24
"""The largest ``config.json`` read (16 MiB)."""


class RunMismatch(LongtailError):
    """The output folder holds a run of another identity."""


def run_identity(config: Any, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The identity of training ``config`` (a dataclass) on data with ``fingerprint``, with the
    digest of the weights file it starts from."""
    execution = execution_fields(type(config))
    settings = {k: v for k, v in asdict(config).items() if k not in execution}
    digest = weights_digest(getattr(config, "pretrained", None))
    if digest is not None:
        settings["pretrained_sha256"] = digest
    return jsonable({"data": fingerprint, "training": settings})


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def differences(saved: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """The fields (dotted paths) whose values differ, with both values."""
    if not isinstance(saved, dict):
        return ["identity (none recorded: written by another version of longtail)"]
    a, b = _flatten(saved), _flatten(wanted)
    out = []
    for key in sorted(set(a) | set(b), key=lambda k: (".content." in k, k)):  # digests last
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            old, new = _short(a.get(key, "<absent>")), _short(b.get(key, "<absent>"))
            out.append(f"{key} ({old} there, {new} now)")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_identity(saved: dict[str, Any] | None, wanted: dict[str, Any], where: Path) -> None:
    """Raise :class:`RunMismatch` unless ``saved`` equals ``wanted``."""
    diff = differences(saved, wanted)
    if diff:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise RunMismatch(
            f"{where} holds a run with other settings, which would be mixed with this one: {shown}. "
            "Pass another --out (or delete that folder) to start afresh"
        )


def saved_identity(run_dir: Path, name: str = "config.json") -> dict[str, Any] | None:
    """The identity recorded in ``run_dir/name``, or None when there is none."""
    path = run_dir / name
    if not path.exists():
        return None
    try:
        record = read_json(path, MAX_CONFIG_BYTES, "the run's settings")
    except LongtailError:
        return {"unreadable": str(path)}
    return record.get("identity") if isinstance(record, dict) else None


__all__ = [
    "check_identity",
    "differences",
    "run_identity",
    "RunMismatch",
    "saved_identity",
]
