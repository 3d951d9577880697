"""Checkpoints that load without running code, written atomically.

A checkpoint holds only tensors and plain values (numbers, strings, lists, dicts), so it loads with
``torch.load(..., weights_only=True)``: a crafted file cannot execute anything. It is written to a
temporary file in the same folder and renamed over the target, so a crash or a full disk leaves
the previous checkpoint intact and no temporary file behind.
"""

from __future__ import annotations

import errno
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from longtail._io import atomic_write
from longtail.errors import LongtailError, OutputError


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` ``state`` to ``path``: either the old file or the new one, never half."""
    try:
        atomic_write(path, lambda fh: torch.save(state, fh))
    except (OSError, RuntimeError) as err:  # torch's writer reports a full disk as RuntimeError
        reason = err.strerror if isinstance(err, OSError) else _first_line(err)
        raise OutputError(
            f"could not write {path} ({reason}; is the disk full?). The previous checkpoint is "
            "intact: free some space and run the same command again with --resume",
            getattr(err, "errno", None) or errno.ENOSPC,
        ) from err


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; anything but tensors and plain values is
    refused with a ``ValueError`` before it can run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, OSError) as err:
        raise LongtailError(
            f"{path} is damaged or not a longtail checkpoint that loads safely (only tensors and "
            f"plain values are accepted; {_first_line(err)}). Delete it, or pass another --out, "
            "to start afresh"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise LongtailError(f"{path} is not a longtail checkpoint (no model state); delete it")
    return state


@contextmanager
def restoring(path: str | Path) -> Iterator[None]:
    """Restore state read from the checkpoint at ``path`` inside the ``with`` block: a file of
    the run's identity that still does not fit (a tensor missing or of another shape, a field
    absent or of another kind) is a :class:`~longtail.errors.LongtailError` naming it, not
    torch's multi-line message."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        if isinstance(err, LongtailError):
            raise
        raise LongtailError(
            f"{path} does not fit this run ({type(err).__name__}: {_first_line(err)}); it is "
            "damaged or was changed: delete it, or pass another --out, to start afresh"
        ) from err


__all__ = [
    "load",
    "restoring",
    "save_atomic",
]
