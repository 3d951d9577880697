"""What a shared output or cache folder, or a data folder changed behind longtail's back, may make
it do: never write through a planted link, never believe a planted index cache, never reuse a run
whose images changed, never read a split folder that leads outside, never drop folders or rows
without a word."""

import os
import shutil
import stat

import numpy as np
import pytest

from helpers import QUIET, TINY, write_tree
from longtail._io import UMASK, atomic_write, open_output, write_text
from longtail.cli import main
from longtail.data.bundle import folder_bundle
from longtail.data.datasets import record_bad_image
from longtail.data.index import ImageIndex, build_index, read_manifest, scan_folder
from longtail.errors import LongtailError, OutputError


def victim(tmp_path):
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    return path


# ------------------------------------------------------------------ planted links in --out
@pytest.mark.parametrize("name", [".lock", ".longtail-output"])
def test_a_planted_link_in_out_is_refused_and_its_target_untouched(tmp_path, capsys, name):
    target = victim(tmp_path)
    missing = tmp_path / "created-elsewhere"
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(target if name == ".lock" else missing)
    data = write_tree(tmp_path / "d", {"a": 6, "b": 4})
    assert main(["analyze", str(data), "--out", str(out)]) == 2
    assert "is a link" in capsys.readouterr().err
    assert target.read_text() == "keep me" and not missing.exists()


def test_the_bad_image_log_is_never_written_through_a_link(tmp_path):
    target = victim(tmp_path)
    log = tmp_path / "bad_images.log"
    log.symlink_to(target)
    with pytest.raises(OutputError, match="is a link"):
        record_bad_image(log, "x.jpg", "broken")
    assert target.read_text() == "keep me"


def test_a_hard_link_is_not_taken_for_longtails_own_file(tmp_path):
    target = victim(tmp_path)
    os.link(target, tmp_path / ".lock")
    with pytest.raises(OutputError):
        os.close(open_output(tmp_path / ".lock"))
    assert target.read_text() == "keep me"


def test_atomic_writes_replace_a_link_and_never_follow_a_planted_temporary_name(tmp_path):
    target = victim(tmp_path)
    out = tmp_path / "report.md"
    for pid in (os.getpid(), os.getpid() + 1):  # the old fixed temporary names
        (tmp_path / f".report.md.tmp{pid}").symlink_to(target)
    out.symlink_to(target)
    write_text(out, "new")
    assert not out.is_symlink() and out.read_text() == "new"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~UMASK  # not mkstemp's private 0600
    assert target.read_text() == "keep me"
    assert {p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")} == set()

    def fail(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="could not write"):
        atomic_write(out, fail)
    assert out.read_text() == "new"


def test_a_planted_run_folder_link_in_a_comparison_is_refused(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "cmp"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "instance+ce").symlink_to(elsewhere)
    argv = ["compare", "--strategies", "instance+ce", "--seeds", "1", *TINY, *QUIET]
    data = write_tree(tmp_path / "d", {"a": 12, "b": 6, "c": 5})
    assert main([*argv, "--data", str(data), "--out", str(out)]) == 2
    assert "is a link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


# ------------------------------------------------------------------ planted index caches
def _cache_file(cache_dir):
    (only,) = list(cache_dir.iterdir())
    return only


def test_a_cache_whose_rows_lead_outside_is_rebuilt(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LONGTAIL_CACHE", str(cache))
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2})
    write_tree(tmp_path / "secret", {"x": 1})
    first = build_index(root)
    path = _cache_file(cache)
    _, fp = ImageIndex.load(path)
    forged = ["a/../../secret/x/img_0000.jpg", *first.paths[1:]]
    ImageIndex(first.root, forged, first.labels, first.class_dirs, first.sizes).save(path, fp)
    again = build_index(root)
    assert again.paths == first.paths
    forged_dirs = ["a/../../secret/x", "b"]
    ImageIndex(first.root, first.paths, first.labels, forged_dirs, first.sizes).save(path, fp)
    assert build_index(root).class_dirs == ["a", "b"]


def test_a_cache_that_others_can_write_is_not_believed(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LONGTAIL_CACHE", str(cache))
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2})
    first = build_index(root)
    path = _cache_file(cache)
    _, fp = ImageIndex.load(path)
    # a consistent cache that leaves a row out (it would be believed if it were ours)
    ImageIndex(first.root, first.paths[1:], first.labels[1:], ["a", "b"], first.sizes[1:]).save(
        path, fp
    )
    assert len(build_index(root)) == 4  # ours: believed
    path.chmod(path.stat().st_mode | stat.S_IWOTH)
    assert len(build_index(root)) == 5  # writable by others: scanned again


def test_a_folder_rebuilt_with_its_old_times_is_scanned_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGTAIL_CACHE", str(tmp_path / "cache"))
    root = write_tree(tmp_path / "d", {"a": 3, "b": 2})
    assert build_index(root).class_dirs == ["a", "b"]
    times = {d: os.stat(root / d) for d in ("", "a", "b")}
    shutil.rmtree(root)
    write_tree(root, {"a": 3, "b": 2, "c": 2})  # unpacked again, one class more
    for d, info in times.items():  # a reproducible archive restores the folder times
        os.utime(root / d, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert os.stat(root).st_mtime_ns == times[""].st_mtime_ns
    assert build_index(root).class_dirs == ["a", "b", "c"]
    assert scan_folder(root)[1][""] != (times[""].st_mtime_ns,) * 3


# ------------------------------------------------------------------ split folders and layout
def test_a_split_folder_linked_outside_needs_allow_outside(tmp_path):
    data = write_tree(tmp_path / "d", {"train/a": 6, "train/b": 4})
    write_tree(tmp_path / "other", {"a": 2, "b": 2}, seed=1)
    (data / "val").symlink_to(tmp_path / "other")
    with pytest.raises(LongtailError, match="outside the data folder.*--allow-outside"):
        folder_bundle(data, image_size=8)
    bundle = folder_bundle(data, image_size=8, allow_outside=True)
    assert len(bundle.val) == 4


def test_folders_beside_train_are_named_not_dropped(tmp_path, capsys):
    data = write_tree(tmp_path / "d", {"train/a": 6, "train/b": 4, "car": 3, "boat": 3})
    with pytest.raises(LongtailError, match="also boat, car"):
        folder_bundle(data, image_size=8)
    assert main(["analyze", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "boat, car" in capsys.readouterr().err
    shutil.rmtree(data / "car")
    shutil.rmtree(data / "boat")
    (data / ".git").mkdir()  # hidden folders and longtail's own output folders are not data
    assert main(["analyze", str(data), "--out", str(data / "report")]) == 0
    assert main(["analyze", str(data), "--out", str(tmp_path / "o2")]) == 0


# ------------------------------------------------------------------ manifests
@pytest.mark.parametrize(
    "rows, message",
    [
        ("a.jpg,x\npath,label\nb.jpg,y\n", "row 3 .*is a header"),
        ("a.jpg,x\nb.jpg,/\n", "row 3 has the label '/'"),
        ("a.jpg,x\nb.jpg,x//y\n", "row 3 has the label 'x//y'"),
        ("a.jpg,x\nb.jpg,../c\n", "row 3 has the label '../c'"),
    ],
)
def test_manifest_rows_that_make_no_class_are_refused_by_row(tmp_path, rows, message):
    write_tree(tmp_path, {"": 0})
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\n" + rows)
    with pytest.raises(LongtailError, match=message):
        read_manifest(csv)


# ------------------------------------------------------------------ images changed in place
def _rewrite_images(root, seed):
    rewritten = write_tree(root / "_new", {"x": 12, "y": 6, "z": 5}, seed=seed)
    for path in sorted((rewritten).rglob("*.jpg")):
        target = root / path.relative_to(rewritten)
        path.replace(target)
    shutil.rmtree(rewritten)


def test_images_rewritten_in_place_are_a_new_run(tmp_path, capsys):
    data = write_tree(tmp_path / "d", {"x": 12, "y": 6, "z": 5})
    out = tmp_path / "cmp"
    argv = ["compare", "--strategies", "instance+ce", "--seeds", "1", *TINY, *QUIET]
    argv += ["--data", str(data), "--out", str(out)]
    assert main(argv) == 0
    assert main(argv) == 0
    assert "(reused)" in capsys.readouterr().out
    names = sorted(p.relative_to(data) for p in data.rglob("*.jpg"))
    _rewrite_images(data, seed=7)  # same names, same labels, other pixels
    assert sorted(p.relative_to(data) for p in data.rglob("*.jpg")) == names
    assert main(argv) == 2  # the old run holds other images: refused, naming the field
    assert "data.content.train" in capsys.readouterr().err
    run = tmp_path / "run"
    train = ["train", *TINY, *QUIET, "--data", str(data), "--out", str(run)]
    assert main(train) == 0
    _rewrite_images(data, seed=8)
    assert main([*train, "--resume"]) == 2
    assert "data.content" in capsys.readouterr().err


def test_the_content_check_reads_sizes_and_times_not_pixels(tmp_path):
    data = write_tree(tmp_path / "d", {"x": 4, "y": 3})
    before = folder_bundle(data, image_size=8).fingerprint()["content"]
    target = data / "x" / "img_0000.jpg"
    info = os.stat(target)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    after = folder_bundle(data, image_size=8).fingerprint()["content"]
    assert (
        after["train"] != before["train"]
        or after["val"] != before["val"]
        or (after["test"] != before["test"])
    )
    index = build_index(data)
    sizes, mtimes = index.file_stats()
    assert np.all(sizes > 0) and np.all(mtimes > 0)
