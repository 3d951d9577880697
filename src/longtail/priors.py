"""Class priors a model may be deployed under, and its accuracy there.

A classifier's per-class recall r_j does not depend on how often class j occurs in the test set,
so its accuracy on a test set whose classes follow a prior q is exactly

    acc(q) = sum_j q_j r_j

(balanced accuracy is acc(uniform); overall accuracy on a test set drawn like the training set is
acc(training prior)). This is how a model is judged under a shifted test prior without a new test
set: the forward / backward long-tailed test protocol of Zhang et al., "Self-Supervised
Aggregation of Diverse Experts for Test-Agnostic Long-Tailed Recognition" (SADE, NeurIPS 2022),
where the test prior runs from the training prior through uniform to the training prior reversed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from longtail._checks import as_counts

# the exponents t of the shifted priors q ~ pi^t that a comparison reports: the training prior
# (t = 1) and beyond, through uniform (t = 0) to the training prior reversed (t = -1) and beyond
SHIFT_EXPONENTS = (1.5, 1.0, 0.5, 0.25, 0.0, -0.25, -0.5, -1.0, -1.5)


def power_prior(counts: Any, exponent: float) -> np.ndarray:
    """The prior q_j = n_j^t / sum_k n_k^t over the classes with training images (0 elsewhere):
    t = 1 is the training prior, t = 0 uniform, t = -1 the training prior reversed (the head
    classes as rare as the tail classes were; for an exponential profile exactly the reversed
    order). Its imbalance ratio is the training one to the power |t|."""
    c = as_counts(counts).astype(np.float64)
    if not np.isfinite(exponent):
        raise ValueError(f"exponent must be a finite number, got {exponent}")
    q = np.zeros_like(c)
    present = c > 0
    q[present] = np.exp(exponent * (np.log(c[present]) - np.log(c[present]).mean()))
    return q / q.sum()


def prior_accuracy(recall: Any, prior: Any) -> float:
    """acc(q) = sum_j q_j r_j: the accuracy expected on test data whose classes follow ``prior``
    (normalised here). A class whose recall is unknown (nan: no test images) is left out and the
    prior renormalised over the others; nan when none is left."""
    r = np.asarray(recall, dtype=np.float64)
    q = np.asarray(prior, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError(f"recall {r.shape} and prior {q.shape} must be vectors of one length")
    if not np.all(np.isfinite(q)) or np.any(q < 0) or q.sum() <= 0:
        raise ValueError("prior must be finite, non-negative and not all zero")
    known = np.isfinite(r) & (q > 0)
    if not known.any():
        return float("nan")
    return float((q[known] * r[known]).sum() / q[known].sum())


def shifted_accuracies(
    recall: Any, counts: Any, exponents: Sequence[float] = SHIFT_EXPONENTS
) -> list[float]:
    """acc(q_t) for q_t = :func:`power_prior` (counts, t), one value per exponent t."""
    return [prior_accuracy(recall, power_prior(counts, t)) for t in exponents]


def shift_label(exponent: float, imbalance_ratio: float) -> str:
    """How a shifted prior reads: "uniform", "train x1.5 (IR 1000)", "reversed x0.5 (IR 10)"."""
    if exponent == 0:
        return "uniform"
    side = "train" if exponent > 0 else "reversed"
    return f"{side} x{abs(exponent):g} (IR {imbalance_ratio ** abs(exponent):.0f})"


__all__ = [
    "SHIFT_EXPONENTS",
    "power_prior",
    "prior_accuracy",
    "shift_label",
    "shifted_accuracies",
]
