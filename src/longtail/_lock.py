"""One process at a time per output folder: an advisory lock on ``FOLDER/.lock``.

The lock is taken with ``fcntl.flock`` (``msvcrt.locking`` on Windows) and released by the
operating system when its holder exits, even after a crash or SIGKILL, so it never goes stale.
The file records the holder's process id, host, command and start time for the error message.
Within one process the lock is re-entrant (``compare`` holds its folder while each run takes its
own).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from longtail._io import open_output
from longtail.errors import LongtailError

LOCK_NAME = ".lock"
_held: dict[Path, tuple[IO[str], int]] = {}


class FolderLocked(LongtailError):
    """Another process is writing into the same output folder."""


def _try_lock(fh: IO[str]) -> bool:
    try:
        if os.name == "nt":  # pragma: no cover - exercised on Windows only
            import msvcrt

            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if needed) for the ``with`` block, or raise
    :class:`FolderLocked` naming the process that holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _held:
        fh, depth = _held[key]
        _held[key] = (fh, depth + 1)
        try:
            yield folder
        finally:
            fh, depth = _held[key]
            _held[key] = (fh, depth - 1)
        return
    path = folder / LOCK_NAME
    fh = os.fdopen(open_output(path), "r+")  # a planted link is refused, never followed
    if not _try_lock(fh):
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise FolderLocked(
            f"{folder} is in use by {holder}; wait for it to finish, or pass another --out"
        )
    fh.seek(0)
    fh.truncate()
    command = " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])
    fh.write(
        f"process {os.getpid()} on {socket.gethostname()} "
        f"(`{command}`, since {time.strftime('%Y-%m-%d %H:%M:%S')})"
    )
    fh.flush()
    _held[key] = (fh, 1)
    try:
        yield folder
    finally:
        fh, depth = _held[key]
        if depth <= 1:
            del _held[key]
            fh.close()  # releases the lock
        else:
            _held[key] = (fh, depth - 1)


__all__ = [
    "LOCK_NAME",
    "folder_lock",
    "FolderLocked",
]
