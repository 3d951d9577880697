import warnings

import numpy as np
import pytest

from longtail.weights import check_scheme_params, class_weights, sample_weights

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


def test_defaults_of_the_scheme_parameters():
    n = COUNTS.astype(float)
    np.testing.assert_allclose(class_weights(COUNTS, "smooth_inverse"), 1 / (n + 1))  # alpha 1
    np.testing.assert_allclose(class_weights(COUNTS, "power"), n**-0.5)  # q 0.5
    np.testing.assert_allclose(
        class_weights(COUNTS, "effective_number"), (1 - 0.999) / (1 - 0.999**n)
    )  # beta 0.999


def test_parameter_boundaries():
    n = COUNTS.astype(float)
    np.testing.assert_allclose(class_weights(COUNTS, "smooth_inverse", alpha=0), 1 / n)
    np.testing.assert_allclose(class_weights(COUNTS, "smooth_inverse", alpha=0.5), 1 / (n + 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # beta = 0 is uniform, without a log(0) on the way
        np.testing.assert_allclose(class_weights(COUNTS, "effective_number", beta=0), 1)


def test_sample_weights_with_classes_absent_from_the_labels():
    w = sample_weights([0, 0, 2], "inverse", num_classes=4)
    np.testing.assert_allclose(w, [0.5, 0.5, 1.0])


def test_check_scheme_params():
    assert check_scheme_params("smooth_inverse", {"alpha": 3}) == {"alpha": 3.0}
    assert check_scheme_params("inverse", {}) == {}
    assert check_scheme_params("effective_number", {"beta": 0.9}) == {"beta": 0.9}
    for scheme, params, message in [
        ("nope", {}, "unknown weight scheme"),
        ("inverse", {"alpha": 3}, "takes no parameters, so alpha=3 would be ignored"),
        (
            "power",
            {"beta": 0.9},
            "takes q, so beta=0.9 would be ignored; it is read by scheme effective_number",
        ),
        ("power", {"zeta": 1}, "zeta=1 would be ignored$"),
        ("power", {"q": "x"}, "q must be a number"),
        ("power", {"q": True}, "q must be a number"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_scheme_params(scheme, params)
