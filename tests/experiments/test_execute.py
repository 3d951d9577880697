"""A comparison at scale: first stages shared, local jobs, commands for another scheduler."""

import json
import shlex
from pathlib import Path

import pytest
import torch

from helpers import short_config, small_embedded
from longtail.cli import main
from longtail.experiments.compare import run_compare
from longtail.experiments.plan import parse_row
from longtail.training.loop import TrainConfig, TrainingDiverged, train
from longtail.training.runtime import training_threads

QUIET = ["--no-progress", "--epochs", "2", "--seeds", "1", "--augment", "none"]


@pytest.fixture(scope="module")
def data():
    return small_embedded(10)


def _run_dir(out, strategy, seed=0):
    return out / "runs" / parse_row(strategy).slug / f"seed{seed}"


def test_first_stages_are_shared_and_give_the_numbers_of_a_run_alone(data, tmp_path):
    strategies = ["sqrt+ce:crt", "sqrt+ce:logit_adjust", "instance+ce:weight_balancing"]
    comparison = run_compare(data, strategies, [0], short_config(), tmp_path / "cmp")
    # sqrt+ce once for two strategies, instance+ce with weight balancing's decay, crt and the
    # weight-balancing stage; logit_adjust trains nothing (an evaluation)
    assert (comparison.trainings, comparison.reused, comparison.grid) == (4, 0, 3)
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert (saved["trainings"], saved["reused"]) == (4, 0)
    assert "needed 4 stage trainings" in (tmp_path / "cmp" / "report.md").read_text()
    threads = torch.get_num_threads()
    torch.set_num_threads(training_threads())  # as compare's trainings (and longtail train)
    for strategy in strategies:  # each equals the strategy trained alone, in one piece
        alone = train(
            TrainConfig(**{**short_config().__dict__, "strategy": strategy}),
            data,
            tmp_path / strategy,
        )
        shared = json.loads((_run_dir(tmp_path / "cmp", strategy) / "metrics.json").read_text())
        assert shared["test"] == alone.to_dict()["test"]
        assert shared["identity"] == alone.identity and shared["stages"] == alone.stages
    torch.set_num_threads(threads)
    again = run_compare(data, strategies, [0], short_config(), tmp_path / "cmp")
    assert (again.trainings, again.reused) == (0, 4)
    assert again.metrics == comparison.metrics


def test_a_second_stage_never_trains_on_a_first_stage_that_diverged(data, tmp_path, monkeypatch):
    from longtail.experiments import execute

    calls = []
    real = execute.train

    def diverges(config, data, run_dir, resume, first_stage=None):
        calls.append(config.strategy)
        if config.strategy == "sqrt+ce":
            raise TrainingDiverged("training diverged: the loss became nan", 1, 1)
        return real(config, data, run_dir, resume=resume, first_stage=first_stage)

    monkeypatch.setattr(execute, "train", diverges)
    comparison = run_compare(data, ["instance+ce", "sqrt+ce:crt"], [0], short_config(), tmp_path)
    assert calls == ["instance+ce", "sqrt+ce"]  # crt never started
    assert "first stage diverged" in comparison.diverged["sqrt+ce:crt"]


def test_two_local_jobs_give_the_numbers_of_one(data, tmp_path):
    strategies = ["instance+ce", "sqrt+ce:crt", "sqrt+ce:logit_adjust"]
    one = run_compare(data, strategies, [0, 1], short_config(), tmp_path / "one")
    two = run_compare(data, strategies, [0, 1], short_config(), tmp_path / "two", jobs=2)
    assert two.metrics == one.metrics and two.per_class_recall == one.per_class_recall
    assert two.trainings == one.trainings == 6


def test_listed_commands_run_by_hand_then_compare_trains_nothing(tmp_path, capsys):
    out = tmp_path / "cmp"
    rows = "instance+ce,sqrt+ce:crt,instance+ce@lr=0.01"
    argv = ["compare", "--strategies", rows, "--out", str(out), *QUIET]
    assert main([*argv, "--list-runs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("longtail train --config ") for line in lines)
    assert "sqrt+ce/seed0" in lines[1] and "sqrt+ce_crt" in lines[2]  # first stage first
    options = json.loads(Path(shlex.split(lines[3])[3]).read_text())
    assert options["lr"] == 0.01 and options["strategy"] == "instance+ce"  # the row's own lr
    assert not (out / "runs").exists()  # nothing trained
    for line in lines:
        assert main(shlex.split(line)[1:]) == 0
    capsys.readouterr()
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["trainings"], results["reused"]) == (0, 4)


def test_train_refuses_a_first_stage_folder_of_another_run(data, tmp_path):
    config = TrainConfig(**{**short_config().__dict__, "strategy": "instance+ce"})
    train(config, data, tmp_path / "plain")
    second = TrainConfig(**{**short_config().__dict__, "strategy": "sqrt+ce:crt"})
    with pytest.raises(ValueError, match="does not hold the finished first stage sqrt\\+ce"):
        train(second, data, tmp_path / "crt", first_stage=tmp_path / "plain")


def test_jobs_takes_a_number_or_auto(capsys):
    assert main(["compare", "--jobs", "two", "--seeds", "1"]) == 2
    assert "--jobs takes a number" in capsys.readouterr().err


def test_the_ray_launcher_names_its_extra_when_ray_is_missing(data, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(ValueError, match=r"pip install 'longtail\[ray\]'"):
        run_compare(data, ["instance+ce"], [0], short_config(), tmp_path, launcher="ray")


def test_a_failing_training_in_a_local_job_is_reported_and_the_others_finish(data, tmp_path):
    from dataclasses import replace

    from longtail.experiments.execute import run_in_processes
    from longtail.experiments.plan import plan_comparison
    from longtail.training.identity import run_identity

    strategies = [parse_row(s) for s in ("instance+ce", "sqrt+ce:crt")]
    plan = plan_comparison(data, strategies, [0], short_config(), tmp_path)
    good, first, second = plan.trainings
    broken = replace(first.config, model="no_such_model")  # fails when the job builds it
    first.config, first.identity = broken, run_identity(broken, data.fingerprint())
    ended = []
    outcomes = run_in_processes(plan, data, lambda t, o: ended.append(t), jobs=2)
    assert outcomes[good].result is not None and outcomes[good].result.test is not None
    assert "no_such_model" in outcomes[first].error  # a user error: its one line
    assert outcomes[second].result is None  # never started on a failed first stage
    assert "first stage failed" in outcomes[second].error
    assert len(ended) == 3


def test_rows_with_settings_of_their_own_train_with_them_and_share_first_stages(data, tmp_path):
    from longtail.experiments.plan import plan_comparison

    rows = [
        "sqrt+ce@mix=mixup[alpha=0.2]",
        "sqrt+ce:crt@mix=mixup[alpha=0.2]",  # the same first stage as the row above
        "sqrt+ce:crt",  # another first stage: trained without mixing
    ]
    plan = plan_comparison(data, [parse_row(r) for r in rows], [0], short_config(), tmp_path)
    assert plan.grid == 3 and len(plan.trainings) == 4  # two sqrt+ce, two crt stages
    mixed, plain = plan.results[(rows[1], 0)], plan.results[(rows[2], 0)]
    assert mixed.first is plan.results[(rows[0], 0)]
    assert (mixed.config.mix, mixed.first.config.mix) == ("mixup[alpha=0.2]", "mixup[alpha=0.2]")
    assert (plain.config.mix, plain.first.config.mix) == ("none", "none")
    assert mixed.first.identity != plain.first.identity
    assert plain.first.run_dir != mixed.first.run_dir  # never one folder for two identities

    comparison = run_compare(
        data, ["instance+ce", "instance+ce@lr=0.01"], [0], short_config(), tmp_path / "c"
    )
    assert comparison.strategies == ["instance+ce", "instance+ce@lr=0.01"]
    config = json.loads(
        (_run_dir(tmp_path / "c", "instance+ce@lr=0.01") / "config.json").read_text()
    )
    assert config["config"]["lr"] == 0.01 and config["config"]["strategy"] == "instance+ce"
    accuracy = comparison.metrics["accuracy"]
    assert accuracy["instance+ce"].mean != accuracy["instance+ce@lr=0.01"].mean
    report = (tmp_path / "c" / "report.md").read_text()
    assert "train with them instead (`instance+ce@lr=0.01`: lr `0.01`)" in report
    assert comparison.recipes == {"instance+ce@lr=0.01": {"lr": 0.01}}
    saved = json.loads((tmp_path / "c" / "results.json").read_text())
    assert saved["recipes"] == {"instance+ce@lr=0.01": {"lr": 0.01}}
