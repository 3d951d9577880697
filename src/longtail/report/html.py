"""``report.html``: the comparison report as one self-contained page, to share or open anywhere.

The page is ``report.md`` rendered by Python-Markdown (tables extension), with every plot it
shows embedded as a ``data:`` URI and a small inline stylesheet: no network access, no file
beside it, nothing executed. Text from the data (class names, paths) is escaped before it reaches
the Markdown, and no link but http(s) and in-page ones survives the rendering.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

from longtail._text import terminal_text
from longtail.errors import LongtailError

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 12px; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr:nth-child(even) { background: #f6f6f6; }
img { max-width: 100%; }
code { background: #f2f2f2; padding: 0 3px; }
"""

_IMG = re.compile(r'<img([^>]*?) src="([^"]+)"')
_LINK = re.compile(r"<a\b[^>]*>(.*?)</a>", re.S)
_SAFE_HREF = re.compile(r'<a href="(?:https?://|#)[^"]*">')


def _plain_links(page: str) -> str:
    """``page`` with every link that is not http(s) or in-page reduced to its text: the report's
    text comes from data only through :func:`~longtail._text.markdown_text`, and this is the second
    guard (no ``javascript:``, ``data:`` or file link can be clicked)."""
    return _LINK.sub(lambda m: m.group() if _SAFE_HREF.match(m.group()) else m.group(1), page)


def _embedded(folder: Path, page: str) -> str:
    """``page`` with each ``<img src="NAME.png">`` of a file in ``folder`` as a data URI."""

    def inline(match: re.Match[str]) -> str:
        name = html.unescape(match.group(2))
        path = folder / name
        if "/" in name or not name.endswith(".png") or not path.is_file():
            raise LongtailError(f"report.html: the report shows {name!r}, which is not a plot here")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img{match.group(1)} src="data:image/png;base64,{data}"'

    return _IMG.sub(inline, page)


def report_html(report_markdown: str, folder: Path, title: str) -> str:
    """The self-contained page of ``report_markdown``, whose plots lie in ``folder``."""
    body = markdown.markdown(report_markdown, extensions=["tables"], output_format="html")
    body = _plain_links(body)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(terminal_text(title))}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{_embedded(folder, body)}\n</body>\n</html>\n"
    )


__all__ = ["report_html"]
