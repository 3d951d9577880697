"""longtail inside the tools practitioners use: timm backbones (the test extras install timm)."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import write_tree
from longtail.training.models import build_model


@pytest.fixture
def tree(tmp_path):
    counts = {f"train/c{k}": n for k, n in enumerate((12, 6, 3))}
    counts |= {f"{part}/c{k}": 2 for part in ("val", "test") for k in range(3)}
    return write_tree(tmp_path / "data", counts, size=40)


def test_a_timm_backbone_loads_local_weights_and_trains(tree, tmp_path):
    import timm

    from longtail.cli import main

    reference = timm.create_model("test_efficientnet", num_classes=3)
    weights = tmp_path / "weights.pt"
    torch.save(reference.state_dict(), weights)
    model = build_model("timm:test_efficientnet", 3, 3, 32, pretrained=str(weights))
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    out = tmp_path / "run"
    argv = ["train", "--data", str(tree), "--model", "timm:test_efficientnet"]
    argv += ["--pretrained", str(weights), "--image-size", "32", "--epochs", "1"]
    argv += ["--batch-size", "8", "--workers", "0", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "timm:test_efficientnet"
    trained = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    changed = [k for k, v in reference.state_dict().items() if not torch.equal(v, trained[k])]
    assert changed  # the optimiser moved the loaded weights


def test_a_missing_timm_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ValueError, match=r"needs timm: pip install 'longtail\[timm\]'"):
        build_model("timm:test_efficientnet", 3, 3, 32)


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
        ("epochs = 3\nepoch = 2\n", "train has no option 'epoch'; options: augment, batch-size"),
        ('epochs = "ten"\n', "--epochs takes a number, got 'ten'"),
        ("epochs = 2.5\n", "--epochs takes an integer, got 2.5"),
        ('augment = "rotate"\n', "--augment must be one of standard, aerial, none"),
        ("last_epoch = 1\n", "last_epoch must be true or false"),
        ("epochs = [\n", "is not valid TOML"),
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
