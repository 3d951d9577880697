"""PyTorch ``Sampler`` adapters around the plans in :mod:`longtail.sampling.plans`.

Every sampler:

- takes labels (array, tensor, list, or a dataset with ``targets``/``labels``) and a ``seed``;
- builds one epoch's global plan from (seed, epoch) only (call :meth:`set_epoch` each epoch);
- shards the plan for DistributedDataParallel like ``torch.utils.data.DistributedSampler``: rank r
  takes ``plan[r::num_replicas]`` after padding (wrap-around) or truncating (``drop_last``) to a
  multiple of ``num_replicas``, so ranks are disjoint and equally long; ``num_replicas`` and ``rank``
  default to the initialised process group, else 1 and 0;
- has an exact ``len()`` (the current epoch's shard length).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from longtail._checks import check_probability_vector
from longtail.sampling import plans
from longtail.weights import class_weights

ITER_CHUNK = 1 << 16


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    dist = torch.distributed
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1:
        raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise ValueError(
            f"rank must lie in [0, num_replicas - 1] = [0, {num_replicas - 1}], got {rank}"
        )
    return num_replicas, rank


def shard(plan: np.ndarray, num_replicas: int, rank: int, drop_last: bool = False) -> np.ndarray:
    """Rank ``rank``'s share of a global plan (along the first axis), as ``DistributedSampler`` splits."""
    n = plan.shape[0]
    if drop_last:
        total = (n // num_replicas) * num_replicas
        plan = plan[:total]
    else:
        total = math.ceil(n / num_replicas) * num_replicas
        if total > n:
            plan = (
                np.concatenate([plan, np.resize(plan, (total - n, *plan.shape[1:]))]) if n else plan
            )
    return plan[rank:total:num_replicas]


def _check_num_samples(num_samples: int | None, default: int) -> int:
    if num_samples is None:
        return default
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, (int, np.integer))
        or num_samples <= 0
    ):
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    return int(num_samples)


class PlanSampler(Sampler[int], ABC):
    """Base class: subclasses implement :meth:`plan` (the global index array of one epoch)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        self.seed = int(seed)
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.drop_last = drop_last
        self.epoch = 0
        self._cache: tuple[Any, np.ndarray] | None = None

    @abstractmethod
    def plan(self, epoch: int) -> np.ndarray:
        """The global (all ranks) index array of ``epoch``."""

    def _cache_key(self) -> Any:
        return self.epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan the next iteration yields."""
        self.epoch = int(epoch)

    def local_plan(self) -> np.ndarray:
        """This rank's indices for the current epoch (cached until the epoch or state changes)."""
        key = self._cache_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = None  # free the previous epoch's plan before building the next
            self._cache = (
                key,
                shard(self.plan(self.epoch), self.num_replicas, self.rank, self.drop_last),
            )
        return self._cache[1]

    def __iter__(self) -> Iterator[int]:
        # Python ints chunk by chunk: 10^8 indices never become one 3.6 GB list of int objects.
        plan = self.local_plan()
        return itertools.chain.from_iterable(
            plan[s : s + ITER_CHUNK].tolist() for s in range(0, plan.shape[0], ITER_CHUNK)
        )

    def __len__(self) -> int:
        return int(self.local_plan().shape[0])


class _ClassSampler(PlanSampler):
    """A sampler over labels, grouped by class once at construction."""

    def __init__(self, labels: Any, num_samples: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.groups = plans.ClassGroups.from_labels(labels)
        self.num_samples = _check_num_samples(num_samples, self.groups.num_samples)


class InstanceSampler(_ClassSampler):
    """Plain instance-balanced sampling: a fresh random permutation of all N samples each epoch
    (``RandomSampler`` without replacement), DDP-sharded. ``num_samples`` truncates or repeats it."""

    def plan(self, epoch: int) -> np.ndarray:
        rng = plans.epoch_rng(self.seed, epoch)
        n = self.groups.num_samples
        reps = math.ceil(self.num_samples / n)
        return np.concatenate([rng.permutation(n) for _ in range(reps)])[: self.num_samples]


MAX_DISTINCT_WEIGHTS = 4096


class WeightedSampler(PlanSampler):
    """Drop-in for ``torch.utils.data.WeightedRandomSampler``: yields ``num_samples`` indices, index i
    with probability w_i / sum(w) (with replacement), or by successive weighted sampling without
    replacement; works at any data set size (no 2^24 limit) and under DDP.

    Give per-sample ``weights``, or ``labels`` and a :mod:`longtail.weights` ``scheme`` (then w_i =
    w_{y_i}). When the weights take at most 4,096 distinct values (one per class, as usual) a
    value is drawn first and then a sample uniformly among those with it, in O(num_samples);
    otherwise by inverse CDF in O(N + num_samples log N).

    Example:
        >>> s = WeightedSampler(labels=[0, 0, 0, 1], scheme="inverse", num_samples=4, seed=1)
        >>> len(s)
        4
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        num_samples: int | None = None,
        replacement: bool = True,
        generator: torch.Generator | None = None,
        *,
        labels: Any = None,
        scheme: str = "inverse",
        scheme_kwargs: dict[str, float] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if seed is None:
            seed = (
                int(torch.randint(0, 2**31 - 1, (), generator=generator))
                if generator is not None
                else 0
            )
        super().__init__(seed=seed, **kwargs)
        if (weights is None) == (labels is None):
            raise ValueError(
                "pass either per-sample weights or labels (with a weight scheme), not both"
            )
        self.replacement = replacement
        self.groups: plans.ClassGroups | None = None
        self._weights: np.ndarray | None = None
        self._values: np.ndarray | None = None  # the distinct weight of each group
        if labels is not None:
            self.groups = plans.ClassGroups.from_labels(labels)
            self._values = class_weights(
                self.groups.counts, scheme, allow_empty=True, **(scheme_kwargs or {})
            )
        else:
            w = check_probability_vector(weights, "weights")
            # Weights usually take few distinct values (one per class): then draw the value first.
            grouped = plans.group_by_value(w, MAX_DISTINCT_WEIGHTS) if replacement else None
            if grouped is not None:
                self._values, value_index = grouped
                self.groups = plans.ClassGroups.from_labels(value_index, self._values.size)
            else:
                self._weights = w
        size = self.groups.num_samples if self.groups is not None else self._weights.size
        self.num_samples = _check_num_samples(num_samples, size)
        if not replacement and self.num_samples > (positive := int(np.count_nonzero(self.weights))):
            raise ValueError(
                f"num_samples={self.num_samples} exceeds the {positive} samples with positive weight; "
                "use replacement=True or lower num_samples"
            )

    @property
    def weights(self) -> np.ndarray:
        """Per-sample weights (float64, length N)."""
        if self._weights is not None:
            return self._weights
        return self._values[self.groups.labels]

    def plan(self, epoch: int) -> np.ndarray:
        rng = plans.epoch_rng(self.seed, epoch)
        if not self.replacement:
            return plans.weighted_without_replacement(self.weights, self.num_samples, rng)
        if self.groups is not None:
            return plans.class_then_instance(
                self.groups, self._values * self.groups.counts, self.num_samples, rng
            )
        return plans.weighted_with_replacement(self._weights, self.num_samples, rng)


class ClassBalancedSampler(_ClassSampler):
    """Each non-empty class equally likely (p_j = 1/K'), instances uniform within a class.

    ``cycle=True`` walks each class's images in a fresh random order and repeats only after all have
    been used (fewer duplicates than i.i.d. draws; the class counts are multinomial either way).
    """

    def __init__(
        self, labels: Any, num_samples: int | None = None, *, cycle: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(labels, num_samples, **kwargs)
        self.cycle = cycle

    def class_probs(self, epoch: int) -> np.ndarray:
        return plans.power_class_probs(self.groups.counts, 0.0)

    def plan(self, epoch: int) -> np.ndarray:
        rng = plans.epoch_rng(self.seed, epoch)
        draw = plans.class_then_cycle if self.cycle else plans.class_then_instance
        return draw(self.groups, self.class_probs(epoch), self.num_samples, rng)


class PowerSampler(ClassBalancedSampler):
    """Class j drawn with probability p_j proportional to n_j^q, instances uniform within a class
    (Kang et al., "Decoupling Representation and Classifier", ICLR 2020): q = 1 instance-balanced,
    q = 0.5 square-root, q = 0 class-balanced."""

    def __init__(
        self, labels: Any, num_samples: int | None = None, *, q: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(labels, num_samples, **kwargs)
        if not np.isfinite(q):
            raise ValueError(f"q must be finite, got {q}")
        self.q = float(q)

    def class_probs(self, epoch: int) -> np.ndarray:
        return plans.power_class_probs(self.groups.counts, self.q)


class ProgressiveSampler(ClassBalancedSampler):
    """Moves from instance- to class-balanced sampling over ``total_epochs`` (Kang et al., ICLR 2020):
    p_j(t) = (1 - t/T) p_j^IB + (t/T) p_j^CB, with t = epoch clipped to [0, T]."""

    def __init__(
        self, labels: Any, num_samples: int | None = None, *, total_epochs: int, **kwargs: Any
    ) -> None:
        super().__init__(labels, num_samples, **kwargs)
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        self.total_epochs = int(total_epochs)

    def class_probs(self, epoch: int) -> np.ndarray:
        t = min(max(epoch, 0), self.total_epochs) / self.total_epochs
        counts = self.groups.counts
        return (1 - t) * plans.power_class_probs(counts, 1.0) + t * plans.power_class_probs(
            counts, 0.0
        )


class HybridSampler(_ClassSampler):
    """Hybrid under/over-sampling, a fresh random selection each epoch: classes above the median
    count are under-sampled to ``under_ratio`` of their images (without replacement), classes below
    the 25th percentile over-sampled to min(n_j * over_max, N) (all images plus draws with
    replacement), the rest kept once. ``len()`` is the sum of these sizes (sharded)."""

    def __init__(
        self, labels: Any, *, under_ratio: float = 0.8, over_max: float = 3.0, **kwargs: Any
    ) -> None:
        super().__init__(labels, None, **kwargs)
        if not 0 < under_ratio <= 1:
            raise ValueError(f"under_ratio must lie in (0, 1], got {under_ratio}")
        if not over_max >= 1:
            raise ValueError(f"over_max must be >= 1, got {over_max}")
        self.targets = plans.hybrid_targets(self.groups.counts, under_ratio, over_max)
        self.num_samples = int(self.targets.sum())

    def plan(self, epoch: int) -> np.ndarray:
        return plans.hybrid_plan(self.groups, self.targets, plans.epoch_rng(self.seed, epoch))


class RepeatFactorSampler(_ClassSampler):
    """Repeat-factor sampling (Gupta et al., "LVIS", CVPR 2019): each image of class j is repeated
    r_j = max(1, sqrt(t / f_j)) times on average (stochastic rounding per epoch), f_j = n_j / N.
    The epoch length varies with the rounding; ``len()`` is exact for the current epoch."""

    def __init__(self, labels: Any, *, threshold: float = 0.1, **kwargs: Any) -> None:
        super().__init__(labels, None, **kwargs)
        self.factors = plans.repeat_factors(self.groups.counts, threshold)
        self.threshold = float(threshold)

    def plan(self, epoch: int) -> np.ndarray:
        return plans.repeat_factor_plan(
            self.groups, self.threshold, plans.epoch_rng(self.seed, epoch)
        )


class CurriculumSampler(_ClassSampler):
    """Class weights that follow per-class validation performance.

    After each epoch call :meth:`update` with per-class performance (e.g. recall) in [0, 1]:
    s_j <- momentum * s_j + (1 - momentum) * perf_j, then
    w_j = base_j * a_j with a_j = (1 / (s_j + eps))^temperature, the adjustments a_j clipped so that
    max(a)/min(a) <= max_ratio (a class the model has mastered is never starved).
    A sample of class j is drawn with probability proportional to w_j (so class j's share is
    proportional to n_j w_j). ``base`` is a :mod:`longtail.weights` scheme ("inverse" gives
    class-balanced sampling before the first update).
    """

    def __init__(
        self,
        labels: Any,
        num_samples: int | None = None,
        *,
        base: str = "inverse",
        temperature: float = 1.0,
        max_ratio: float = 10.0,
        momentum: float = 0.0,
        eps: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(labels, num_samples, **kwargs)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if max_ratio < 1:
            raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.base = class_weights(self.groups.counts, base, allow_empty=True)
        self.temperature, self.max_ratio, self.momentum, self.eps = (
            temperature,
            max_ratio,
            momentum,
            eps,
        )
        self.performance: np.ndarray | None = None
        self.updates = 0

    @property
    def current_weights(self) -> np.ndarray:
        """Current w_j = base_j * a_j (0 for empty classes)."""
        present = self.groups.counts > 0
        adjust = np.ones_like(self.base)
        if self.performance is not None:
            adjust = (1.0 / (self.performance + self.eps)) ** self.temperature
            # Clip the spread of the adjustment: raise the smallest so max(a)/min(a) <= max_ratio.
            adjust = np.maximum(adjust, adjust[present].max() / self.max_ratio)
        return np.where(present, self.base * adjust, 0.0)

    def update(self, performance: Any) -> None:
        """Feed per-class validation performance (length K, values in [0, 1], no nan)."""
        perf = np.asarray(
            performance.detach().cpu() if hasattr(performance, "detach") else performance,
            dtype=np.float64,
        )
        if perf.shape != (self.groups.num_classes,):
            raise ValueError(
                f"performance must have one value per class ({self.groups.num_classes}), got shape {perf.shape}"
            )
        if not np.all(np.isfinite(perf)):
            missing = np.flatnonzero(~np.isfinite(perf)).tolist()
            raise ValueError(
                f"performance is nan/inf for classes {missing}; evaluate every class (stratified validation)"
            )
        if np.any(perf < 0) or np.any(perf > 1):
            raise ValueError("performance values must lie in [0, 1] (e.g. per-class recall)")
        if self.performance is None:
            self.performance = perf
        else:
            self.performance = self.momentum * self.performance + (1 - self.momentum) * perf
        self.updates += 1

    def _cache_key(self) -> Any:
        return (self.epoch, self.updates)

    def plan(self, epoch: int) -> np.ndarray:
        probs = self.current_weights * self.groups.counts
        return plans.class_then_instance(
            self.groups, probs, self.num_samples, plans.epoch_rng(self.seed, epoch)
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "performance": None if self.performance is None else self.performance.tolist(),
            "updates": self.updates,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        perf = state["performance"]
        self.performance = None if perf is None else np.asarray(perf, dtype=np.float64)
        self.updates = int(state["updates"])
        self.epoch = int(state["epoch"])


class BalancedBatchSampler(Sampler[list[int]]):
    """A batch sampler: every batch holds ``classes_per_batch`` (P) distinct classes and
    ``samples_per_class`` (M) images of each (distinct when the class has >= M images), as in
    P x M sampling for metric learning (Hermans et al., 2017). ``num_batches`` defaults to
    N // (P*M); batches are split across DDP ranks like samples are by the other samplers."""

    def __init__(
        self,
        labels: Any,
        classes_per_batch: int,
        samples_per_class: int,
        num_batches: int | None = None,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if classes_per_batch < 1 or samples_per_class < 1:
            raise ValueError(
                f"classes_per_batch and samples_per_class must be >= 1, got {classes_per_batch}, {samples_per_class}"
            )
        self.groups = plans.ClassGroups.from_labels(labels)
        self.P, self.M = int(classes_per_batch), int(samples_per_class)
        if self.P > np.count_nonzero(self.groups.counts):
            raise ValueError(
                f"classes_per_batch={self.P} exceeds the {np.count_nonzero(self.groups.counts)} non-empty classes"
            )
        self.num_batches = _check_num_samples(
            num_batches, max(1, self.groups.num_samples // (self.P * self.M))
        )
        self.seed = int(seed)
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def plan(self, epoch: int) -> np.ndarray:
        """[num_batches, P*M] global batches of ``epoch``."""
        return plans.balanced_batches(
            self.groups, self.P, self.M, self.num_batches, plans.epoch_rng(self.seed, epoch)
        )

    def __iter__(self) -> Iterator[list[int]]:
        return iter(
            shard(self.plan(self.epoch), self.num_replicas, self.rank, self.drop_last).tolist()
        )

    def __len__(self) -> int:
        n = self.num_batches
        return n // self.num_replicas if self.drop_last else math.ceil(n / self.num_replicas)
