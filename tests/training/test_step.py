"""One optimisation step: a non-finite loss stops the run and says so."""

from __future__ import annotations

from helpers import QUIET
from longtail._io import strict_loads
from longtail.cli import main
from longtail.training.loop import TrainingDiverged


def test_a_diverged_run_stops_and_compare_never_calls_it_best(tmp_path, capsys):
    out = tmp_path / "t"
    assert (
        main(
            [
                "train",
                "--epochs",
                "2",
                "--lr",
                "1e30",
                "--optimizer",
                "sgd",
                "--out",
                str(out),
                *QUIET,
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "diverged" in err and "epoch 1" in err and "--lr" in err
    assert "test" not in strict_loads((out / "metrics.json").read_text())
    cmp = tmp_path / "c"
    argv = ["compare", "--strategies", "instance+ce,instance+focal[gamma=1]", "--seeds", "1"]
    from longtail.experiments import execute as compare_module

    real_train = compare_module.train

    def focal_diverges(config, data, run_dir, resume, first_stage=None):
        if "focal" in config.strategy:
            raise TrainingDiverged("training diverged: the loss became nan at epoch 1", 1, 1)
        return real_train(config, data, run_dir, resume=resume, first_stage=first_stage)

    compare_module.train = focal_diverges
    try:
        assert main([*argv, "--epochs", "1", "--out", str(cmp), *QUIET]) == 0
    finally:
        compare_module.train = real_train
    results = strict_loads((cmp / "results.json").read_text())
    assert list(results["diverged"]) == ["instance+focal[gamma=1]"]
    assert "instance+focal[gamma=1]" not in results["metrics"]["balanced_accuracy"]
    report = (cmp / "report.md").read_text()
    assert "diverged" in report and "Best balanced accuracy: **instance+ce**" in report
