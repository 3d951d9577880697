"""--help and argument errors answer before torch is imported."""

import subprocess
import sys

import pytest

PROBE = """
import sys
from longtail.cli import main
try:
    main({argv!r})
except SystemExit as stop:
    code = stop.code
print("torch imported" if "torch" in sys.modules else "no torch", code)
"""


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["compare", "--help"], 0),
        (["train", "--epochs", "many"], 2),  # an argument error
    ],
)
def test_no_torch_before_the_arguments_are_read(argv, code):
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split()[-3:] == ["no", "torch", str(code)], done.stdout + done.stderr
