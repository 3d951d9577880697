"""No silent wrong results: each test here failed before its fix (a stale, merged or leaked number,
or a result that is no result), and passes now."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import QUIET, small_tree
from longtail.cli import main
from longtail.data.bundle import folder_bundle
from longtail.data.decode import read_image
from longtail.data.index import ImageIndex, build_index, read_manifest
from longtail.distribution import ClassDistribution
from longtail.training.loop import TrainConfig, train

# ------------------------------------------------------------------ 1. run identity


# ------------------------------------------------------------------ 3. hierarchy levels
def test_levels_keep_folders_that_share_a_name_apart(tmp_path):
    root = small_tree(
        tmp_path / "d", {"vehicles/other/x": 6, "vehicles/car/y": 3, "animals/other/z": 4}
    )
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
    root = small_tree(tmp_path / "d", {"a": 3, "b": 3, "c": 3})
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
    root = small_tree(tmp_path, {"a": 2, "b": 2})
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
    small_tree(tmp_path, {"a": 2, "b": 1})
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


# ------------------------------------------------------------------ 11. bad images once per run
def test_a_corrupt_image_is_reported_once_per_run(tmp_path, caplog):
    root = small_tree(tmp_path / "d", {"a": 30, "b": 30})
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
    root = small_tree(tmp_path / "d", {c: 4 for c in "abcdef"})
    assert main(["analyze", str(root), "--out", str(tmp_path / "o")]) == 0
    data = json.loads((tmp_path / "o" / "distribution.json").read_text())
    assert {c["group"] for c in data["classes"]} == {"medium"}


# ------------------------------------------------------------------ 13. checkpoints cannot run code
class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


# ------------------------------------------------------------------ 14. divergence


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
