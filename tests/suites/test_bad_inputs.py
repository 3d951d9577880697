"""The CLI on a battery of bad inputs and misuses, as a new user would make them: each ends with
exit code 2 (130 for Ctrl-C), a one-line message that names the problem and the fix, no
traceback, nothing written that claims a result, and no empty --out folder left behind."""

import os
import warnings
from pathlib import Path

import pytest

from helpers import QUIET, run_cli, write_tree
from longtail import cli

RESULTS = ("metrics.json", "results.json", "report.md", "checkpoint.pt", "log.csv")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    good = write_tree(base / "good", {"a": 12, "b": 8, "c": 6}, size=8)
    junk = write_tree(base / "junk", {"a": 12, "b": 0}, size=8)
    (junk / "b").mkdir(exist_ok=True)
    for i in range(8):
        (junk / "b" / f"x{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    csv = base / "junk.csv"
    csv.write_text(
        "path,label\n"
        + "".join(f"junk/a/img_{i:04d}.jpg,a\n" for i in range(12))
        + "".join(f"junk/b/x{i}.jpg,b\n" for i in range(8))
    )
    return {"good": good, "junk": junk, "junk_csv": csv, "base": base}


def assert_refused(code, err, message, out_dir=None):
    assert code == 2, err
    assert message in " ".join(err.split()), err
    assert len([line for line in err.splitlines() if line.strip()]) <= 3  # a message, not a dump
    if out_dir is not None and Path(out_dir).exists():
        assert not any((Path(out_dir) / name).exists() for name in RESULTS)
        assert any(p.name not in (".lock", ".longtail-output") for p in Path(out_dir).iterdir()), (
            "empty --out left behind"
        )


def test_class_whose_every_image_is_unreadable(folders, tmp_path, capsys):
    for data in (folders["junk"], folders["junk_csv"]):
        out = tmp_path / f"o-{data.name}"
        argv = ["train", "--data", data, "--image-size", "8", "--model", "small_cnn"]
        code, _, err = run_cli(
            [*argv, "--epochs", "1", "--workers", "1", "--no-progress", "--out", out], capsys
        )
        assert_refused(code, err, "every image of class 'b' is unreadable")
        assert "fix or remove" in err


def test_a_single_class_is_no_classification_task(tmp_path, capsys):
    root = write_tree(tmp_path / "one", {"a": 6}, size=8)
    out = tmp_path / "o"
    argv = ["train", "--data", root, "--image-size", "8", "--epochs", "1", *QUIET, "--out", out]
    code, _, err = run_cli(argv, capsys)
    assert_refused(code, err, "at least two classes", out)


def test_symlink_loop_is_not_followed(folders, tmp_path, capsys):
    root = write_tree(tmp_path / "loop", {"a": 3, "b/c": 2}, size=8)
    os.symlink("..", root / "b" / "back")  # b/back -> root: a cycle
    write_tree(root / ".store", {"kept": 3}, size=8)  # hidden: reached through the link only
    os.symlink(root / ".store" / "kept", root / "b" / "again")  # a folder link is followed
    code, out, _ = run_cli(["analyze", root, "--out", tmp_path / "o"], capsys)
    assert code == 0
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| again | 3 |" in report and "| samples | 8 |" in report  # a: 3, b/c: 2, b/again: 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--strategies", ","], "names no strategy"),
        (["compare", "--seeds", "0"], "--seeds must be at least 1"),
        (["compare", "--strategies", "instance+ce@epochs=3"], "every row of a comparison shares"),
        (["compare", "--strategies", "weighted+ce@mix=blend"], "mix must be one of none, mixup"),
        (["train", "--strategy", "instance+nope"], "unknown loss 'nope'"),
        (["train", "--level", "2"], "only apply to folder data"),
        (["train", "--image-size", "16"], "only apply to folder data"),
        (["train", "--device", "cuda:97"], "cuda:97"),
        (["train", "--device", "gpu0"], "unknown device 'gpu0'"),
        (["train", "--pretrained", "missing.pt"], "missing.pt: no such file"),
        (
            ["train", "--model", "resnet18", "--pretrained", "NOPE"],
            "neither a file nor a weights name",
        ),
        (["train", "--model", "resnet999"], "unknown model 'resnet999'"),
        (["train", "--lr", "0"], "lr must be a finite number > 0"),
        (["train", "--lr", "nan"], "lr must be a finite number > 0"),
        (["train", "--batch-size", "0"], "batch_size must be an integer >= 1"),
        (["train", "--data", "/no/such/folder"], "does not exist"),
    ],
)
def test_bad_options(tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    code, _, err = run_cli([*argv, "--epochs", "1", *QUIET, "--out", out], capsys)
    assert_refused(code, err, message, out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image-size", "0"], "--image-size must be an integer >= 1"),
        (["--image-size", "4", "--model", "small_cnn"], "cannot take 4 x 4 images"),
    ],
)
def test_image_sizes_a_model_cannot_take(folders, tmp_path, capsys, extra, message):
    out = tmp_path / "o"
    code, _, err = run_cli(
        ["train", "--data", folders["good"], *extra, "--epochs", "1", *QUIET, "--out", out], capsys
    )
    assert_refused(code, err, message, out)


def test_out_that_cannot_be_written_is_refused_before_loading(
    folders, tmp_path, capsys, monkeypatch
):
    def never(*args, **kwargs):
        raise AssertionError("data was loaded before --out was checked")

    monkeypatch.setattr(cli, "_bundle", never)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, message in (
        (a_file, "is a file, not a folder"),
        (a_file / "sub", "cannot write into --out"),
    ):
        for command in (["train"], ["compare", "--seeds", "1"], ["analyze"]):
            code, _, err = run_cli([*command, "--out", out], capsys)
            assert_refused(code, err, message)
    assert a_file.read_text() == "x"


def test_ctrl_c_says_where_the_checkpoint_is(tmp_path, capsys, monkeypatch):
    from longtail.training import loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    code, _, err = run_cli(["train", "--out", tmp_path / "t", *QUIET], capsys)
    assert code == 130 and "checkpoint.pt" in err and "--resume" in err
    monkeypatch.setattr("longtail.experiments.execute.train", interrupted)
    code, _, err = run_cli(
        ["compare", "--seeds", "1", "--strategies", "instance+ce", "--out", tmp_path / "c", *QUIET],
        capsys,
    )
    assert code == 130 and "same command again" in " ".join(err.split())


def test_square_brackets_in_user_text_are_printed_as_given(tmp_path, capsys):
    out = tmp_path / "exp[v2]" / "x[/b]"
    strategy = "weighted[scheme=sqrt_inverse]+ce"
    code, printed, _ = run_cli(
        ["train", "--strategy", strategy, "--epochs", "1", *QUIET, "--out", out], capsys
    )
    assert code == 0
    flat = "".join(printed.split())
    assert strategy in flat and "exp[v2]/x[/b]" in flat


def test_manifest_with_an_unknown_header(tmp_path, capsys):
    csv = tmp_path / "m.csv"
    csv.write_text("name,kind\na/1.jpg,a\n")
    code, _, err = run_cli(["analyze", csv, "--out", tmp_path / "o"], capsys)
    assert_refused(code, err, "path,label")


def test_analyze_counts_only_the_training_split(tmp_path, capsys):
    root = tmp_path / "split"
    write_tree(root / "train", {"a": 6, "b": 3}, size=8)
    write_tree(root / "test", {"a": 2, "b": 2}, size=8)
    code, out, _ = run_cli(["analyze", root, "--out", tmp_path / "o"], capsys)
    assert code == 0 and "training split" in out
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| classes | 2 |" in report and "| samples | 9 |" in report


def test_no_numpy_warnings_with_two_classes(tmp_path, capsys):
    root = write_tree(tmp_path / "two", {"a": 12, "b": 6}, size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        argv = ["compare", "--data", root, "--strategies", "instance+ce", "--seeds", "2"]
        code, _, _ = run_cli(
            [
                *argv,
                "--model",
                "small_cnn",
                "--image-size",
                "8",
                "--epochs",
                "1",
                *QUIET,
                "--out",
                tmp_path / "o",
            ],
            capsys,
        )
    assert code == 0
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [
        str(w.message) for w in caught
    ]


def test_folder_runs_without_sched_getaffinity(folders, tmp_path, capsys, monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    argv = ["train", "--data", folders["good"], "--image-size", "8", "--model", "small_cnn"]
    code, _, _ = run_cli(
        [*argv, "--epochs", "1", "--no-progress", "--rescan", "--out", tmp_path / "o"], capsys
    )
    assert code == 0


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ("instance[num_replicas=2]+ce", "no parameter 'num_replicas'"),
        ("instance[rank=1]+ce", "no parameter 'rank'"),
        ("class_balanced[drop_last=true]+ce", "no parameter 'drop_last'"),
        ("class_balanced[seed=7]+ce", "no parameter 'seed'"),
        ("instance+focal[gamma=1,gamma=5]", "'gamma' is given twice"),
        ("instance+focal[gama=2]", "its parameters: gamma"),
        ("instance+focal[gamma=abc]", "gamma must be a finite number"),
        ("instance+ce:tau_norm[grid=]", "no parameter 'grid'"),
        ("curriculum[max_ratio=nan]+ce", "max_ratio must be a finite number"),
        ("hybrid[over_max=1e999]+ce", "over_max must be a finite number"),
        ("balanced_batch[samples_per_class=0]+ce", "samples_per_class must be an integer >= 1"),
        ("balanced_batch[classes_per_batch=2.5]+ce", "classes_per_batch must be an integer"),
        ("class_balanced[cycle=3]+ce", "cycle must be true or false"),
        ("instance+ce:crt[epochs=99999999999]", "epochs must be an integer >= 1"),
    ],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_strategy_strings_reach_only_documented_parameters(
    tmp_path, capsys, command, strategy, message
):
    out = tmp_path / "o"
    flag = "--strategy" if command == "train" else "--strategies"
    argv = [command, flag, strategy, "--epochs", "1", *QUIET, "--out", out]
    code, _, err = run_cli(argv + (["--seeds", "1"] if command == "compare" else []), capsys)
    assert_refused(code, err, message, out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed", str(2**62)], "seed must be an integer >= 0 (at most 4,294,967,295)"),
        (["--epochs", str(10**12)], "epochs must be an integer >= 1 (at most 100,000)"),
        (["--warmup-epochs", str(10**9)], "warmup_epochs must be an integer >= 0"),
        (["--workers", str(10**6)], "num_workers must be an integer >= 0"),
    ],
)
def test_huge_integers_are_refused_before_training(tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    base = ["--epochs", "1"] if "--epochs" not in argv else []
    code, _, err = run_cli(["train", *base, *argv, "--no-progress", "--out", out], capsys)
    assert_refused(code, err, message, out)


def test_option_files_that_are_not_small_regular_files_are_refused(tmp_path, capsys):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)  # 2 MB
    for path, message in (
        (fifo, "is not a regular file"),
        (big, "over the 1,048,576 read here"),
        (Path("/dev/zero"), "give a .toml or .json file"),
    ):
        code, _, err = run_cli(["train", "--config", path, "--out", tmp_path / "o"], capsys)
        assert_refused(code, err, message)


def test_analyze_never_counts_its_own_output_as_a_class(tmp_path, capsys):
    root = write_tree(tmp_path / "data", {"a": 6, "b": 3}, size=8)
    for _ in range(2):  # the second time, DATA/report holds PNG plots
        code, _, _ = run_cli(["analyze", root, "--out", root / "report", "--rescan"], capsys)
        assert code == 0
        report = (root / "report" / "report.md").read_text()
        assert "| classes | 2 |" in report and "| samples | 9 |" in report


def test_a_manifest_row_outside_its_folder_is_refused_by_the_cli(tmp_path, capsys):
    write_tree(tmp_path / "set", {"a": 4, "b": 4}, size=8)
    write_tree(tmp_path / "other", {"b": 1}, size=8)
    csv = tmp_path / "set" / "m.csv"
    rows = [f"{c}/img_{i:04d}.jpg,{c}" for c in "ab" for i in range(4)]
    csv.write_text("path,label\n" + "\n".join([*rows, "../other/b/img_0000.jpg,b"]) + "\n")
    code, _, err = run_cli(["analyze", csv, "--out", tmp_path / "o"], capsys)
    assert_refused(code, err, "outside the manifest's folder")
    code, _, _ = run_cli(["analyze", csv, "--allow-outside", "--out", tmp_path / "o2"], capsys)
    assert code == 0 and "| samples | 9 |" in (tmp_path / "o2" / "report.md").read_text()


def test_pretrained_weights_of_another_architecture_are_refused(tmp_path, capsys):
    import torch

    from longtail.training.models import build_model

    other = build_model("small_cnn", 10, 1, 28).state_dict()
    mine = build_model("mlp", 10, 1, 28).state_dict()
    # only the classifier's names and shapes happen to match: the backbone would stay random
    file = {k: v for k, v in other.items() if k in mine and mine[k].shape == v.shape}
    file |= {k: v for k, v in other.items() if k not in mine}
    assert file.keys() & mine.keys() and all(
        k.startswith("classifier.") for k in file.keys() & mine.keys()
    )
    torch.save(file, tmp_path / "w.pt")
    out = tmp_path / "o"
    argv = ["train", "--pretrained", tmp_path / "w.pt", "--epochs", "1", *QUIET, "--out", out]
    code, _, err = run_cli(argv, capsys)
    assert_refused(code, err, "fits none of this model's backbone", out)


def test_a_timm_weights_tag_is_checked_before_the_hub_is_asked(tmp_path, capsys, monkeypatch):
    import timm

    def offline(*args, pretrained=False, **kwargs):
        assert not pretrained, "the hub was asked"
        return create(*args, **kwargs)

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    argv = ["train", "--model", "timm:resnet18", "--pretrained", "nosuchtag", "--epochs", "1"]
    code, _, err = run_cli([*argv, *QUIET, "--out", tmp_path / "o"], capsys)
    assert_refused(code, err, "neither a file nor a timm weights tag of resnet18")
    assert "a1_in1k" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"path,label\na/1.jpg,a\x00\n", "is not a UTF-8 CSV"),
        (b"path,label\n" + b'"' + b"x" * 200_000 + b'",a\n', "is not a UTF-8 CSV"),
        (b"path,label\n\xff\xfe,a\n", "is not a UTF-8 CSV"),
    ],
)
def test_a_manifest_that_is_not_a_csv_of_text_is_refused(tmp_path, capsys, content, message):
    csv = tmp_path / "m.csv"
    csv.write_bytes(content)
    code, _, err = run_cli(["analyze", csv, "--out", tmp_path / "o"], capsys)
    assert_refused(code, err, message)
