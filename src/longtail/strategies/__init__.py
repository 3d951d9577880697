"""Strategies by name, and the parts of a strategy that answer the training loop's events.

Between ``training/`` and ``experiments/`` (above) and ``sampling/``, ``losses``, ``metrics``
(below): the loop builds a strategy from its name with :func:`build_strategy` and calls the events
of :mod:`longtail.strategies.lifecycle`; it never asks a strategy what type it is.
"""

from longtail.strategies.build import BuiltStrategy, build_strategy
from longtail.strategies.lifecycle import Part
from longtail.strategies.registry import (
    REGISTRY,
    BuildContext,
    ComponentSpec,
    component,
    make_loss,
    make_sampler,
    register,
    unregister,
)
from longtail.strategies.spec import (
    Strategy,
    parse_strategy,
    split_outside_brackets,
)

__all__ = [
    "REGISTRY",
    "BuildContext",
    "ComponentSpec",
    "component",
    "make_loss",
    "make_sampler",
    "register",
    "unregister",
    "BuiltStrategy",
    "Part",
    "Strategy",
    "build_strategy",
    "parse_strategy",
    "split_outside_brackets",
]
