"""Files that never half-exist and JSON that every parser accepts.

``atomic_write`` writes to a temporary file beside the target and renames it over the target, so
a crash or a full disk leaves the old file (and no temporary file) behind. ``to_json`` writes
strict JSON: nan and infinity become ``null``, numpy values plain numbers.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from longtail.errors import LongtailError

OUTPUT_MARKER = ".longtail-output"
"""A file in every folder longtail writes its results to; an index never reads such a folder
(so ``analyze DATA --out DATA/report`` does not count its own plots as a class)."""


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``. Anything else (a FIFO, a device, a socket, a
    folder) is refused without waiting on it, and so is a file over ``limit`` bytes."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file (a FIFO, device or folder)")
        if info.st_size > limit:
            raise OSError(f"{path} is {info.st_size:,} bytes, over the {limit:,} read here")
        return fh.read(limit)


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy values made plain, tuples made lists and non-finite floats made None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text (no NaN/Infinity tokens): non-finite numbers are written as null."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, flush it to disk and rename it over
    ``path``. On any failure the temporary file is removed and ``path`` is left as it was; an
    ``OSError`` (a full disk, say) is raised again naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            reason = err.strerror or str(err)
            raise OSError(
                err.errno, f"could not write {path}: {reason}; it was left as it was"
            ) from err
        raise


def write_text(path: str | Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    atomic_write(path, lambda fh: fh.write(text.encode()))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as strict, indented JSON."""
    write_text(path, to_json(obj) + "\n")


def strict_loads(text: str) -> Any:
    """Parse JSON, refusing the NaN/Infinity tokens that ``json.loads`` accepts by default."""

    def refuse(token: str) -> Any:
        raise LongtailError(f"invalid JSON number {token}")

    return json.loads(text, parse_constant=refuse)


__all__ = [
    "OUTPUT_MARKER",
    "atomic_write",
    "jsonable",
    "read_regular_file",
    "strict_loads",
    "to_json",
    "write_json",
    "write_text",
]
