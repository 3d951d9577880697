"""No silent wrong results: each test here failed before its fix (a stale, merged or leaked number,
or a result that is no result), and passes now."""

import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import write_tree
from longtail._io import strict_loads
from longtail.cli import main
from longtail.data.bundle import folder_bundle
from longtail.data.decode import read_image
from longtail.data.index import ImageIndex, build_index, read_manifest
from longtail.distribution import ClassDistribution
from longtail.training.loop import TrainConfig, TrainingDiverged, train

TINY = ["--model", "small_cnn", "--image-size", "8", "--epochs", "1", "--batch-size", "8"]
QUIET = ["--workers", "0", "--no-progress"]


def tree(root, counts, size=8, seed=0):
    return write_tree(root, counts, size=size, seed=seed)


# ------------------------------------------------------------------ 1. run identity
def test_compare_refuses_to_reuse_runs_of_other_data(tmp_path, capsys):
    a = tree(tmp_path / "A", {"x": 12, "y": 6, "z": 5})
    b = tree(tmp_path / "B", {"x": 12, "y": 9, "z": 5}, seed=1)
    out = tmp_path / "cmp"
    argv = ["compare", "--strategies", "instance+ce", "--seeds", "1", *TINY, *QUIET]
    assert main([*argv, "--data", str(a), "--out", str(out)]) == 0
    first = (out / "runs" / "instance+ce" / "seed0" / "metrics.json").read_text()
    capsys.readouterr()
    assert main([*argv, "--data", str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "data.counts.train" in err and "data.source" in err
    assert (out / "runs" / "instance+ce" / "seed0" / "metrics.json").read_text() == first
    # how the run is executed is not part of its identity: a finished run is reused
    assert main([*argv[:-3], "--workers", "1", "--data", str(a), "--out", str(out)]) == 0
    assert "(reused)" in capsys.readouterr().out


def test_train_resume_refuses_a_checkpoint_of_other_data(tmp_path, capsys):
    a = tree(tmp_path / "A", {"x": 12, "y": 6, "z": 5})
    b = tree(tmp_path / "B", {"x": 12, "y": 6, "z": 5, "w": 5}, seed=1)
    out = tmp_path / "run"
    argv = ["train", *TINY, *QUIET, "--out", str(out)]
    assert main([*argv, "--data", str(a)]) == 0
    config = (out / "config.json").read_text()
    capsys.readouterr()
    assert main([*argv, "--data", str(b), "--resume"]) == 2
    assert "data.classes" in capsys.readouterr().err
    assert (out / "config.json").read_text() == config  # not overwritten before the check
    assert main([*argv, "--data", str(a), "--image-size", "12"]) == 2  # without --resume too
    assert "data.image_size" in capsys.readouterr().err


# ------------------------------------------------------------------ 3. hierarchy levels
def test_levels_keep_folders_that_share_a_name_apart(tmp_path):
    root = tree(tmp_path / "d", {"vehicles/other/x": 6, "vehicles/car/y": 3, "animals/other/z": 4})
    dist = build_index(root).distribution()
    level2 = dist.at_level(2)
    assert dict(zip(level2.class_names, level2.counts.tolist(), strict=True)) == {
        "animals/other": 4,
        "car": 3,
        "vehicles/other": 6,
    }
    assert dist.within_parent_imbalance(1) == {"animals": 1.0, "vehicles": 2.0}
    hier = ClassDistribution.from_counts(
        [5, 7, 2, 3],
        ["a", "b", "c", "d"],
        [("top1", "other"), ("top1", "x"), ("top2", "other"), ("top2", "other")],
    )
    level2 = hier.at_level(2)
    assert dict(zip(level2.class_names, level2.counts.tolist(), strict=True)) == {
        "top1/other": 5,
        "x": 7,
        "top2/other": 5,
    }
    labels, names = build_index(root).level_labels(2)
    assert names == ["animals/other", "car", "vehicles/other"]
    assert np.bincount(labels).tolist() == [4, 3, 6]


# ------------------------------------------------------------------ 4. index cache
def test_cache_round_trips_newlines_and_undecodable_file_names(tmp_path):
    root = tree(tmp_path / "d", {"a": 3, "b": 3, "c": 3})
    src = root / "a" / "img_0000.jpg"
    (root / "b" / "00\n7.jpg").write_bytes(src.read_bytes())  # copies: a link is one file
    with open(os.fsencode(root / "c") + b"/\xff\xfe.jpg", "wb") as fh:
        fh.write(src.read_bytes())
    first = build_index(root)
    again = build_index(root)  # from the cache
    assert len(first) == len(again) == 11
    assert again.paths == first.paths and again.labels.tolist() == first.labels.tolist()
    newline = again.paths.index("b/00\n7.jpg")
    assert again.class_dirs[again.labels[newline]] == "b"
    weird = next(i for i, p in enumerate(again.paths) if p.endswith(".jpg") and "\udcff" in p)
    assert again.class_dirs[again.labels[weird]] == "c"
    assert read_image(again.filepath(weird), 8).shape == (3, 8, 8)


def test_cache_format_rejects_a_damaged_file(tmp_path):
    index = ImageIndex(tmp_path, ["a/1.jpg", "a/2.jpg"], np.array([0, 0]), ["a"], np.full(2, -1))
    index.save(tmp_path / "c.npz", {"": (1, 2, 3)})
    loaded, fp = ImageIndex.load(tmp_path / "c.npz")
    assert loaded.paths == index.paths and fp == {"": (1, 2, 3)}


# ------------------------------------------------------------------ 5. manifests
def _csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_manifest_refuses_duplicate_rows(tmp_path):
    root = tree(tmp_path, {"a": 2, "b": 2})
    rows = "".join(
        f"{p.relative_to(tmp_path)},{p.parent.name}\n" for p in sorted(root.rglob("*.jpg"))
    )
    with pytest.raises(ValueError, match="listed twice"):
        read_manifest(_csv(tmp_path / "m.csv", "path,label\n" + rows * 3))
    with pytest.raises(ValueError, match="with labels 'a' and 'b'"):
        read_manifest(_csv(tmp_path / "m.csv", "a/img_0000.jpg,a\n./a/img_0000.jpg,b\n"))


@pytest.mark.parametrize(
    "header",
    ["path,label", "\ufeffpath,label", "file,class", "label,path", "Image,Category"],
)
def test_manifest_headers_are_recognised(tmp_path, header):
    tree(tmp_path, {"a": 2, "b": 1})
    swapped = header.lower().startswith(("label", "category"))
    rows = [("a/img_0000.jpg", "a"), ("a/img_0001.jpg", "a"), ("b/img_0000.jpg", "b")]
    body = "".join(f"{lab},{p}\n" if swapped else f"{p},{lab}\n" for p, lab in rows)
    index = read_manifest(_csv(tmp_path / "m.csv", header + "\n" + body))
    assert index.paths == [p for p, _ in rows] and index.labels.tolist() == [0, 0, 1]


def test_manifest_with_an_unknown_header_names_the_expected_columns(tmp_path):
    with pytest.raises(ValueError, match="path,label"):
        read_manifest(_csv(tmp_path / "m.csv", "filename_x,kind\na/1.jpg,a\n"))


# ------------------------------------------------------------------ 6. 16-bit images
def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    gray = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "I;16"
    got = read_image(tmp_path / "g.png", 32).float()
    assert abs(got.mean().item() - (gray / 257.0).mean()) < 0.5  # was ~255 (clipped)
    assert torch.equal(got[0], got[2])


# ------------------------------------------------------------------ 7/8. results that are no results
@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_no_training_is_not_a_result(tmp_path, capsys, epochs):
    out = tmp_path / "o"
    assert main(["train", "--epochs", epochs, "--out", str(out), *QUIET]) == 2
    assert "epochs must be an integer >= 1" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strategy", "weighted[alpha=abc]+ce"], "ignored"),
        (["--strategy", "weighted[scheme=smooth_inverse,alpha=abc]+ce"], "must be a number"),
        (["--strategy", "instance+focal[gama=1]"], "gama"),
        (["--pretrained", "missing.pt"], "no such file"),
    ],
)
def test_parameters_that_would_do_nothing_are_refused(tmp_path, capsys, argv, message):
    assert main(["train", *argv, "--epochs", "1", "--out", str(tmp_path / "o"), *QUIET]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ 9. strict JSON
def test_every_json_file_is_strict_json(tmp_path):
    root = tree(tmp_path / "d", {"a": 12, "b": 5})  # 2 classes: the medium group is empty
    out = tmp_path / "cmp"
    argv = ["compare", "--data", str(root), "--strategies", "instance+ce", "--seeds", "1"]
    assert main([*argv, *TINY, *QUIET, "--out", str(out)]) == 0
    assert main(["analyze", str(root), "--out", str(tmp_path / "an")]) == 0
    files = [*out.rglob("*.json"), *(tmp_path / "an").rglob("*.json")]
    assert {f.name for f in files} >= {
        "results.json",
        "metrics.json",
        "config.json",
        "distribution.json",
    }
    for f in files:
        strict_loads(f.read_text())  # raises on NaN / Infinity
    metrics = strict_loads((out / "runs" / "instance+ce" / "seed0" / "metrics.json").read_text())
    assert metrics["test"]["summary"]["medium_recall"] is None


# ------------------------------------------------------------------ 11. bad images once per run
def test_a_corrupt_image_is_reported_once_per_run(tmp_path, caplog):
    root = tree(tmp_path / "d", {"a": 30, "b": 30})
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    log = tmp_path / "bad.log"
    data = folder_bundle(root, image_size=8, bad_image_log=log)
    config = TrainConfig(model="small_cnn", epochs=3, batch_size=4, num_workers=2, progress=False)
    result = train(config, data, tmp_path / "run")
    assert len(log.read_text().splitlines()) == 1
    warnings = [r for r in caplog.records if "broken.jpg" in r.getMessage()]
    assert len(warnings) == 1
    assert result.unreadable_images == 1


# ------------------------------------------------------------------ 12. groups
def test_equal_counts_share_a_group_and_a_balanced_set_has_no_tail(tmp_path, capsys):
    assert set(ClassDistribution.from_counts([10] * 6).groups) == {"medium"}
    g = ClassDistribution.from_counts([50, 20, 20, 20, 5, 1]).groups
    assert g[1] == g[2] == g[3]
    root = tree(tmp_path / "d", {c: 4 for c in "abcdef"})
    assert main(["analyze", str(root), "--out", str(tmp_path / "o")]) == 0
    data = json.loads((tmp_path / "o" / "distribution.json").read_text())
    assert {c["group"] for c in data["classes"]} == {"medium"}


# ------------------------------------------------------------------ 13. checkpoints cannot run code
class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_a_crafted_checkpoint_is_refused_before_it_runs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *QUIET]) == 0
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    with open(out / "checkpoint.pt", "wb") as fh:
        pickle.dump({"model": _Payload()}, fh, protocol=2)
    assert main(["train", "--epochs", "1", "--out", str(out), "--resume", *QUIET]) == 2
    assert "loads safely" in capsys.readouterr().err
    assert not marker.exists()


# ------------------------------------------------------------------ 14. divergence
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


# ------------------------------------------------------------------ 15. one process per --out
def test_a_second_process_on_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom longtail._lock import folder_lock\n"
            f"with folder_lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", "--epochs", "1", "--out", str(out), *QUIET]) == 2
        err = capsys.readouterr().err
        assert f"process {holder.pid}" in err and "another --out" in err
    finally:
        holder.kill()
        holder.wait()
    start = time.time()
    assert main(["analyze", "--out", str(out)]) == 0  # the lock went with its holder
    assert time.time() - start < 60


# ------------------------------------------------------------------ val/ beside train/
def test_a_val_folder_is_the_validation_set_and_train_keeps_every_image(tmp_path, caplog):
    root = tmp_path / "split"
    tree(root / "train", {"a": 20, "b": 9}, seed=0)
    tree(root / "val", {"a": 4, "b": 3}, seed=1)
    tree(root / "test", {"a": 5, "b": 5}, seed=2)
    data = folder_bundle(root, image_size=8)
    assert len(data.train) == 29 and len(data.val) == 7 and len(data.test) == 10
    val_files = sorted(data.val.index.filepath(int(i)) for i in data.val.indices)
    assert val_files == sorted(str(p) for p in (root / "val").rglob("*.jpg"))
    assert data.fingerprint()["splits"] == {"val": "folder", "test": "folder"}
    assert "fewer than 5" not in caplog.text
    only_train = tmp_path / "only"
    tree(only_train / "train", {"a": 60, "b": 12}, seed=0)
    tree(only_train / "test", {"a": 5, "b": 5}, seed=2)
    data = folder_bundle(only_train, image_size=8)  # no val/: carved out of train/, and said so
    assert len(data.val) + len(data.train) == 72
    assert "fewer than 5 images of 1 class(es): b (1)" in caplog.text
    (root / "val" / "c").mkdir()
    tree(root / "val", {"c": 1})
    with pytest.raises(ValueError, match="train/ and val/ hold different class folders"):
        folder_bundle(root, image_size=8)
