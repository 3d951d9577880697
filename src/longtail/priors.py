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

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from longtail._checks import as_counts
from longtail._io import strict_loads
from longtail._text import terminal_text
from longtail.errors import LongtailError, shorten

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
        raise LongtailError(f"exponent must be a finite number, got {exponent}")
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
        raise LongtailError(f"recall {r.shape} and prior {q.shape} must be vectors of one length")
    if not np.all(np.isfinite(q)) or np.any(q < 0) or q.sum() <= 0:
        raise LongtailError("prior must be finite, non-negative and not all zero")
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


TARGETS = ("uniform", "train")
MAX_PRIOR_FILE = 1 << 20


def _prior_table(text: str) -> dict[str, float]:
    """A class -> share table: a JSON object, or the JSON / CSV (``class,share`` rows) file
    named by ``text``."""
    if text.lstrip().startswith("{"):
        table = strict_loads(text)
    else:
        path = Path(text)
        if not path.is_file() or path.stat().st_size > MAX_PRIOR_FILE:
            raise LongtailError(
                f"target prior {text!r}: expected uniform, train or a regular file of at most "
                "1 MiB holding a class -> share table (JSON object, or CSV rows class,share)"
            )
        body = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            table = strict_loads(body)
        else:
            rows = [r for r in csv.reader(io.StringIO(body)) if r and not r[0].startswith("#")]
            if rows and rows[0][:2] == ["class", "share"]:
                rows = rows[1:]
            if any(len(r) != 2 for r in rows):
                raise LongtailError(f"{path}: every row must be class,share")
            twice = sorted(name for name, n in Counter(r[0] for r in rows).items() if n > 1)
            if twice:
                raise LongtailError(
                    f"{path} gives the share of {terminal_text(shorten(twice))} twice; give "
                    "each class once"
                )
            table = {r[0]: _share(r[1], r[0]) for r in rows}
    if not isinstance(table, dict) or not table:
        raise LongtailError(f"target prior {text!r} must be a non-empty class -> share table")
    return {str(k): _share(v, k) for k, v in table.items()}


def _share(value: Any, name: Any) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise LongtailError(
            f"target prior: the share of {name!r} is not a number: {value!r}"
        ) from None
    if not (np.isfinite(share) and share >= 0):
        raise LongtailError(f"target prior: the share of {name!r} must be finite and >= 0")
    return share


def check_target_prior(text: str) -> None:
    """Refuse a ``--target-prior`` that is not uniform, train or a readable table."""
    if text not in TARGETS:
        _prior_table(text)


def canonical_target(text: str) -> str:
    """``uniform``, ``train``, or the table's content as compact JSON (so a run's identity holds
    the shares, not the name of a file that may change)."""
    if text in TARGETS:
        return text
    return json.dumps(_prior_table(text), separators=(",", ":"), ensure_ascii=False)


def target_prior(text: str, counts: Any, class_names: Sequence[str]) -> np.ndarray | None:
    """The target prior [K] of ``text`` for classes ``class_names`` with training ``counts``;
    None for ``uniform`` (balanced accuracy). A table must name every class, and nothing else."""
    if text == "uniform":
        return None
    if text == "train":
        return power_prior(counts, 1.0)
    table = _prior_table(text)
    names = [str(n) for n in class_names]
    missing = [n for n in names if n not in table]
    unknown = sorted(set(table) - set(names))
    if missing or unknown:
        raise LongtailError(
            "the target prior must give a share to every class and to nothing else: missing "
            f"{terminal_text(shorten(missing, 5)) or 'none'}, unknown "
            f"{terminal_text(shorten(unknown, 5)) or 'none'}"
        )
    q = np.array([table[n] for n in names], dtype=np.float64)
    if q.sum() <= 0:
        raise LongtailError("the target prior's shares are all zero")
    q = q / q.max()  # shares of any size: their sum never overflows
    return q / q.sum()


__all__ = [
    "SHIFT_EXPONENTS",
    "TARGETS",
    "canonical_target",
    "check_target_prior",
    "target_prior",
    "power_prior",
    "prior_accuracy",
    "shift_label",
    "shifted_accuracies",
]
