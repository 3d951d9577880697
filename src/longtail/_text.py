"""User-controlled text (class names, paths, labels) made safe for each place it is shown.

One function per sink, so that a name is data wherever it lands:

- :func:`terminal_text`: control characters (escape sequences that clear the screen or set a
  window title, carriage returns, ...) shown as ``\\x1b``-style escapes;
- :func:`markdown_text`: Markdown and HTML syntax characters backslash-escaped or written as
  entities, so a name never becomes a link, an image, emphasis, a tag or a table column;
- :func:`console_text`: :func:`terminal_text` with rich's markup escaped;
- plots draw their text with matplotlib's mathtext off (:mod:`longtail.report.plots`), and
  show names through :func:`terminal_text`.

Names that are not valid UTF-8 (a folder name's undecodable bytes, kept by ``os.fsdecode`` as
surrogates) are shown with U+FFFD replacement characters by every one of them.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_MARKDOWN = re.compile(r"([\\`*\[\]|])")


def printable(text: Any) -> str:
    """``text`` as a string whose undecodable bytes (surrogates) are U+FFFD."""
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # a file name's undecodable bytes, as os.fsdecode keeps them
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # any other lone surrogate
        return text.encode("utf-8", "replace").decode("utf-8")


def terminal_text(text: Any) -> str:
    """``text`` with control characters (C0, C1, DEL, bidirectional overrides) shown escaped;
    tabs and line breaks are kept."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), printable(text))


def markdown_text(text: Any) -> str:
    """``text`` shown literally in Markdown rendered to HTML: the characters that start a link,
    an image, emphasis, a code span or a table column (``[ ] * ` | \\``) backslash-escaped and
    ``<``, ``>``, ``&`` as entities (no tag, no autolink); control characters escaped as in a
    terminal; a line break as ``\\n``."""
    lines = re.split(r"\r\n|\r|\n", printable(text))
    return "\\n".join(_markdown_line(terminal_text(line)) for line in lines)


def _markdown_line(text: str) -> str:
    text = _MARKDOWN.sub(r"\\\1", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def console_text(text: Any) -> str:
    """:func:`terminal_text` with rich's markup escaped, for ``Console.print`` and rich tables."""
    return escape(terminal_text(text))


__all__ = [
    "console_text",
    "markdown_text",
    "printable",
    "terminal_text",
]
