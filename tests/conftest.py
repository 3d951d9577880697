from __future__ import annotations

import os

import pytest

from helpers import write_tree

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Index caches go to a temporary folder, never the user's home."""
    monkeypatch.setenv("LONGTAIL_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _torch_threads():
    """A test that sets torch's thread count (``longtail train`` does) leaves it as it was."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


IMAGE_TREE = {"animals/cat": 24, "animals/dog": 12, "plants/tree": 8, "plants/flower": 6}


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    """Two parents, four classes of 20 px JPEGs, and one file in dog/ that is not a JPEG."""
    root = write_tree(tmp_path_factory.mktemp("imgs") / "data", IMAGE_TREE, size=20)
    (root / "animals" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root


@pytest.fixture(autouse=True)
def _compare_in_this_process(monkeypatch):
    """``compare``'s default ``--jobs auto`` runs trainings in this process, where a test can
    watch them; the tests of local jobs ask for them by number."""
    monkeypatch.setattr("longtail.experiments.execute.auto_jobs", lambda: 1)
