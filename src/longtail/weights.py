"""Class and per-sample weight schemes for re-weighting and re-sampling.

Every scheme maps per-class counts n_j (N samples, K classes) to a weight w_j:

==================  ===============================  ==============================================
scheme              formula                          source
==================  ===============================  ==============================================
``uniform``         w = 1                            (no re-weighting)
``inverse``         w = 1 / n                        inverse class frequency
``smooth_inverse``  w = 1 / (n + alpha)              additive smoothing of the inverse frequency
``class_balanced``  w = N / (K n)                    scikit-learn's ``class_weight="balanced"``
``power``           w = n^(-q)                       q = 0.5: square-root inverse (Mahajan et al., ECCV 2018)
``sqrt_inverse``    w = n^(-1/2)                     ``power`` with q = 0.5
``effective_number``w = (1 - beta) / (1 - beta^n)    Cui et al., "Class-Balanced Loss Based on
                                                     Effective Number of Samples", CVPR 2019
==================  ===============================  ==============================================

``normalize="classes"`` rescales class weights to sum to K (as Cui et al. do);
``normalize="samples"`` rescales them so the per-sample weights sum to N (the loss scale of plain CE).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from longtail._checks import as_counts, as_labels
from longtail.errors import LongtailError


def _uniform(n: np.ndarray, **_: float) -> np.ndarray:
    return np.ones_like(n, dtype=np.float64)


def _inverse(n: np.ndarray, **_: float) -> np.ndarray:
    return 1.0 / n


def _smooth_inverse(n: np.ndarray, alpha: float, **_: float) -> np.ndarray:
    if not alpha >= 0:
        raise LongtailError(f"alpha must be >= 0, got {alpha}")
    return 1.0 / (n + alpha)


def _class_balanced(n: np.ndarray, total: float, num_classes: int, **_: float) -> np.ndarray:
    return total / (num_classes * n)


def _power(n: np.ndarray, q: float, **_: float) -> np.ndarray:
    if not np.isfinite(q):
        raise LongtailError(f"q must be finite, got {q}")
    return n ** (-float(q))


def _sqrt_inverse(n: np.ndarray, **_: float) -> np.ndarray:
    return n**-0.5


def _effective_number(n: np.ndarray, beta: float, **_: float) -> np.ndarray:
    if not 0 <= beta < 1:
        raise LongtailError(f"beta must lie in [0, 1), got {beta}")
    # (1 - beta) / (1 - beta^n), computed with expm1 so beta close to 1 keeps its precision.
    if beta == 0:
        return np.ones_like(n, dtype=np.float64)
    return (1.0 - beta) / -np.expm1(n * np.log(beta))


SCHEMES: dict[str, Callable[..., np.ndarray]] = {
    "uniform": _uniform,
    "inverse": _inverse,
    "smooth_inverse": _smooth_inverse,
    "class_balanced": _class_balanced,
    "power": _power,
    "sqrt_inverse": _sqrt_inverse,
    "effective_number": _effective_number,
}


SCHEME_PARAMS: dict[str, tuple[str, ...]] = {
    "smooth_inverse": ("alpha",),
    "power": ("q",),
    "effective_number": ("beta",),
}
"""The parameters each scheme reads; the other schemes take none."""


def check_scheme_params(scheme: str, params: dict[str, Any]) -> dict[str, float]:
    """``params`` if ``scheme`` reads every one of them and each is a real number, else
    ``ValueError`` naming the parameter that would be ignored or is not a number."""
    if scheme not in SCHEMES:
        raise LongtailError(f"unknown weight scheme {scheme!r}; choose one of {sorted(SCHEMES)}")
    accepted = SCHEME_PARAMS.get(scheme, ())
    for key, value in params.items():
        if key not in accepted:
            users = [s for s, keys in SCHEME_PARAMS.items() if key in keys]
            hint = f"; it is read by scheme {', '.join(users)}" if users else ""
            raise LongtailError(
                f"weight scheme {scheme!r} takes {', '.join(accepted) or 'no parameters'}, "
                f"so {key}={value!r} would be ignored{hint}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise LongtailError(f"{key} must be a number, got {value!r}")
    return {k: float(v) for k, v in params.items()}


def class_weights(
    counts: Any,
    scheme: str = "inverse",
    *,
    alpha: float = 1.0,
    q: float = 0.5,
    beta: float = 0.999,
    normalize: Literal["classes", "samples"] | None = None,
    allow_empty: bool = False,
) -> np.ndarray:
    """Per-class weights (float64, length K) from per-class counts by ``scheme`` (see module doc).

    Zero-count classes raise ``ValueError`` unless ``allow_empty=True``, which gives them weight 0.

    Example:
        >>> class_weights([100, 10], "inverse").tolist()
        [0.01, 0.1]
    """
    if scheme not in SCHEMES:
        raise LongtailError(f"unknown weight scheme {scheme!r}; choose one of {sorted(SCHEMES)}")
    if normalize not in (None, "classes", "samples"):
        raise LongtailError(f"normalize must be None, 'classes' or 'samples', got {normalize!r}")
    n = as_counts(counts).astype(np.float64)
    empty = n == 0
    if empty.all():
        raise LongtailError("all class counts are zero")
    if empty.any() and not allow_empty:
        raise LongtailError(
            f"classes {np.flatnonzero(empty).tolist()} have no samples, so their weight is undefined; "
            "remove them, or pass allow_empty=True to give them weight 0"
        )
    w = np.zeros_like(n)
    present = ~empty
    w[present] = SCHEMES[scheme](
        n[present], alpha=alpha, q=q, beta=beta, total=n.sum(), num_classes=n.size
    )
    if normalize == "classes":
        w *= n.size / w.sum()
    elif normalize == "samples":
        w *= n.sum() / (w * n).sum()
    return w


def sample_weights(
    labels: Any,
    scheme: str = "inverse",
    *,
    num_classes: int | None = None,
    normalize: Literal["samples"] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Per-sample weights w_{y_i} (float64, length N) for integer ``labels``.

    ``normalize="samples"`` rescales them to sum to N. Other keyword arguments go to
    :func:`class_weights`.
    """
    y = as_labels(labels, num_classes)
    cw = class_weights(
        np.bincount(y, minlength=num_classes or 0), scheme, allow_empty=True, **kwargs
    )
    w = cw[y]
    if normalize == "samples":
        w *= y.size / w.sum()
    elif normalize is not None:
        raise LongtailError(
            f"normalize must be None or 'samples' for sample weights, got {normalize!r}"
        )
    return w


__all__ = [
    "SCHEMES",
    "SCHEME_PARAMS",
    "check_scheme_params",
    "class_weights",
    "sample_weights",
]
