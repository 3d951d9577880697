"""Parameters declared once, with their kind and range (as imbalanced-learn's
``_parameter_constraints``): a sampler, loss or stage lists its parameters in a class attribute
``param_ranges``; its constructor checks its arguments against them, and the strategy string is
checked against the same records when a comparison is checked, before any data loads.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from longtail.errors import LongtailError

MAX_INT = 2**31 - 1
"""The largest integer parameter (epochs, batch geometry): anything larger is a typo."""

ParamKind = Literal["number", "integer", "bool", "text"]


@dataclass(frozen=True)
class Param:
    """One parameter: its kind, and for numbers the range ``low`` .. ``high`` (None: unbounded),
    each end open or closed."""

    kind: ParamKind = "number"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None  # for text: the names accepted (None: any name)

    def describe(self) -> str:
        """The accepted values in words: ``a number in (0, 1]``, ``an integer >= 1``."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "text":
            return "a name" if self.choices is None else f"one of {', '.join(self.choices)}"
        what = "a finite number" if self.kind == "number" else "an integer"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{what} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<' if self.high_open else '<='} {self.high:g}"
        return what

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is of this kind and in range."""
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "text":
            named = isinstance(value, str) and bool(value)
            return named and (self.choices is None or value in self.choices)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            return False  # numpy's numbers are Real (and Integral) too
        if self.kind == "integer" and not (
            isinstance(value, numbers.Integral) and abs(value) <= MAX_INT
        ):
            return False
        try:
            if not math.isfinite(value):
                return False
        except OverflowError:  # an integer beyond any float
            return False
        return self._in_range(value)

    def _in_range(self, value: float) -> bool:
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return low_ok and high_ok


NUMBER, BOOL, TEXT = Param("number"), Param("bool"), Param("text")
COUNT, EPOCH = Param("integer", low=1), Param("integer", low=0)
POSITIVE, NON_NEGATIVE = Param("number", low=0, low_open=True), Param("number", low=0)
SHARE = Param("number", low=0, high=1, high_open=True)
"""A fraction in [0, 1): label smoothing, a momentum, class-balanced beta."""


def check_params(parameters: Mapping[str, Param], owner: str, **values: Any) -> None:
    """Refuse a name in ``values`` that ``parameters`` does not declare, and any value (None:
    the parameter's default, not checked) that its declaration does not accept, naming
    ``owner``, the parameter and its range."""
    unknown = sorted(set(values) - set(parameters))
    if unknown:
        raise LongtailError(
            f"{owner} has no parameter {unknown[0]!r}; its parameters: "
            f"{', '.join(parameters) or 'none'}"
        )
    for name, value in values.items():
        if value is not None and not parameters[name].accepts(value):
            raise LongtailError(
                f"{owner}: {name} must be {parameters[name].describe()}, got {repr(value)[:40]}"
            )


__all__ = [
    "BOOL",
    "COUNT",
    "EPOCH",
    "MAX_INT",
    "NON_NEGATIVE",
    "NUMBER",
    "POSITIVE",
    "SHARE",
    "TEXT",
    "Param",
    "ParamKind",
    "check_params",
]
