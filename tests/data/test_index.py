import json
import os

import numpy as np
import pytest

from helpers import MILLION_AID_LIKE, write_tree
from longtail.cli import main
from longtail.data.index import ImageIndex, build_index, read_manifest, scan_folder


def test_scan_nested_tree_counts_and_hierarchy(tmp_path):
    root = write_tree(tmp_path / "data", MILLION_AID_LIKE)
    (root / "water_area" / "river" / "notes.txt").write_text("not an image")
    index, fp = scan_folder(root)
    assert len(index) == 25
    assert index.class_names == ("dry_field", "paddy_field", "grassland", "lake", "river")
    assert np.bincount(index.labels).tolist() == [9, 3, 5, 2, 6]
    assert index.hierarchy[0] == ("agriculture_land", "arable_land")
    assert index.hierarchy[3] == ("water_area",)
    assert index.sizes.min() == -1  # not read by the scan
    assert all(s > 0 for s in index.file_sizes())
    assert os.path.exists(index.filepath(0))
    level1, names1 = index.level_labels(1)
    assert names1 == ["agriculture_land", "water_area"]
    assert np.bincount(level1).tolist() == [17, 8]
    level2, names2 = index.level_labels(2)
    assert dict(zip(names2, np.bincount(level2).tolist())) == {
        "arable_land": 12,
        "grassland": 5,
        "lake": 2,
        "river": 6,
    }
    assert "" in fp and "water_area/lake" in fp


def test_cache_reused_until_tree_changes(tmp_path):
    root = write_tree(tmp_path / "data", {"a": 3, "b": 2})
    cache = tmp_path / "cache"
    first = build_index(root, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1
    loaded, _ = ImageIndex.load(files[0])
    assert loaded.paths == first.paths and np.array_equal(loaded.labels, first.labels)
    # A cache of ours that leaves a row out (rows that a scan could give): a reuse returns it,
    # a rescan does not.
    files[0].unlink()
    ImageIndex(first.root, first.paths[1:], first.labels[1:], ["a", "b"], first.sizes[1:]).save(
        files[0], scan_folder(root)[1]
    )
    assert len(build_index(root, cache_dir=cache)) == 4
    assert len(build_index(root, cache_dir=cache, rescan=True)) == 5
    write_tree(root, {"c": 1}, seed=1)  # a new class folder changes the root's mtime
    assert build_index(root, cache_dir=cache).class_dirs == ["a", "b", "c"]


def test_manifest(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nimg/1.jpg,water_area/lake\nimg/2.jpg,city\nimg/3.jpg,city\n")
    index = read_manifest(manifest)
    assert index.class_dirs == ["city", "water_area/lake"]
    assert index.labels.tolist() == [1, 0, 0]
    assert index.hierarchy == ((), ("water_area",))
    bad = tmp_path / "bad.csv"
    bad.write_text("a.jpg,\n")
    with pytest.raises(ValueError, match="lack a path or a label"):
        read_manifest(bad)


def test_index_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_index(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        build_index(tmp_path / "empty")
    flat = write_tree(tmp_path / "flat", {"": 2})
    with pytest.raises(ValueError, match="no class folders"):
        build_index(flat)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="not a .csv"):
        build_index(tmp_path / "x.txt")


def test_cli_analyze_folder_reports_levels(tmp_path):
    root = write_tree(tmp_path / "data", MILLION_AID_LIKE)
    out = tmp_path / "out"
    assert main(["analyze", str(root), "--out", str(out)]) == 0
    data = json.loads((out / "distribution.json").read_text())
    assert {c["name"]: c["count"] for c in data["classes"]} == {
        "dry_field": 9,
        "paddy_field": 3,
        "grassland": 5,
        "lake": 2,
        "river": 6,
    }
    assert data["levels"]["1"]["counts"] == {"agriculture_land": 17, "water_area": 8}
    assert data["levels"]["2"]["counts"]["arable_land"] == 12
    assert data["imbalance_ratio"] == pytest.approx(4.5)
    for name in ("report.md", "class_counts.png", "lorenz.png"):
        assert (out / name).stat().st_size > 0
    assert "Level 1" in (out / "report.md").read_text()


def test_cli_analyze_embedded_and_errors(tmp_path, capsys):
    assert main(["analyze", "--out", str(tmp_path / "emb"), "--shots"]) == 0
    data = json.loads((tmp_path / "emb" / "distribution.json").read_text())
    assert data["total"] == 14639 and data["grouping"]["rule"] == "shots"
    assert main(["analyze", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_scan_reports_progress_per_top_folder(tmp_path):
    root = write_tree(tmp_path / "data", MILLION_AID_LIKE)
    calls = []
    scan_folder(root, progress=lambda done, total, files: calls.append((done, total, files)))
    assert [c[:2] for c in calls] == [(1, 2), (2, 2)]
    assert calls[-1][2] == 25


def test_threaded_scan_gives_the_same_index(tmp_path):
    tree = {f"top{t}/sub{s}/leaf{t}{s}": 1 + (3 * t + s) % 5 for t in range(6) for s in range(2)}
    root = write_tree(tmp_path / "data", tree)
    one, fp_one = scan_folder(root, workers=1)
    many, fp_many = scan_folder(root, workers=4)
    assert one.paths == many.paths and one.class_names == many.class_names
    assert np.array_equal(one.labels, many.labels) and fp_one == fp_many
    assert np.bincount(many.labels).tolist() == [
        1 + (3 * t + s) % 5 for t in range(6) for s in range(2)
    ]
