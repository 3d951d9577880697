"""User errors are one family printed as one line; anything else is a bug that keeps its
traceback. And the third round's tracebacks-where-a-line-is-due, each now a line."""

import json
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from PIL.Image import DecompressionBombError

from helpers import QUIET, TINY, write_tree
from longtail._io import MAX_JSON_DEPTH, read_regular_file, strict_loads
from longtail.cli import main
from longtail.data.decode import read_image
from longtail.distribution import MAX_LEVELS, ClassDistribution
from longtail.errors import LongtailError, OutputError, shorten
from longtail.priors import target_prior
from longtail.strategies import registry
from longtail.training.results import RunResult


def test_the_family_keeps_the_exceptions_callers_caught():
    assert issubclass(LongtailError, ValueError)
    assert issubclass(OutputError, OSError) and str(OutputError("full", 28)) == "full"
    assert OutputError("full", 28).errno == 28 and OutputError("full").errno is None
    assert shorten(range(5000)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 4,990 more"
    assert shorten(["a", "b"]) == "a, b"


@pytest.fixture
def broken_sampler(monkeypatch):
    """A sampler whose factory has a bug (a TypeError inside, as numpy or torch would raise)."""
    spec = registry.component("sampler", "instance")

    def factory(ctx, **params):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")

    monkeypatch.setitem(registry.REGISTRY["sampler"], "instance", replace(spec, factory=factory))


def test_a_bug_inside_a_factory_keeps_its_traceback(tmp_path, capsys, broken_sampler):
    code = main(["train", *QUIET, "--epochs", "1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" in err and "TypeError: unsupported operand" in err
    assert "bug in longtail" in err and "bad parameters" not in err


def test_a_user_error_is_one_line_and_debug_shows_its_traceback(tmp_path, capsys, monkeypatch):
    argv = ["train", "--strategy", "nosuch+ce", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("LONGTAIL_DEBUG", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "unknown sampler 'nosuch'" in err


def test_strict_json_refuses_depth_repeated_keys_and_named_fields(tmp_path):
    with pytest.raises(LongtailError, match="nested"):
        strict_loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert strict_loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(LongtailError, match="'a' is given twice"):
        strict_loads('{"a": 1, "a": 2}')
    record = {"identity": {}, "config": {}, "epochs_run": "three"}
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(record))
    with pytest.raises(LongtailError, match=r"metrics.json is not a RunResult.*epochs_run"):
        RunResult.load(path)
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(LongtailError, match="nested 100000 deep"):
        RunResult.load(path)


def test_a_prior_naming_a_class_twice_is_refused_and_huge_shares_are_normalised(tmp_path):
    counts, names = np.array([6, 3, 1]), ["a", "b", "c"]
    table = tmp_path / "prior.csv"
    table.write_text("class,share\na,1\nb,1\nc,1\na,5\n")
    with pytest.raises(LongtailError, match="gives the share of a twice"):
        target_prior(str(table), counts, names)
    with pytest.raises(LongtailError, match="'a' is given twice"):
        target_prior('{"a": 1, "b": 1, "c": 1, "a": 5}', counts, names)
    q = target_prior('{"a": 1e308, "b": 1e308, "c": 0}', counts, names)
    np.testing.assert_allclose(q, [0.5, 0.5, 0.0])


@pytest.mark.parametrize(
    "option, message",
    [("--split-seed", "--split-seed must be an integer >= 0"), ("--image-size", "--image-size")],
)
def test_integer_data_options_name_themselves(tmp_path, capsys, option, message):
    data = write_tree(tmp_path / "d", {"a": 6, "b": 5})
    value = "-1" if option == "--split-seed" else "100000"
    assert main(["train", "--data", str(data), option, value, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_many_small_classes_give_a_short_message(tmp_path, capsys):
    counts = {f"class_{k:04d}": 1 for k in range(300)}
    data = write_tree(tmp_path / "d", counts, size=4)
    assert main(["train", *TINY, *QUIET, "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "300 classes" in err and "and 290 more" in err and len(err) < 600


def test_a_tree_deeper_than_the_limit_is_refused_naming_a_class():
    deep = tuple(f"l{k}" for k in range(MAX_LEVELS))
    with pytest.raises(LongtailError, match=rf"l0/l1/l2/\.\.\./leaf lies {MAX_LEVELS + 1} levels"):
        ClassDistribution.from_counts([3, 2], ["leaf", "b"], [deep, ("x",)])
    ok = ClassDistribution.from_counts([3, 2], ["leaf", "b"], [deep[:-1], ("x",)])
    assert ok.num_levels == MAX_LEVELS
    assert ok.level_names(1) == ["l0", "x"] and ok.level_names(1) is not ok.level_names(1)


def test_a_read_allocates_the_files_size_not_the_limit(tmp_path):
    path = tmp_path / "small.jpg"
    path.write_bytes(b"x" * 1000)
    tracemalloc.start()
    data = read_regular_file(path, 1 << 30)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert data == b"x" * 1000 and peak < 1 << 20


def test_an_extreme_aspect_ratio_is_refused_before_it_is_resized(tmp_path):
    strip = tmp_path / "strip.png"
    Image.fromarray(np.zeros((1, 65000, 3), dtype=np.uint8)).save(strip)
    assert strip.stat().st_size < 2000
    with pytest.raises(DecompressionBombError, match="65000 x 1: its shorter side scaled"):
        read_image(strip, 224)
    assert read_image(strip, 1).shape == (3, 1, 1)  # 65,000 pixels at 1 px: fine
    wide = tmp_path / "wide16.png"
    Image.fromarray(np.full((4, 6), 65535, dtype=np.uint16)).save(wide)
    assert read_image(wide, 4).max() == 255
