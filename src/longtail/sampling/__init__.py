"""Re-balancing samplers: pure numpy plans and DDP-aware PyTorch ``Sampler`` adapters.

Each sampler is registered by name in :mod:`longtail.strategies.registry`, so the CLI, configs and
the compare runner share one vocabulary.
"""

from __future__ import annotations

from longtail.sampling.samplers import (
    BalancedBatchSampler,
    ClassBalancedSampler,
    CurriculumSampler,
    HierarchicalSampler,
    HybridSampler,
    InstanceSampler,
    PlanSampler,
    PowerSampler,
    ProgressiveSampler,
    RepeatFactorSampler,
    WeightedSampler,
    shard,
)

__all__ = [
    "BalancedBatchSampler",
    "ClassBalancedSampler",
    "CurriculumSampler",
    "HierarchicalSampler",
    "HybridSampler",
    "InstanceSampler",
    "PlanSampler",
    "PowerSampler",
    "ProgressiveSampler",
    "RepeatFactorSampler",
    "WeightedSampler",
    "shard",
]
