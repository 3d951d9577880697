import numpy as np
import pytest

from longtail.data.subset import long_tailed_counts, make_long_tailed


def test_exponential_profile_formula():
    c = long_tailed_counts(10, 6000, 100)
    expected = [int(6000 * 100 ** (-i / 9)) for i in range(10)]
    assert c.tolist() == expected
    assert (
        c.sum() == 14886
    )  # the classic Fashion-MNIST-LT / CIFAR-10-LT (IR 100) size at n_max 6000


def test_step_profile():
    assert long_tailed_counts(4, 500, 10, "step").tolist() == [500, 500, 50, 50]
    assert long_tailed_counts(5, 100, 4, "step", minority_fraction=0.4).tolist() == [
        100,
        100,
        100,
        25,
        25,
    ]


def test_make_long_tailed_counts_order_and_seed():
    y = np.repeat(np.arange(4), 50)
    idx = make_long_tailed(y, 10, n_max=40, class_order=[2, 0, 3, 1], seed=3)
    counts = np.bincount(y[idx], minlength=4)
    target = long_tailed_counts(4, 40, 10)
    assert counts[[2, 0, 3, 1]].tolist() == target.tolist()
    assert len(set(idx.tolist())) == idx.size  # no duplicates
    assert np.array_equal(idx, make_long_tailed(y, 10, n_max=40, class_order=[2, 0, 3, 1], seed=3))
    assert not np.array_equal(
        idx, make_long_tailed(y, 10, n_max=40, class_order=[2, 0, 3, 1], seed=4)
    )


def test_make_long_tailed_errors():
    y = np.repeat(np.arange(3), [10, 10, 5])
    with pytest.raises(ValueError, match="lower n_max"):
        make_long_tailed(y, 1, n_max=10)
    with pytest.raises(ValueError, match="permutation"):
        make_long_tailed(y, 2, class_order=[0, 0, 1])
    with pytest.raises(ValueError, match="imbalance_ratio"):
        long_tailed_counts(3, 10, 0.5)
    with pytest.raises(ValueError, match="profile"):
        long_tailed_counts(3, 10, 2, "linear")
