from __future__ import annotations

import os

import pytest

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
