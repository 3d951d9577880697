"""Console tables: every column kept when the output is not a terminal."""

from __future__ import annotations

from helpers import QUIET, run_cli


def test_compare_table_keeps_every_column_when_not_a_terminal(tmp_path, capsys):
    argv = ["compare", "--strategies", "instance+ce,weighted[scheme=smooth_inverse,alpha=500]+ce"]
    code, printed, _ = run_cli(
        [*argv, "--seeds", "1", "--epochs", "1", *QUIET, "--out", tmp_path / "o"], capsys
    )
    assert code == 0
    top = next(line for line in printed.splitlines() if line.startswith("┏"))
    # strategy + 11 metric columns (9, and mistake severity on the embedded data's tree), none cut
    assert top.count("┳") == 11 and top.endswith("┓")
    last_row = next(line for line in printed.splitlines() if line.startswith("│ weighted"))
    assert last_row.rstrip().endswith("│")
    assert "…" not in printed  # no cell cut short either
    progress = [line for line in printed.splitlines() if line.startswith("[")]
    assert len(progress) == 2 and all("tail recall" in line for line in progress)  # unwrapped


def test_a_wide_table_printed_whole_keeps_the_consoles_settings():
    import io

    from rich.console import Console
    from rich.table import Table

    from longtail.report.tables import print_table

    table = Table(*(f"column {k}" for k in range(12)))
    table.add_row(*(f"{k}.0" for k in range(12)))
    out = io.StringIO()
    print_table(Console(file=out, width=40), table)
    assert "…" not in out.getvalue() and "column 11" in out.getvalue()  # whole, not cut at 40
    assert "\x1b[" not in out.getvalue()  # no colour codes where the console had none
    quiet = io.StringIO()
    print_table(Console(file=quiet, width=40, quiet=True), table)
    assert quiet.getvalue() == ""  # a quiet console stays quiet
