"""``report.html``: the comparison report as one self-contained page, to share or open anywhere.

The page is ``report.md`` rendered by Python-Markdown (tables extension), with every plot it
shows embedded as a ``data:`` URI and a small inline stylesheet: no network access, no file
beside it, nothing executed.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

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
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{_embedded(folder, body)}\n</body>\n</html>\n"
    )


__all__ = ["report_html"]
