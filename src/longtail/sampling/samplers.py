"""PyTorch ``Sampler`` adapters around the plans in :mod:`longtail.sampling.plans`.

Every sampler:

- takes labels (array, tensor, list, or a dataset with ``targets``/``labels``);
- is seeded as torch's samplers are: with ``seed`` given, each epoch's global plan is a function
  of (seed, epoch) only; with ``seed=None`` every iteration draws a fresh seed from ``generator``
  (or, without one, from torch's global RNG, so ``torch.manual_seed`` makes runs repeatable), and
  under an initialised process group rank 0's draw is broadcast so that ranks agree;
- moves to the next epoch at each new iteration (a fresh plan every DataLoader epoch, as
  ``RandomSampler`` does) until :meth:`set_epoch` pins the epoch, as ``DistributedSampler``
  expects: after ``set_epoch(e)`` every iteration yields epoch e's plan, so call it each epoch;
- shards the plan for DistributedDataParallel like ``torch.utils.data.DistributedSampler``: rank r
  takes ``plan[r::num_replicas]`` after padding (wrap-around) or truncating (``drop_last``) to a
  multiple of ``num_replicas``, so ranks are disjoint and equally long; ``num_replicas`` and ``rank``
  default to the initialised process group, else 1 and 0 (``num_replicas=1``: the whole plan on
  every process, for frameworks that split batches themselves, such as accelerate). The samplers of single indices are
  ``DistributedSampler`` instances, so frameworks that shard a DataLoader's sampler unless it is
  one (PyTorch Lightning's ``use_distributed_sampler``) leave them as they are: sharding happens
  once, here, and the framework's ``set_epoch`` calls reach the sampler;
- has an exact ``len()`` (the current epoch's shard length);
- takes ``num_classes`` where labels are counted, so classes at the end of the label range that
  have no samples still count (and :meth:`CurriculumSampler.update` takes one value per class).

Common arguments (every sampler's docstring points here):

- ``seed``, ``generator``: the plan's randomness: with ``seed`` an epoch's plan depends on
  (seed, epoch) only; else each iteration draws from ``generator`` (or torch's global RNG).
- ``num_replicas``, ``rank``, ``drop_last``: DDP sharding as ``DistributedSampler``'s (default:
  the initialised process group); each rank yields its disjoint share.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler

from longtail._checks import check_probability_vector
from longtail._distributed import rank_and_world
from longtail.errors import LongtailError
from longtail.params import COUNT, NON_NEGATIVE, NUMBER, POSITIVE, SHARE, TEXT, Param, check_params
from longtail.sampling import plans
from longtail.weights import check_scheme_params, class_weights

ITER_CHUNK = 1 << 16


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


def shard_length(n: int, num_replicas: int, drop_last: bool) -> int:
    """Length of one rank's shard of an ``n``-long plan (see :func:`shard`)."""
    return n // num_replicas if drop_last else math.ceil(n / num_replicas)


def _check_num_samples(num_samples: int | None, default: int) -> int:
    if num_samples is None:
        return default
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, (int, np.integer))
        or num_samples <= 0
    ):
        raise LongtailError(f"num_samples must be a positive integer, got {num_samples!r}")
    return int(num_samples)


def _check_replacement(replacement: Any, error: type[Exception] = ValueError) -> bool:
    if not isinstance(replacement, bool):
        raise error(f"replacement should be a boolean value, but got replacement={replacement!r}")
    return replacement


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise LongtailError(f"seed must be an integer or None, got {seed!r}")
    return int(seed)


class EpochSeeded:
    """Seed, generator, epoch and DDP rank handling shared by every longtail sampler."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        self.seed = _check_seed(seed)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise LongtailError(
                f"generator must be a torch.Generator, got {type(generator).__name__}"
            )
        self.generator = generator
        self.rank, self.num_replicas = rank_and_world(rank, num_replicas)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._pinned = False  # set_epoch() was called: stay on that epoch
        self._started = False  # an iteration has begun since construction
        self._drawn_seed: int | None = None  # seed=None: the seed of the current iteration
        self._seed_ready = False  # the drawn seed is for the next iteration (drawn by len())

    def set_epoch(self, epoch: int) -> None:
        """Pin the epoch whose plan every following iteration yields (call it each epoch)."""
        self.epoch = int(epoch)
        self._pinned = True
        if self.seed is None and self._collective() and not self._seed_ready:
            self._drawn_seed, self._seed_ready = self._draw_seed(), True

    def _collective(self) -> bool:
        """Whether a drawn seed must be agreed by every rank (a collective call)."""
        dist = torch.distributed
        return self.num_replicas > 1 and dist.is_available() and dist.is_initialized()

    def _draw_seed(self) -> int:
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        if self._collective():
            box = [seed]
            torch.distributed.broadcast_object_list(box, src=0)  # every rank follows rank 0's draw
            seed = int(box[0])
        return seed

    def _base_seed(self) -> int:
        """``seed``, or the seed drawn for the current iteration when ``seed`` is None."""
        if self.seed is not None:
            return self.seed
        if self._drawn_seed is None:
            if self._collective():  # len() before any set_epoch() or iteration: no collective
                raise LongtailError(
                    "this sampler has seed=None under DistributedDataParallel, so its seed is "
                    "agreed by all ranks in set_epoch() or iteration; call set_epoch(epoch) "
                    "before len(), or pass a seed"
                )
            self._drawn_seed, self._seed_ready = self._draw_seed(), True
        return self._drawn_seed

    def _begin_iteration(self) -> None:
        if self.seed is None:
            if not self._seed_ready:
                self._drawn_seed = self._draw_seed()
            self._seed_ready = False
        elif self._started and not self._pinned:
            self.epoch += 1
        self._started = True

    def epoch_rng(self, epoch: int) -> np.random.Generator:
        """The generator of ``epoch``'s plan."""
        return plans.epoch_rng(self._base_seed(), epoch)


class PlanSampler(EpochSeeded, DistributedSampler, ABC):
    """Base class: subclasses implement :meth:`plan` (the global index array of one epoch) and,
    when the epoch length is fixed, :meth:`global_length`. A ``DistributedSampler`` by type and by
    contract (``num_replicas``, ``rank``, ``epoch``, ``set_epoch``, ``drop_last``, ``shuffle``),
    built from labels rather than from a dataset's length."""

    shuffle = True  # as DistributedSampler's attribute: the order of every plan is random

    def __init__(self, **kwargs: Any) -> None:
        EpochSeeded.__init__(self, **kwargs)  # not DistributedSampler's: it needs a dataset
        self._cache: tuple[Any, np.ndarray] | None = None

    @abstractmethod
    def plan(self, epoch: int) -> np.ndarray:
        """The global (all ranks) index array of ``epoch``."""

    def global_length(self) -> int | None:
        """Length of every epoch's global plan, or None when it varies from epoch to epoch."""
        return None

    def _cache_key(self) -> Any:
        return (self._base_seed(), self.epoch)

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
        # The plan is made at the first next(), as torch's samplers draw their seed.
        return itertools.chain.from_iterable(self._chunks())

    def _chunks(self) -> Iterator[list[int]]:
        self._begin_iteration()
        plan = self.local_plan()
        for s in range(0, plan.shape[0], ITER_CHUNK):
            yield plan[s : s + ITER_CHUNK].tolist()

    def __len__(self) -> int:
        n = self.global_length()
        if n is not None:
            return shard_length(n, self.num_replicas, self.drop_last)
        return int(self.local_plan().shape[0])


class _ClassSampler(PlanSampler):
    """A sampler over labels, grouped by class once at construction."""

    def __init__(
        self,
        labels: Any,
        num_samples: int | None = None,
        *,
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.groups = plans.ClassGroups.from_labels(labels, num_classes)
        self.num_samples = _check_num_samples(num_samples, self.groups.num_samples)

    def global_length(self) -> int | None:
        return self.num_samples


class InstanceSampler(_ClassSampler):
    """Plain instance-balanced sampling, a drop-in for ``torch.utils.data.RandomSampler``: without
    replacement, a fresh random permutation of all N samples each epoch (``num_samples`` truncates
    it or concatenates further permutations); with ``replacement=True``, ``num_samples`` uniform
    draws (default N). Sharded under DDP; seeded as every longtail sampler (module docstring).

    Yields sample indices; without replacement unless ``replacement``.

    Args:
        labels: class index per sample (array, tensor, list, or a dataset with ``targets``).
        num_classes: the number of classes (default: the largest label + 1).
        replacement: draw with replacement.
        num_samples: indices per epoch over all ranks (default N, the number of samples).
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
    """

    def __init__(
        self,
        labels: Any,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(labels, num_samples, generator=generator, **kwargs)
        self.replacement = _check_replacement(replacement, TypeError)

    def plan(self, epoch: int) -> np.ndarray:
        rng = self.epoch_rng(epoch)
        n = self.groups.num_samples
        if self.replacement:
            return rng.integers(0, n, self.num_samples, dtype=np.int64)
        reps = math.ceil(self.num_samples / n)
        return np.concatenate([rng.permutation(n) for _ in range(reps)])[: self.num_samples]


MAX_DISTINCT_WEIGHTS = 4096


class WeightedSampler(PlanSampler):
    """Drop-in for ``torch.utils.data.WeightedRandomSampler``: yields ``num_samples`` indices (default
    N), index i with probability w_i / sum(w), with replacement, or without by successive weighted
    draws. Where it differs on purpose: it shards under DDP (module docstring), and without
    replacement it refuses, at construction, more draws than there are positive weights.

    Give per-sample ``weights`` (kept as a float64 tensor, shared with a float64 tensor passed in:
    in-place edits and assignments to ``.weights`` take effect at the next iteration, as torch's),
    or ``labels`` and a :mod:`longtail.weights` ``scheme`` (then w_i = w_{y_i}; ``.weights`` is a
    read-only view). When the weights take at most 4,096 distinct values (one per class, as usual)
    a value is drawn first and then a sample uniformly among those with it, in O(num_samples);
    otherwise by inverse CDF in O(N + num_samples log N). Works at any N (no 2^24 limit).

    Example:
        >>> s = WeightedSampler(labels=[0, 0, 0, 1], scheme="inverse", num_samples=4, seed=1)
        >>> len(s)
        4

    Yields sample indices drawn with replacement (default) or without.

    Args:
        weights: per-sample weights [N] (finite, >= 0, positive sum), or None with ``labels``.
        num_samples: indices per epoch over all ranks (default N, the number of samples).
        replacement: draw with replacement (default True).
        labels, scheme, scheme_kwargs: class labels and a :mod:`longtail.weights` scheme
            (``inverse`` by default) with its parameters, instead of ``weights``.
        num_classes: the number of classes, with ``labels``.
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
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
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(generator=generator, **kwargs)
        if (weights is None) == (labels is None):
            raise LongtailError(
                "pass either per-sample weights or labels (with a weight scheme), not both"
            )
        self.replacement = _check_replacement(replacement)
        self._requested = num_samples
        self.groups: plans.ClassGroups | None = None
        self._weights: torch.Tensor | None = None
        self._values: np.ndarray | None = None  # the distinct weight of each group
        self._prepared_for: Any = None
        if labels is not None:
            self.groups = plans.ClassGroups.from_labels(labels, num_classes)
            params = check_scheme_params(scheme, scheme_kwargs or {})
            self._values = class_weights(self.groups.counts, scheme, allow_empty=True, **params)
            self.num_samples = _check_num_samples(num_samples, self.groups.num_samples)
            self._check_positive(int(self.groups.counts[self._values > 0].sum()))
        else:
            self.weights = weights

    @property
    def weights(self) -> np.ndarray | torch.Tensor:
        """Per-sample weights: the float64 tensor given (edits take effect at the next iteration),
        or, built from labels, a read-only float64 array."""
        if self._weights is not None:
            return self._weights
        w = self._values[self.groups.labels]
        w.flags.writeable = False
        return w

    @weights.setter
    def weights(self, value: Sequence[float] | np.ndarray | torch.Tensor) -> None:
        t = torch.as_tensor(
            value.detach().cpu() if isinstance(value, torch.Tensor) else np.asarray(value),
            dtype=torch.float64,
        )
        if t.ndim != 1:
            raise LongtailError(
                f"weights should be a 1d sequence but given weights have shape {tuple(t.shape)}"
            )
        self._weights, self._prepared_for = t, None
        self._prepare()

    def _check_positive(self, positive: int) -> None:
        if not self.replacement and self.num_samples > positive:
            raise LongtailError(
                f"num_samples={self.num_samples} exceeds the {positive} samples with positive weight; "
                "use replacement=True or lower num_samples"
            )

    def _prepare(self) -> None:
        """(Re)read per-sample weights after they were set or edited in place."""
        if self._weights is None:
            return
        key = (id(self._weights), self._weights._version)
        if self._prepared_for == key:
            return
        w = check_probability_vector(self._weights.numpy(), "weights")
        self.num_samples = _check_num_samples(self._requested, w.size)
        self._check_positive(int(np.count_nonzero(w)))
        # Weights usually take few distinct values (one per class): then draw the value first.
        grouped = plans.group_by_value(w, MAX_DISTINCT_WEIGHTS) if self.replacement else None
        self.groups, self._values = None, None
        if grouped is not None:
            self._values, value_index = grouped
            self.groups = plans.ClassGroups.from_labels(value_index, self._values.size)
        self._prepared_for = key

    def _cache_key(self) -> Any:
        self._prepare()
        return (*super()._cache_key(), self._prepared_for)

    def global_length(self) -> int | None:
        self._prepare()
        return self.num_samples

    def plan(self, epoch: int) -> np.ndarray:
        self._prepare()
        rng = self.epoch_rng(epoch)
        if not self.replacement:
            w = self._weights.numpy() if self._weights is not None else self.weights
            return plans.weighted_without_replacement(w, self.num_samples, rng)
        if self.groups is not None:
            return plans.class_then_instance(
                self.groups, self._values * self.groups.counts, self.num_samples, rng
            )
        return plans.weighted_with_replacement(self._weights.numpy(), self.num_samples, rng)


class ClassBalancedSampler(_ClassSampler):
    """Each non-empty class equally likely (p_j = 1/K'), instances uniform within a class.

    ``cycle=True`` walks each class's images in a fresh random order and repeats only after all have
    been used (fewer duplicates than i.i.d. draws; the class counts are multinomial either way).

    Yields sample indices, drawn with replacement.

    Args:
        labels: class index per sample (array, tensor, list, or a dataset with ``targets``).
        num_classes: the number of classes (default: the largest label + 1).
        num_samples: indices per epoch over all ranks (default N, the number of samples).
        cycle: walk each class in a fresh random order before repeating an image.
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
    """

    def __init__(
        self, labels: Any, num_samples: int | None = None, *, cycle: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(labels, num_samples, **kwargs)
        self.cycle = cycle

    def class_probs(self, epoch: int) -> np.ndarray:
        return plans.power_class_probs(self.groups.counts, 0.0)

    def plan(self, epoch: int) -> np.ndarray:
        rng = self.epoch_rng(epoch)
        draw = plans.class_then_cycle if self.cycle else plans.class_then_instance
        return draw(self.groups, self.class_probs(epoch), self.num_samples, rng)


class PowerSampler(ClassBalancedSampler):
    """Class j drawn with probability p_j proportional to n_j^q, instances uniform within a class
    (Kang et al., "Decoupling Representation and Classifier", ICLR 2020): q = 1 instance-balanced,
    q = 0.5 square-root, q = 0 class-balanced.

    Yields sample indices, drawn with replacement.

    Args:
        labels: class index per sample (array, tensor, list, or a dataset with ``targets``).
        num_classes: the number of classes (default: the largest label + 1).
        num_samples: indices per epoch over all ranks (default N, the number of samples).
        q: the exponent (finite; 0.5 = square-root sampling).
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {"q": NUMBER}

    def __init__(
        self, labels: Any, num_samples: int | None = None, *, q: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(labels, num_samples, **kwargs)
        check_params(self.param_ranges, "sqrt", q=q)
        self.q = float(q)

    def class_probs(self, epoch: int) -> np.ndarray:
        return plans.power_class_probs(self.groups.counts, self.q)


class HierarchicalSampler(ClassBalancedSampler):
    """Level-balanced sampling over a class tree: class j is drawn with probability
    p_j = prod_l w_l(a_l(j)) / sum_{siblings c} w_l(c), a product over the levels of the share
    each ancestor a_l(j) takes among its siblings by its level's rule (``uniform``: equally;
    ``sqrt``: by sqrt of its image count; ``instance``: by its count;
    :func:`~longtail.sampling.plans.hierarchical_class_probs`), instances uniform within a class.
    With a flat tree it is :class:`ClassBalancedSampler` (``uniform``) or :class:`PowerSampler`
    (``sqrt``, q = 0.5).

    Yields sample indices, drawn with replacement.

    Args:
        labels: class index per sample (array, tensor, list, or a dataset with ``targets``).
        num_classes: the number of classes (default: the largest label + 1).
        num_samples: indices per epoch over all ranks (default N, the number of samples).
        tree: for each level from the top, each class's ancestor there (any hashable key, e.g.
            :meth:`ClassDistribution.tree_paths`); None: a flat tree (one level).
        levels: one rule per level, as a sequence or ``"uniform/uniform/sqrt"``; default
            ``uniform`` at every level.
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
    """

    def __init__(
        self,
        labels: Any,
        num_samples: int | None = None,
        *,
        tree: Sequence[Sequence[Any]] | None = None,
        levels: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(labels, num_samples, **kwargs)
        paths = list(tree) if tree is not None else [list(range(self.groups.num_classes))]
        if any(len(level) != self.groups.num_classes for level in paths):
            raise LongtailError(
                f"every level of tree needs one key per class ({self.groups.num_classes})"
            )
        rules = levels.split("/") if isinstance(levels, str) else list(levels or [])
        self.levels = rules or ["uniform"] * len(paths)
        self.probs = plans.hierarchical_class_probs(self.groups.counts, paths, self.levels)

    def class_probs(self, epoch: int) -> np.ndarray:
        return self.probs


class ProgressiveSampler(ClassBalancedSampler):
    """Moves from instance- to class-balanced sampling over ``total_epochs`` (Kang et al., ICLR 2020):
    p_j(t) = (1 - t/T) p_j^IB + (t/T) p_j^CB, with t = epoch clipped to [0, T].

    Yields sample indices, drawn with replacement; call ``set_epoch`` every epoch so the
    mixture follows the epoch.

    Args:
        labels: class index per sample (array, tensor, list, or a dataset with ``targets``).
        num_classes: the number of classes (default: the largest label + 1).
        num_samples: indices per epoch over all ranks (default N, the number of samples).
        total_epochs: T, the epoch from which sampling is class-balanced (>= 1).
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
    """

    def __init__(
        self, labels: Any, num_samples: int | None = None, *, total_epochs: int, **kwargs: Any
    ) -> None:
        super().__init__(labels, num_samples, **kwargs)
        if total_epochs < 1:
            raise LongtailError(f"total_epochs must be >= 1, got {total_epochs}")
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
    replacement), the rest kept once. ``len()`` is the sum of these sizes (sharded).

    Yields sample indices: without replacement within the kept and under-sampled classes.

    Args:
        labels: class index per sample (array, tensor, list, or a dataset with ``targets``).
        num_classes: the number of classes (default: the largest label + 1).
        under_ratio: the share of a large class kept, in (0, 1].
        over_max: the largest over-sampling factor of a small class (>= 1).
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {
        "under_ratio": Param("number", low=0, high=1, low_open=True),
        "over_max": Param("number", low=1),
    }

    def __init__(
        self, labels: Any, *, under_ratio: float = 0.8, over_max: float = 3.0, **kwargs: Any
    ) -> None:
        super().__init__(labels, None, **kwargs)
        check_params(self.param_ranges, "hybrid", under_ratio=under_ratio, over_max=over_max)
        self.targets = plans.hybrid_targets(self.groups.counts, under_ratio, over_max)
        self.num_samples = int(self.targets.sum())

    def plan(self, epoch: int) -> np.ndarray:
        return plans.hybrid_plan(self.groups, self.targets, self.epoch_rng(epoch))


class RepeatFactorSampler(_ClassSampler):
    """Repeat-factor sampling (Gupta et al., "LVIS", CVPR 2019): each image of class j is repeated
    r_j = max(1, sqrt(t / f_j)) times on average (stochastic rounding per epoch), f_j = n_j / N.
    The epoch length varies with the rounding; ``len()`` is exact for the current epoch.

    Yields sample indices, each image ``floor(r_j)`` or ``ceil(r_j)`` times.

    Args:
        labels: class index per sample (array, tensor, list, or a dataset with ``targets``).
        num_classes: the number of classes (default: the largest label + 1).
        threshold: t, the frequency below which a class is repeated.
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {
        "threshold": Param("number", low=0, high=1, low_open=True)
    }

    def __init__(self, labels: Any, *, threshold: float = 0.1, **kwargs: Any) -> None:
        super().__init__(labels, None, **kwargs)
        self.factors = plans.repeat_factors(self.groups.counts, threshold)
        self.threshold = float(threshold)

    def global_length(self) -> int | None:
        return None  # stochastic rounding: each epoch has its own length

    def plan(self, epoch: int) -> np.ndarray:
        return plans.repeat_factor_plan(self.groups, self.threshold, self.epoch_rng(epoch))


class CurriculumSampler(_ClassSampler):
    """Class weights that follow per-class validation performance.

    After each epoch call :meth:`update` with per-class performance (e.g. recall) in [0, 1]:
    s_j <- momentum * s_j + (1 - momentum) * perf_j, then
    w_j = base_j * a_j with a_j = (1 / (s_j + eps))^temperature, the adjustments a_j clipped so that
    max(a)/min(a) <= max_ratio (a class the model has mastered is never starved).
    A sample of class j is drawn with probability proportional to w_j (so class j's share is
    proportional to n_j w_j). ``base`` is a :mod:`longtail.weights` scheme ("inverse" gives
    class-balanced sampling before the first update).

    A class without a measurement (nan: no validation images) keeps its last performance; one
    never measured takes the mean adjustment of the measured classes, so its share is neither
    raised nor cut for want of data.

    Yields sample indices, drawn with replacement; the caller calls :meth:`update` after
    each validation (and ``set_epoch`` every epoch).

    Args:
        labels: class index per sample (array, tensor, list, or a dataset with ``targets``).
        num_classes: the number of classes (default: the largest label + 1).
        num_samples: indices per epoch over all ranks (default N, the number of samples).
        base: the :mod:`longtail.weights` scheme of the base weights.
        temperature: how strongly weak classes are favoured (>= 0).
        max_ratio: the largest ratio between two classes' adjustments (>= 1).
        momentum: smoothing of the performance over updates, in [0, 1).
        eps: added to the performance before inverting it (> 0).
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {
        "base": TEXT,
        "temperature": NON_NEGATIVE,
        "max_ratio": Param("number", low=1),
        "momentum": SHARE,
        "eps": POSITIVE,
    }

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
        check_params(
            self.param_ranges,
            "curriculum",
            base=base,
            temperature=temperature,
            max_ratio=max_ratio,
            momentum=momentum,
            eps=eps,
        )
        self.base = class_weights(self.groups.counts, base, allow_empty=True)
        self.temperature, self.max_ratio, self.momentum, self.eps = (
            temperature,
            max_ratio,
            momentum,
            eps,
        )
        self.performance: np.ndarray | None = None  # nan: never measured
        self.updates = 0

    @property
    def current_weights(self) -> np.ndarray:
        """Current w_j = base_j * a_j (0 for empty classes)."""
        present = self.groups.counts > 0
        adjust = np.ones_like(self.base)
        if self.performance is not None:
            measured = present & np.isfinite(self.performance)
            if measured.any():
                with np.errstate(invalid="ignore"):
                    adjust = (1.0 / (self.performance + self.eps)) ** self.temperature
                # Clip the spread: raise the smallest so max(a)/min(a) <= max_ratio.
                adjust = np.maximum(adjust, adjust[measured].max() / self.max_ratio)
                adjust = np.where(measured, adjust, adjust[measured].mean())
        return np.where(present, self.base * adjust, 0.0)

    def update(self, performance: Any) -> None:
        """Feed per-class validation performance (length K, values in [0, 1]; nan for a class
        that could not be measured, which then keeps its previous value)."""
        perf = np.asarray(
            performance.detach().cpu() if hasattr(performance, "detach") else performance,
            dtype=np.float64,
        )
        if perf.shape != (self.groups.num_classes,):
            raise LongtailError(
                f"performance must have one value per class ({self.groups.num_classes}), got shape {perf.shape}; "
                "pass num_classes= to the sampler when the last classes have no training images"
            )
        if np.any(np.isinf(perf)):
            raise LongtailError(
                f"performance is infinite for classes {np.flatnonzero(np.isinf(perf)).tolist()}"
            )
        known = np.isfinite(perf)
        if np.any(perf[known] < 0) or np.any(perf[known] > 1):
            raise LongtailError("performance values must lie in [0, 1] (e.g. per-class recall)")
        if self.performance is None:
            self.performance = perf.copy()
        else:
            old = self.performance
            mixed = np.where(
                np.isfinite(old), self.momentum * old + (1 - self.momentum) * perf, perf
            )
            self.performance = np.where(known, mixed, old)
        self.updates += 1

    def _cache_key(self) -> Any:
        return (*super()._cache_key(), self.updates)

    def plan(self, epoch: int) -> np.ndarray:
        probs = self.current_weights * self.groups.counts
        return plans.class_then_instance(
            self.groups, probs, self.num_samples, self.epoch_rng(epoch)
        )

    def state_dict(self) -> dict[str, Any]:
        """Plain values (nan as None), so the state can be saved as JSON or a weights-only checkpoint."""
        perf = None
        if self.performance is not None:
            perf = [v if np.isfinite(v) else None for v in self.performance.tolist()]
        return {"performance": perf, "updates": self.updates, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        perf = state["performance"]
        self.performance = (
            None
            if perf is None
            else np.array([np.nan if v is None else v for v in perf], dtype=np.float64)
        )
        self.updates = int(state["updates"])
        self.epoch = int(state["epoch"])


class BalancedBatchSampler(EpochSeeded, Sampler[list[int]]):
    """A batch sampler (pass it as ``batch_sampler=``): every batch holds ``classes_per_batch`` (P)
    distinct classes and ``samples_per_class`` (M) images of each (distinct when the class has >= M
    images), as in P x M sampling for metric learning (Hermans et al., 2017). ``num_batches``
    defaults to N // (P*M); batches are split across DDP ranks like samples are by the other
    samplers, and seeds and epochs follow the same rules (module docstring).

    Yields lists of indices (whole batches); pass it as ``batch_sampler=``.

    Args:
        labels: class index per sample (array, tensor, list, or a dataset with ``targets``).
        num_classes: the number of classes (default: the largest label + 1).
        classes_per_batch: P, distinct classes per batch (>= 1, at most the non-empty classes).
        samples_per_class: M, images per class in a batch (>= 1).
        num_batches: batches per epoch over all ranks (default N // (P * M)).
        seed, generator, num_replicas, rank, drop_last: as every sampler's (module docstring,
            "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {
        "classes_per_batch": COUNT,
        "samples_per_class": COUNT,
    }

    def __init__(
        self,
        labels: Any,
        classes_per_batch: int,
        samples_per_class: int,
        num_batches: int | None = None,
        *,
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_params(
            self.param_ranges,
            "balanced_batch",
            classes_per_batch=classes_per_batch,
            samples_per_class=samples_per_class,
        )
        self.groups = plans.ClassGroups.from_labels(labels, num_classes)
        self.P, self.M = int(classes_per_batch), int(samples_per_class)
        if self.P > np.count_nonzero(self.groups.counts):
            raise LongtailError(
                f"classes_per_batch={self.P} exceeds the {np.count_nonzero(self.groups.counts)} non-empty classes"
            )
        self.num_batches = _check_num_samples(
            num_batches, max(1, self.groups.num_samples // (self.P * self.M))
        )

    def plan(self, epoch: int) -> np.ndarray:
        """[num_batches, P*M] global batches of ``epoch``."""
        return plans.balanced_batches(
            self.groups, self.P, self.M, self.num_batches, self.epoch_rng(epoch)
        )

    def __iter__(self) -> Iterator[list[int]]:
        self._begin_iteration()
        yield from shard(
            self.plan(self.epoch), self.num_replicas, self.rank, self.drop_last
        ).tolist()

    def __len__(self) -> int:
        return shard_length(self.num_batches, self.num_replicas, self.drop_last)


__all__ = [
    "HierarchicalSampler",
    "ITER_CHUNK",
    "MAX_DISTINCT_WEIGHTS",
    "BalancedBatchSampler",
    "ClassBalancedSampler",
    "CurriculumSampler",
    "EpochSeeded",
    "HybridSampler",
    "InstanceSampler",
    "PlanSampler",
    "PowerSampler",
    "ProgressiveSampler",
    "RepeatFactorSampler",
    "shard",
    "shard_length",
    "WeightedSampler",
]
