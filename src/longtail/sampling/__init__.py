"""Re-balancing samplers: pure numpy plans and DDP-aware PyTorch ``Sampler`` adapters.

Strategies are registered by name (``SAMPLERS``) so the CLI, configs and the compare runner share
one vocabulary; :func:`make_sampler` builds one from a name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Sampler

from longtail.sampling.samplers import (
    BalancedBatchSampler,
    ClassBalancedSampler,
    CurriculumSampler,
    HybridSampler,
    InstanceSampler,
    PlanSampler,
    PowerSampler,
    ProgressiveSampler,
    RepeatFactorSampler,
    WeightedSampler,
    shard,
)


def _progressive(labels: Any, *, total_epochs: int | None = None, **kw: Any) -> ProgressiveSampler:
    if total_epochs is None:
        raise ValueError(
            "the 'progressive' sampler needs total_epochs (the epoch at which it is class-balanced)"
        )
    return ProgressiveSampler(labels, total_epochs=total_epochs, **kw)


def _scheme_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Move weight-scheme parameters (alpha, q, beta) into ``scheme_kwargs``; the sampler checks
    that its scheme reads them."""
    scheme = {k: kw.pop(k) for k in ("alpha", "q", "beta") if k in kw}
    return {**kw, "scheme_kwargs": scheme} if scheme else kw


def _drop_epochs(factory: Callable[..., Sampler]) -> Callable[..., Sampler]:
    def build(labels: Any, *, total_epochs: int | None = None, **kw: Any) -> Sampler:
        return factory(labels, **kw)

    return build


SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "instance": _drop_epochs(InstanceSampler),
    "weighted": _drop_epochs(
        lambda labels, **kw: WeightedSampler(labels=labels, **_scheme_kwargs(kw))
    ),
    "class_balanced": _drop_epochs(ClassBalancedSampler),
    "sqrt": _drop_epochs(lambda labels, **kw: PowerSampler(labels, q=kw.pop("q", 0.5), **kw)),
    "progressive": _progressive,
    "hybrid": _drop_epochs(HybridSampler),
    "curriculum": _drop_epochs(CurriculumSampler),
    "repeat_factor": _drop_epochs(RepeatFactorSampler),
    "balanced_batch": _drop_epochs(BalancedBatchSampler),
}


def make_sampler(name: str, labels: Any, **params: Any) -> Sampler:
    """Build the sampler registered as ``name`` over ``labels``; ``params`` go to its constructor
    (``total_epochs`` is passed where the strategy uses it and ignored elsewhere)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    try:
        return SAMPLERS[name](labels, **params)
    except TypeError as err:
        raise ValueError(f"bad parameters {sorted(params)} for sampler {name!r}: {err}") from err


__all__ = [
    "SAMPLERS",
    "BalancedBatchSampler",
    "ClassBalancedSampler",
    "CurriculumSampler",
    "HybridSampler",
    "InstanceSampler",
    "PlanSampler",
    "PowerSampler",
    "ProgressiveSampler",
    "RepeatFactorSampler",
    "WeightedSampler",
    "make_sampler",
    "shard",
]
