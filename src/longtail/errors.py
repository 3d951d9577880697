"""The errors longtail raises about what it was given, apart from its own bugs.

A :class:`LongtailError` says that the data, an option, a file or the machine is not as it must
be, names the problem and the fix in its message, and is printed by the command line as one line
(exit status 2; ``LONGTAIL_DEBUG=1`` adds its traceback). Any other exception is a bug, in
longtail or in a library under it: the command line shows its traceback and says so. The classes
subclass ``ValueError`` (and ``FileNotFoundError`` / ``OSError`` where they are about a file), so
code that caught those before still does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class LongtailError(ValueError):
    """Bad input: the message names the problem and what would be accepted."""


class MissingInputError(LongtailError, FileNotFoundError):
    """A data folder, manifest or file that was named does not exist."""


class OutputError(LongtailError, OSError):
    """longtail cannot write where it was asked to (a full disk, a planted link, no permission);
    ``errno`` is the operating system's error number, where there is one. Made from its message
    alone, as a DataLoader worker's error is made again in the main process."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno, self.strerror = code, message

    def __str__(self) -> str:
        return str(self.strerror)


def shorten(items: Iterable[Any], shown: int = 10) -> str:
    """``items`` as a comma-separated list of at most ``shown`` entries, then how many more:
    ``"a, b, c and 4,997 more"``; a message stays one readable line for any number of items."""
    items = [str(i) for i in items]
    head = ", ".join(items[:shown])
    return head if len(items) <= shown else f"{head} and {len(items) - shown:,} more"


__all__ = ["LongtailError", "MissingInputError", "OutputError", "shorten"]
