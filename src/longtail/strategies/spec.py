"""A strategy is a sampler and a loss, named ``SAMPLER+LOSS`` with optional parameters in brackets,
optionally followed by ``:STAGE`` (a second stage on the classifier, see
:mod:`longtail.strategies.stages`):

    instance+ce
    class_balanced+focal
    weighted[scheme=smooth_inverse,alpha=500]+ce
    instance+focal[gamma=1]
    instance+ce:crt
    class_balanced+focal:tau_norm
    instance+ce:weight_balancing[weight_decay=0.05]

Either part may be plain (``instance`` sampling, ``ce`` loss); a single name is read as a sampler
(with ``ce``) if it is one, else as a loss (with ``instance``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longtail._checks import parse_named
from longtail.errors import LongtailError
from longtail.strategies.registry import REGISTRY, SCHEME_KEYS, Kind, component
from longtail.weights import check_scheme_params

DEFAULT_SAMPLER, DEFAULT_LOSS = "instance", "ce"
"""The part a strategy string may leave out: ``focal`` is ``instance+focal``."""


def _check_params(kind: Kind, name: str, params: dict[str, Any], spec: str) -> None:
    """Refuse a parameter ``name``'s record does not list, or a value of the wrong kind (the
    parameters a strategy may set; the loop's own settings, such as rank or seed, are never
    among them)."""
    accepted = component(kind, name).params
    if "scheme" in accepted:  # a weight scheme's own parameters: the scheme says which it reads
        scheme = params.get("scheme", "inverse")
        check_scheme_params(str(scheme), {k: v for k, v in params.items() if k in SCHEME_KEYS})
    for key, value in params.items():
        if key not in accepted:
            names = ", ".join(sorted(accepted)) or "none"
            raise LongtailError(
                f"{kind} {name!r} has no parameter {key!r} (in {spec!r}); its parameters: {names}"
            )
        if not accepted[key].accepts(value):
            raise LongtailError(
                f"{name}: {key} must be {accepted[key].describe()}, got {value!r} (in {spec!r})"
            )


@dataclass(frozen=True)
class Strategy:
    """A sampler name and parameters, and a loss name and parameters."""

    sampler: str = "instance"
    loss: str = "ce"
    sampler_params: dict[str, Any] = field(default_factory=dict)
    loss_params: dict[str, Any] = field(default_factory=dict)
    label: str = "instance+ce"
    stage: str | None = None
    stage_params: dict[str, Any] = field(default_factory=dict)

    @property
    def first_stage(self) -> str:
        """The label of the first stage alone (``SAMPLER+LOSS``; the whole label without a
        second stage)."""
        return split_outside_brackets(self.label, ":")[0]


def _known(kind: Kind, name: str, spec: str) -> str:
    try:
        component(kind, name)
    except LongtailError as err:
        raise LongtailError(f"{err} (in {spec!r})") from None
    return name


def parse_strategy(spec: str) -> Strategy:
    """Parse ``SAMPLER[params]+LOSS[params]`` or ``SAMPLER[params]+LOSS[params]:STAGE[params]``
    (see module docstring)."""
    first, *rest = split_outside_brackets(spec, ":")
    if len(rest) > 1:
        raise LongtailError(
            f"strategy {spec!r} has {len(rest) + 1} stages; at most 2 (FIRST:SECOND)"
        )
    stage, stage_params = parse_named(rest[0]) if rest else (None, {})
    parts = split_outside_brackets(first, "+")
    if not 1 <= len(parts) <= 2:
        raise LongtailError(f"strategy {spec!r} must be SAMPLER+LOSS, e.g. class_balanced+focal")
    if len(parts) == 1:
        name, _ = parse_named(parts[0])
        one_sampler = name in REGISTRY["sampler"]
        parts = [parts[0], DEFAULT_LOSS] if one_sampler else [DEFAULT_SAMPLER, parts[0]]
    (s_name, s_params), (l_name, l_params) = parse_named(parts[0]), parse_named(parts[1])
    if stage is not None:
        _known("stage", stage, spec)
    _check_params("sampler", _known("sampler", s_name, spec), s_params, spec)
    _check_params("loss", _known("loss", l_name, spec), l_params, spec)
    if stage is not None:
        _check_params("stage", stage, stage_params, spec)
    return Strategy(s_name, l_name, s_params, l_params, spec.strip(), stage, stage_params)


def split_outside_brackets(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` where it is not inside [...] (strategy parameters); drop empty parts."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [p for p in out if p]


__all__ = [
    "DEFAULT_LOSS",
    "DEFAULT_SAMPLER",
    "parse_strategy",
    "split_outside_brackets",
    "Strategy",
]
