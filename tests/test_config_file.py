"""Option files: every option in a TOML file, the command line wins, a run made again from its saved config, bad files refused naming the problem."""

from __future__ import annotations

import json

import pytest

from helpers import write_splits


@pytest.fixture
def tree(tmp_path):
    return write_splits(tmp_path / "data", (12, 6, 3), held_out=2, size=40)


def test_a_run_is_made_again_from_its_saved_config(tmp_path):
    from longtail.cli import main

    first = tmp_path / "first"
    argv = ["train", "--strategy", "weighted+ce:logit_adjust", "--epochs", "2", "--seed", "3"]
    argv += ["--lr", "0.002", "--augment", "none", "--last-epoch", "--no-progress"]
    assert main([*argv, "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert main(["train", "--config", str(first / "config.json"), "--out", str(again)]) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (first, again))
    assert a["test"]["summary"] == b["test"]["summary"]
    assert a["identity"] == b["identity"]
    assert b["config"]["seed"] == 3 and b["config"]["select_best"] is False


def test_a_toml_file_holds_every_option_and_the_command_line_wins(tmp_path, tree):
    from longtail.cli import main

    (tmp_path / "exp.toml").write_text(
        f'data = "{tree}"\n'
        'strategies = ["instance+ce", "sqrt+ce:crt[epochs=1]"]\n'
        "seeds = 1\nepochs = 3\nimage-size = 16\nbatch_size = 8\nworkers = 0\n"
        'augment = "aerial"\nno-progress = true\n'
    )
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(tmp_path / "exp.toml"), "--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["strategies"] == ["instance+ce", "sqrt+ce:crt[epochs=1]"]
    assert results["config"]["epochs"] == 1  # the command line over the file
    assert results["config"]["augment"] == "aerial" and results["config"]["batch_size"] == 8
    assert results["seeds"] == [0]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "epochs = 3\nepoch = 2\n",
            "train has no option 'epoch'; options: allow-outside, augment, backbone-lr-scale, batch-size",
        ),
        ('epochs = "ten"\n', "--epochs takes a number, got 'ten'"),
        ("epochs = 2.5\n", "--epochs takes an integer, got 2.5"),
        ('augment = "rotate"\n', "--augment must be one of standard, aerial, none"),
        ("last_epoch = 1\n", "last_epoch must be true or false"),
        ("epochs = [\n", "is not valid TOML"),
        ("epochs = inf\n", "--epochs takes a finite number, got inf"),
        ("epochs = nan\n", "--epochs takes a finite number, got nan"),
        ("seed = 1e300\n", "seed must be an integer >= 0"),
        ("seed = 0.5\n", "--seed takes an integer"),
        ("seed = 4611686018427387904\n", "seed must be an integer >= 0"),
        ("lr = inf\n", "--lr takes a finite number"),
    ],
)
def test_a_bad_config_file_is_refused_naming_the_problem(tmp_path, capsys, text, message):
    from longtail.cli import main

    path = tmp_path / "run.toml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "x")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err
    assert not (tmp_path / "x").exists()
