import numpy as np
import pytest

from helpers import MILLION_AID_LIKE, write_tree
from longtail.data.million_aid import MillionAID


@pytest.fixture(scope="module")
def maid_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("maid")
    write_tree(root / "train", MILLION_AID_LIKE, size=10)
    return root


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (1, {"agriculture_land": 17, "water_area": 8}),
        (2, {"arable_land": 12, "grassland": 5, "lake": 2, "river": 6}),
        (3, {"dry_field": 9, "paddy_field": 3, "grassland": 5, "lake": 2, "river": 6}),
    ],
)
def test_levels(maid_root, level, expected):
    with pytest.warns(UserWarning, match="51"):
        ds = MillionAID(maid_root, "train", level=level, image_size=8)
    counts = np.bincount(ds.targets.numpy())
    assert dict(zip(ds.class_names, counts.tolist())) == expected
    x, y = ds[0]
    assert x.shape == (3, 8, 8)


def test_layout_errors(maid_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="captain-whu.github.io"):
        MillionAID(maid_root, "test")
    write_tree(tmp_path / "train", {"forest/pine": 2})
    with pytest.raises(ValueError, match="unknown level-1 folders"):
        MillionAID(tmp_path, "train")
    with pytest.raises(ValueError, match="level must be"):
        MillionAID(maid_root, level=4)
