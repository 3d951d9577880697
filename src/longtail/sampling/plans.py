"""Sampling plans: pure, vectorised functions ``(labels or weights, params, rng) -> int64 indices``.

Nothing here loops over samples in Python and nothing calls ``torch.multinomial`` over samples:
a class is drawn first (K categories), then an instance uniformly within it, in chunks so that
10^8 draws stay within a few GiB. ``epoch_rng(seed, epoch)`` makes every plan a function of
(seed, epoch) alone, which is what lets every DDP rank build the same global plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from longtail._checks import as_labels, check_probability_vector
from longtail.errors import LongtailError

CHUNK = 1 << 22


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch: a function of (seed, epoch) only."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch)])
    )


def _small_dtype(upper: int) -> np.dtype:
    """The narrowest unsigned dtype holding 0..upper, so numpy's stable sort is a radix sort."""
    for dtype in (np.uint8, np.uint16):
        if upper <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


@dataclass(frozen=True)
class ClassGroups:
    """Sample indices grouped by class: class j owns ``order[starts[j] : starts[j] + counts[j]]``.
    ``labels`` is kept in the narrowest unsigned dtype (uint8 for K <= 256)."""

    labels: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_labels(cls, labels: object, num_classes: int | None = None) -> ClassGroups:
        y = as_labels(labels, num_classes)
        k = num_classes if num_classes is not None else int(y.max()) + 1
        counts = np.bincount(y, minlength=k)
        small = y.astype(_small_dtype(k - 1), copy=False)
        order = np.argsort(small, kind="stable")
        if y.size < 2**31:
            order = order.astype(np.int32)  # half the memory traffic when gathering
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        return cls(small, order, starts, counts)

    @property
    def num_classes(self) -> int:
        return int(self.counts.size)

    @property
    def num_samples(self) -> int:
        return int(self.labels.size)

    def shuffled_order(self, rng: np.random.Generator) -> np.ndarray:
        """``order`` with each class's members in a fresh random order (one in-place shuffle per
        class: a loop over the K classes, memory of one copy of ``order``)."""
        out = self.order.copy()
        for start, n in zip(self.starts.tolist(), self.counts.tolist(), strict=True):
            if n > 1:
                rng.shuffle(out[start : start + n])
        return out


def group_by_value(values: np.ndarray, max_distinct: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct sorted values, index of each element's value) when there are at most
    ``max_distinct`` distinct values, else None. Works chunk by chunk: memory stays O(chunk)
    besides the narrow index array."""
    distinct = np.empty(0, dtype=values.dtype)
    for s in range(0, values.size, CHUNK):
        distinct = np.union1d(distinct, np.unique(values[s : s + CHUNK]))
        if distinct.size > max_distinct:
            return None
    index = np.empty(values.size, dtype=_small_dtype(distinct.size - 1))
    for s in range(0, values.size, CHUNK):
        index[s : s + CHUNK] = np.searchsorted(distinct, values[s : s + CHUNK])
    return distinct, index


def check_class_probs(
    groups: ClassGroups, probs: np.ndarray, name: str = "class probabilities"
) -> np.ndarray:
    """Normalised class probabilities; empty classes must get probability 0."""
    p = check_probability_vector(probs, name)
    if p.size != groups.num_classes:
        raise LongtailError(f"{name} has {p.size} entries for {groups.num_classes} classes")
    if np.any((groups.counts == 0) & (p > 0)):
        empty = np.flatnonzero((groups.counts == 0) & (p > 0)).tolist()
        raise LongtailError(f"{name} give weight to classes {empty}, which have no samples")
    return p / p.sum()


def alias_table(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's construction, 1991) for O(1) exact draws from K categories:
    pick column j uniformly, keep j with probability ``keep[j]``, else take ``alias[j]``."""
    k = probs.size
    scaled = probs * (k / probs.sum())
    keep = np.ones(k)
    alias = np.arange(k)
    small = [i for i in range(k) if scaled[i] < 1.0]
    large = [i for i in range(k) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        keep[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return keep, alias


def class_then_instance(
    groups: ClassGroups, class_probs: np.ndarray, num_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """i.i.d. draws: class j with probability p_j (alias method), then a uniform instance of class j
    (with replacement)."""
    p = check_class_probs(groups, class_probs)
    keep, alias = alias_table(p)
    k = p.size
    cls_dtype = _small_dtype(k - 1)  # uint8 for K <= 256: cheap gathers
    alias = alias.astype(cls_dtype)
    pos_dtype = np.int32 if groups.num_samples < 2**31 else np.int64
    counts, starts = groups.counts.astype(np.float64), groups.starts.astype(pos_dtype)
    out = np.empty(num_samples, dtype=np.int64)
    for s in range(0, num_samples, CHUNK):
        m = min(CHUNK, num_samples - s)
        u = rng.random(m)
        u *= k
        col = u.astype(cls_dtype)
        np.minimum(col, k - 1, out=col)
        u -= col
        cls = np.where(u < keep[col], col, alias[col])
        offset = rng.random(m)
        offset *= counts[cls]
        pos = offset.astype(pos_dtype)
        pos += starts[cls]
        out[s : s + m] = groups.order[pos]
    return out


def class_then_cycle(
    groups: ClassGroups, class_probs: np.ndarray, num_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Like :func:`class_then_instance`, but the k-th draw of class j takes the (k mod n_j)-th image of
    a fresh per-epoch permutation of class j: every image is used once before any repeats."""
    p = check_class_probs(groups, class_probs)
    per_class = rng.multinomial(num_samples, p)
    cls = np.repeat(np.arange(groups.num_classes), per_class)
    rank = np.arange(num_samples, dtype=np.int64) - np.repeat(
        np.cumsum(per_class) - per_class, per_class
    )
    idx = groups.shuffled_order(rng)[groups.starts[cls] + rank % np.maximum(groups.counts[cls], 1)]
    rng.shuffle(idx)
    return idx


def weighted_with_replacement(
    weights: np.ndarray, num_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """i.i.d. draws of index i with probability w_i / sum(w) (inverse-CDF, O(N + M log N))."""
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    out = np.empty(num_samples, dtype=np.int64)
    for s in range(0, num_samples, CHUNK):
        m = min(CHUNK, num_samples - s)
        out[s : s + m] = np.minimum(np.searchsorted(cdf, rng.random(m), side="right"), cdf.size - 1)
    return out


def weighted_without_replacement(
    weights: np.ndarray, num_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Successive weighted sampling without replacement (as ``torch.multinomial(replacement=False)``),
    by exponential keys E_i / w_i and taking the smallest (Efraimidis and Spirakis, 2006)."""
    positive = int(np.count_nonzero(weights > 0))
    if num_samples > positive:
        raise LongtailError(
            f"cannot draw {num_samples} samples without replacement from {positive} with positive weight; "
            "lower num_samples or use replacement=True"
        )
    with np.errstate(divide="ignore"):
        keys = rng.standard_exponential(weights.size) / weights
    top = (
        np.argpartition(keys, num_samples - 1)[:num_samples]
        if num_samples < weights.size
        else np.arange(weights.size)
    )
    return top[np.argsort(keys[top], kind="stable")].astype(np.int64)


def power_class_probs(counts: np.ndarray, q: float) -> np.ndarray:
    """p_j proportional to n_j^q over non-empty classes (Kang et al., ICLR 2020)."""
    p = np.zeros(counts.size, dtype=np.float64)
    nz = counts > 0
    p[nz] = counts[nz].astype(np.float64) ** float(q)
    return p / p.sum()


LEVEL_RULES = ("uniform", "sqrt", "instance")
"""How the children of a node share its mass: equally, by sqrt(count), or by count."""


def hierarchical_class_probs(
    counts: np.ndarray, paths: Sequence[Sequence[Any]], rules: Sequence[str]
) -> np.ndarray:
    """Leaf probabilities as a product over the levels of a class tree:

        p(leaf j) = prod_{l=1..L} w_l(a_l(j)) / sum_{c in children(a_{l-1}(j))} w_l(c)

    with a_l(j) the ancestor of class j at level l (a_0 the root, a_L = j), n(a) the number of
    images under node a, and w_l(a) = 1 (``uniform``), sqrt(n(a)) (``sqrt``) or n(a)
    (``instance``) by the rule of level l; a node without images gets nothing. ``paths[l][j]`` is
    any hashable key of a_{l+1}(j) (a class with fewer ancestors keys itself below them). With one
    level, ``uniform`` is class-balanced sampling, ``sqrt`` square-root sampling and ``instance``
    instance-balanced sampling (Kang et al., ICLR 2020). A parent's share is thus passed on to
    its children whatever their number: ``uniform`` at the top gives a parent with twelve
    children the same mass as a parent with one.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if len(paths) != len(rules):
        raise LongtailError(
            f"the class tree has {len(paths)} levels but {len(rules)} rules were given "
            f"({'/'.join(rules)}); give one of {', '.join(LEVEL_RULES)} per level, e.g. "
            + "/".join(["uniform"] * len(paths))
        )
    probs = np.ones(counts.size, dtype=np.float64)
    parent: list[Any] = [()] * counts.size
    for keys, rule in zip(paths, rules, strict=True):
        if rule not in LEVEL_RULES:
            raise LongtailError(f"level rule must be one of {', '.join(LEVEL_RULES)}, got {rule!r}")
        mass: dict[Any, float] = {}
        for j, key in enumerate(keys):
            mass[key] = mass.get(key, 0.0) + counts[j]
        weight = {
            k: 0.0 if n == 0 else {"uniform": 1.0, "sqrt": n**0.5, "instance": n}[rule]
            for k, n in mass.items()
        }
        siblings: dict[Any, float] = {}
        for key, up in {(k, parent[j]) for j, k in enumerate(keys)}:
            siblings[up] = siblings.get(up, 0.0) + weight[key]
        for j, key in enumerate(keys):
            total = siblings[parent[j]]
            probs[j] *= weight[key] / total if total > 0 else 0.0
        parent = list(keys)
    if not probs.sum() > 0:
        raise LongtailError("no class of the tree has images to sample")
    return probs / probs.sum()


def hybrid_targets(counts: np.ndarray, under_ratio: float, over_max: float) -> np.ndarray:
    """Per-class epoch sizes of hybrid re-sampling: classes above the median count keep
    round(under_ratio * n_j); classes below the 25th percentile grow to min(round(n_j * over_max), N);
    the rest keep n_j. Percentiles are taken over the non-empty classes."""
    n = counts.astype(np.float64)
    nz = n[n > 0]
    median, p25 = np.median(nz), np.percentile(nz, 25)
    target = counts.astype(np.int64).copy()
    above, below = n > median, (n < p25) & (n > 0)
    target[above] = np.maximum(1, np.round(under_ratio * n[above])).astype(np.int64)
    target[below] = np.minimum(np.round(n[below] * over_max), n.sum()).astype(np.int64)
    return target


def hybrid_plan(groups: ClassGroups, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One epoch of hybrid re-sampling for per-class ``targets``: under-sampled classes without
    replacement; over-sampled classes keep every image once plus extra draws with replacement."""
    counts = groups.counts
    shuffled = groups.shuffled_order(rng)
    keep = np.minimum(targets, counts)
    rank = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)
    kept = shuffled[np.repeat(groups.starts, keep) + rank]
    extra = np.maximum(targets - counts, 0)
    cls = np.repeat(np.arange(groups.num_classes), extra)
    added = groups.order[groups.starts[cls] + (rng.random(cls.size) * counts[cls]).astype(np.int64)]
    idx = np.concatenate([kept, added])
    rng.shuffle(idx)
    return idx


def repeat_factor_plan(
    groups: ClassGroups, threshold: float, rng: np.random.Generator
) -> np.ndarray:
    """Repeat-factor sampling (Gupta et al., LVIS, CVPR 2019) for single-label data: image i of class j
    appears floor(r_j) times plus once more with probability r_j - floor(r_j), where
    r_j = max(1, sqrt(t / f_j)) and f_j = n_j / N."""
    factors = repeat_factors(groups.counts, threshold)
    whole = np.floor(factors).astype(np.uint16)
    frac = factors - whole
    repeats = np.empty(groups.num_samples, dtype=np.uint16)
    for s in range(0, groups.num_samples, CHUNK):
        y = groups.labels[s : s + CHUNK]
        repeats[s : s + CHUNK] = whole[y] + (rng.random(y.size) < frac[y])
    idx = np.empty(int(repeats.sum(dtype=np.int64)), dtype=np.int64)
    at = 0
    for s in range(0, groups.num_samples, CHUNK):
        part = np.repeat(
            np.arange(s, min(s + CHUNK, groups.num_samples), dtype=np.int64), repeats[s : s + CHUNK]
        )
        idx[at : at + part.size] = part
        at += part.size
    rng.shuffle(idx)
    return idx


def repeat_factors(counts: np.ndarray, threshold: float) -> np.ndarray:
    """r_j = max(1, sqrt(t / f_j)) with f_j = n_j / N; empty classes get 0."""
    if not 0 < threshold <= 1:
        raise LongtailError(f"threshold must lie in (0, 1], got {threshold}")
    f = counts / counts.sum()
    r = np.zeros(counts.size)
    nz = counts > 0
    r[nz] = np.maximum(1.0, np.sqrt(threshold / f[nz]))
    return r


def balanced_batches(
    groups: ClassGroups,
    classes_per_batch: int,
    samples_per_class: int,
    num_batches: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """[num_batches, P*M] indices: each batch has P distinct classes (uniform among non-empty ones) and
    M images of each, distinct whenever the class has at least M images (a random window of a fresh
    per-epoch permutation of the class)."""
    present = np.flatnonzero(groups.counts > 0)
    if classes_per_batch > present.size:
        raise LongtailError(
            f"classes_per_batch={classes_per_batch} exceeds the {present.size} non-empty classes"
        )
    keys = rng.random((num_batches, present.size))
    chosen = present[np.argpartition(keys, classes_per_batch - 1, axis=1)[:, :classes_per_batch]]
    counts = groups.counts[chosen][..., None]
    start = (rng.random(chosen.shape)[..., None] * counts).astype(np.int64)
    window = (start + np.arange(samples_per_class)) % counts
    shuffled = groups.shuffled_order(rng)
    idx = shuffled[groups.starts[chosen][..., None] + window]
    return idx.reshape(num_batches, classes_per_batch * samples_per_class)


__all__ = [
    "LEVEL_RULES",
    "hierarchical_class_probs",
    "CHUNK",
    "alias_table",
    "balanced_batches",
    "check_class_probs",
    "class_then_cycle",
    "class_then_instance",
    "ClassGroups",
    "epoch_rng",
    "group_by_value",
    "hybrid_plan",
    "hybrid_targets",
    "power_class_probs",
    "repeat_factor_plan",
    "repeat_factors",
    "weighted_with_replacement",
    "weighted_without_replacement",
]
