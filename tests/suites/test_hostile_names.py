"""What a class or folder name may do where it is shown: nothing. A name is data on a page
(no link, image or tag in report.html), in a terminal (no escape sequence), in a plot (no
mathtext) and in every file, whatever bytes it holds."""

import os
import re

import markdown
import numpy as np
import pytest

from helpers import QUIET, TINY, write_tree
from longtail._text import console_text, markdown_text, printable, terminal_text
from longtail.cli import main
from longtail.report.html import report_html

SCRIPT_LINK = "[click me](javascript:alert(1))"
IMAGE = "![x](javascript:alert(2))"
ESCAPES = "bad\x1b[2J\x1b]0;pwned\x07name"


def test_markdown_text_shows_link_image_and_tag_syntax_literally():
    for name in (SCRIPT_LINK, IMAGE, "<script>alert(3)</script>", "<javascript:x>", "*a* `b`"):
        page = markdown.markdown(markdown_text(name))
        assert "<a" not in page and "<img" not in page and "<script" not in page
        assert "<em>" not in page and "<code>" not in page
    cell = markdown.markdown(f"| a |\n|---|\n| {markdown_text('x|y')} |", extensions=["tables"])
    assert cell.count("<td>") == 1 and "x|y" in cell
    assert markdown_text("two\nlines") == "two\\nlines"


def test_terminal_text_escapes_control_characters_and_keeps_text():
    shown = terminal_text(ESCAPES)
    assert "\x1b" not in shown and "\x07" not in shown
    assert shown == "bad\\x1b[2J\\x1b]0;pwned\\x07name"
    assert terminal_text("tab\tand newline\n") == "tab\tand newline\n"
    assert "\u202e" not in terminal_text("abc\u202eexe.jpg")  # a right-to-left override
    assert console_text("[bold]x[/bold]") == "\\[bold]x\\[/bold]"


def test_undecodable_bytes_are_replacement_characters_everywhere():
    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes in a UTF-8 file system
    for shown in (printable(name), terminal_text(name), markdown_text(name)):
        assert shown.encode("utf-8") and "\ufffd" in shown


def test_report_html_keeps_no_script_link_from_any_source(tmp_path):
    page = report_html(
        f"{markdown_text(SCRIPT_LINK)}\n\n[raw](javascript:alert(1)) [ok](https://example.org)",
        tmp_path,
        "t",
    )
    assert 'href="javascript' not in page and 'href="https://example.org"' in page


@pytest.fixture(scope="module")
def hostile_names(tmp_path_factory):
    """A data folder whose class names are a script link, a Markdown image, terminal escapes,
    a dollar sign and bytes that are not UTF-8."""
    root = tmp_path_factory.mktemp("names") / "[data](javascript:alert(4))"
    names = {
        "link": SCRIPT_LINK.replace("/", "_"),
        "image": IMAGE.replace("/", "_"),
        "escapes": ESCAPES,
        "dollar": "price $5 and $x$",
    }
    write_tree(root, {v: n for v, n in zip(names.values(), (12, 7, 6, 5), strict=True)})
    raw = os.fsencode(root) + b"/caf\xe9"
    os.mkdir(raw)
    src = next((root / names["link"]).iterdir())
    for i in range(5):
        with open(raw + f"/{i}.jpg".encode(), "wb") as fh:
            fh.write(src.read_bytes())
    return root


def test_analyze_shows_hostile_names_as_text(hostile_names, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["analyze", str(hostile_names), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "\x1b]0;" not in printed.out + printed.err and "\x1b[2J" not in printed.out
    assert (out / "class_counts.png").stat().st_size > 0
    assert "$" in (out / "distribution.json").read_text()


def test_compare_writes_a_safe_report_for_hostile_names(hostile_names, tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["compare", "--strategies", "instance+ce", "--seeds", "1", *TINY, *QUIET]
    assert main([*argv, "--data", str(hostile_names), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "\x1b]0;" not in printed.out + printed.err
    page = (out / "report.html").read_text()
    assert 'href="javascript' not in page and "<img" in page  # the plots are still there
    assert page.count("<img") == page.count('src="data:image/png;base64,') >= 3  # plots only
    assert "\ufffd" in (out / "report.md").read_text()
    assert np.isfinite(
        float(
            re.search(
                r'"balanced_accuracy": \{\s*"instance\+ce": \{\s*"mean": ([0-9.e-]+)',
                (out / "results.json").read_text(),
            ).group(1)
        )
    )
