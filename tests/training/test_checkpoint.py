"""Checkpoints: written atomically, refused before anything in them runs."""

from __future__ import annotations

import errno
import os
import pickle

import pytest
import torch

from helpers import QUIET, run_cli
from longtail.cli import main


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    from longtail.training import checkpoint

    path = tmp_path / "c.pt"
    checkpoint.save_atomic({"model": {"w": torch.ones(2)}}, path)
    real_save = torch.save

    def disk_full(obj, fh, *args, **kwargs):
        real_save(obj, fh)  # half a file reaches the disk, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(
        OSError, match="No space left on device.*previous checkpoint is intact.*--resume"
    ):
        checkpoint.save_atomic({"model": {"w": torch.zeros(2)}}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file keeps the disk full
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(2))  # the old one survives


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


def test_a_truncated_checkpoint_is_named(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["train", "--epochs", "1", *QUIET, "--out", out]
    assert run_cli(argv, capsys)[0] == 0
    data = (out / "checkpoint.pt").read_bytes()
    for cut in (0, len(data) // 2, len(data) - 30):
        (out / "checkpoint.pt").write_bytes(data[:cut])
        code, _, err = run_cli([*argv, "--resume"], capsys)
        assert code == 2 and "checkpoint.pt is damaged" in " ".join(err.split()), err


def test_a_full_disk_while_checkpointing_says_what_to_do(tmp_path, capsys, monkeypatch):
    import torch

    from longtail.training import checkpoint

    checkpoint.save_atomic({"model": {"w": torch.zeros(2)}}, tmp_path / "checkpoint.pt")
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def full_disk(state, fh):  # what torch's zip writer raises when a write fails for space
        fh.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(OSError, match="is the disk full.*free some space.*--resume"):
        checkpoint.save_atomic({"model": {"w": torch.ones(2)}}, tmp_path / "checkpoint.pt")
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left
