import numpy as np
import pytest

from longtail.weights import class_weights, sample_weights

COUNTS = np.array([100, 10, 1])


@pytest.mark.parametrize(
    ("scheme", "kwargs", "expected"),
    [
        ("uniform", {}, [1, 1, 1]),
        ("inverse", {}, [0.01, 0.1, 1.0]),
        ("smooth_inverse", {"alpha": 10}, [1 / 110, 1 / 20, 1 / 11]),
        ("class_balanced", {}, [111 / 300, 111 / 30, 111 / 3]),
        ("power", {"q": 0.5}, [0.1, 10**-0.5, 1.0]),
        ("power", {"q": 0.0}, [1, 1, 1]),
        ("sqrt_inverse", {}, [0.1, 10**-0.5, 1.0]),
        ("effective_number", {"beta": 0.9}, [0.1 / (1 - 0.9**100), 0.1 / (1 - 0.9**10), 1.0]),
    ],
)
def test_class_weight_formulas(scheme, kwargs, expected):
    np.testing.assert_allclose(class_weights(COUNTS, scheme, **kwargs), expected, rtol=1e-12)


def test_effective_number_limits():
    # beta -> 1 tends to inverse frequency (up to scale); beta = 0 gives uniform weights.
    w = class_weights(COUNTS, "effective_number", beta=0.999999)
    np.testing.assert_allclose(w / w[-1], [0.01, 0.1, 1.0], rtol=1e-3)
    np.testing.assert_allclose(class_weights(COUNTS, "effective_number", beta=0.0), [1, 1, 1])


def test_normalisations():
    w = class_weights(COUNTS, "inverse", normalize="classes")
    assert w.sum() == pytest.approx(3)
    w = class_weights(COUNTS, "inverse", normalize="samples")
    assert (w * COUNTS).sum() == pytest.approx(COUNTS.sum())


def test_sample_weights():
    y = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(sample_weights(y, "inverse"), [1 / 3, 1 / 3, 1 / 3, 1])
    w = sample_weights(y, "inverse", normalize="samples")
    assert w.sum() == pytest.approx(4)
    np.testing.assert_allclose(w[:3].sum(), w[3])  # each class gets the same total weight


def test_empty_classes():
    with pytest.raises(ValueError, match=r"classes \[1\] have no samples.*allow_empty=True"):
        class_weights([5, 0, 2])
    for scheme in ("inverse", "smooth_inverse", "class_balanced", "power", "effective_number"):
        w = class_weights([5, 0, 2], scheme, allow_empty=True)
        assert w[1] == 0 and np.all(np.isfinite(w)) and np.all(w[[0, 2]] > 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: class_weights([3, -1]), ">= 0"),
        (lambda: class_weights([0, 0], allow_empty=True), "all class counts are zero"),
        (lambda: class_weights([3, 1], "smooth_inverse", alpha=-1), "alpha must be >= 0"),
        (lambda: class_weights([3, 1], "effective_number", beta=1.0), r"beta must lie in \[0, 1\)"),
        (lambda: class_weights([3, 1], "effective_number", beta=-0.1), "beta"),
        (lambda: class_weights([3, 1], "nope"), "unknown weight scheme"),
        (lambda: class_weights([3, 1], normalize="all"), "normalize"),
        (lambda: sample_weights([0, 4], num_classes=3), "out of range"),
        (lambda: sample_weights([0, -2]), "negative"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
