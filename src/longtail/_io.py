"""Files that never half-exist and JSON that every parser accepts.

``atomic_write`` writes to a temporary file beside the target and renames it over the target, so
a crash or a full disk leaves the old file (and no temporary file) behind. ``to_json`` writes
strict JSON: nan and infinity become ``null``, numpy values plain numbers.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from longtail._text import printable
from longtail.errors import LongtailError, OutputError

OUTPUT_MARKER = ".longtail-output"
"""A file in every folder longtail writes its results to; an index never reads such a folder
(so ``analyze DATA --out DATA/report`` does not count its own plots as a class)."""


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``. Anything else (a FIFO, a device, a socket, a
    folder) is refused without waiting on it, and so is a file over ``limit`` bytes. The buffer
    is the file's size (``fstat``), not ``limit``; a file that grows while it is read is read up
    to ``limit``."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:  # buffered: read(n) returns n bytes unless at the end
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file (a FIFO, device or folder)")
        if info.st_size > limit:
            raise OSError(f"{path} is {info.st_size:,} bytes, over the {limit:,} read here")
        data = fh.read(info.st_size + 1)  # one byte more: did it grow?
        if len(data) > info.st_size:
            data += fh.read(limit + 1 - len(data))
            if len(data) > limit:
                raise OSError(f"{path} grew over the {limit:,} bytes read here while it was read")
        return data


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


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _refuse_link(path: Path, err: OSError) -> OutputError:
    return OutputError(
        f"{path} is a link (or not a file longtail made); longtail writes its own files only, "
        "never through a link: remove it, or pass another --out",
        err.errno,
    )


def open_output(path: str | Path, flags: int = os.O_RDWR) -> int:
    """A file descriptor of longtail's own file at ``path`` (created if needed, never truncated
    here), opened without following a link: a symbolic link, a hard link (a second name of
    another file) or anything but a regular file at ``path`` is refused with
    :class:`~longtail.errors.OutputError`. The caller closes it."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_CREAT | _NOFOLLOW, 0o666)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK, errno.EISDIR) or path.is_symlink():
            raise _refuse_link(path, err) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise _refuse_link(path, OSError(errno.EEXIST, "not a single regular file"))
    return fd


def refuse_links_below(top: str | Path, path: str | Path) -> Path:
    """``path``, a folder inside the output folder ``top``, when no folder on the way below
    ``top`` is a link (a planted link would send longtail's files elsewhere); ``top`` itself
    may be one: the user named it. Returns ``path``."""
    current = Path(top)
    for name in Path(path).relative_to(top).parts:
        current = current / name
        if current.is_symlink():
            raise _refuse_link(current, OSError(errno.ELOOP, "a link"))
    return current


def output_folder(top: str | Path, path: str | Path) -> Path:
    """:func:`refuse_links_below`, then ``path`` created if needed."""
    folder = refuse_links_below(top, path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a new temporary file beside ``path`` (a fresh random name, opened
    with ``O_EXCL`` and ``O_NOFOLLOW``: nothing planted there is followed or reused), flush it
    to disk and rename it over ``path`` (a link at ``path`` is replaced, not followed). On any
    failure the temporary file is removed and ``path`` is left as it was; an ``OSError`` (a full
    disk, say) is raised again as :class:`~longtail.errors.OutputError` naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        if hasattr(os, "fchmod"):  # mkstemp's 0600 -> what open() would have made
            os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            reason = err.strerror or str(err)
            raise OutputError(
                f"could not write {path}: {reason}; it was left as it was", err.errno
            ) from err
        raise


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()
"""The process's umask, read once at import (reading it sets it, which other threads would see)."""


def write_text(path: str | Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8; a name's undecodable bytes as U+FFFD)."""
    atomic_write(path, lambda fh: fh.write(printable(text).encode()))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as strict, indented JSON."""
    write_text(path, to_json(obj) + "\n")


MAX_JSON_DEPTH = 64
"""The deepest nesting of objects and arrays a JSON file read here may have (longtail writes
at most 8)."""
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` in JSON ``text`` (brackets in strings not counted),
    found without recursion."""
    codes = np.frombuffer(_STRING.sub('""', text).encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
    step -= np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def strict_loads(text: str) -> Any:
    """Parse JSON, refusing what ``json.loads`` accepts by default but no file of longtail's
    holds: the NaN/Infinity tokens, a key repeated in one object (the last would win in
    silence), and nesting deeper than :data:`MAX_JSON_DEPTH` (which would end in a
    ``RecursionError``). Each is a :class:`~longtail.errors.LongtailError`."""

    def refuse(token: str) -> Any:
        raise LongtailError(f"invalid JSON number {token}")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise LongtailError(f"the key {key!r} is given twice in one JSON object")
            seen.add(key)
        return dict(pairs)

    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise LongtailError(f"JSON nested {depth} deep, over the {MAX_JSON_DEPTH} read here")
    try:
        return json.loads(text, parse_constant=refuse, object_pairs_hook=unique)
    except json.JSONDecodeError as err:
        raise LongtailError(f"not valid JSON: {err}") from None


def read_json(path: str | Path, limit: int, what: str) -> Any:
    """:func:`strict_loads` of the regular UTF-8 file at ``path`` of at most ``limit`` bytes;
    any problem is a :class:`~longtail.errors.LongtailError` naming ``what`` and ``path``."""
    try:
        return strict_loads(read_regular_file(path, limit).decode("utf-8"))
    except (LongtailError, OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise LongtailError(f"{what} {path} cannot be read: {reason}") from None


__all__ = [
    "OUTPUT_MARKER",
    "atomic_write",
    "json_depth",
    "MAX_JSON_DEPTH",
    "open_output",
    "UMASK",
    "read_json",
    "output_folder",
    "refuse_links_below",
    "jsonable",
    "read_regular_file",
    "strict_loads",
    "to_json",
    "write_json",
    "write_text",
]
