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

import math
import re
from dataclasses import dataclass, field
from typing import Any

from longtail.losses import LOSSES
from longtail.sampling import SAMPLERS
from longtail.weights import check_scheme_params

_PART = re.compile(r"^([a-z_][a-z0-9_]*)(?:\[(.*)\])?$")


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _parse_part(text: str) -> tuple[str, dict[str, Any]]:
    m = _PART.match(text.strip())
    if not m:
        raise ValueError(f"cannot read {text!r}: expected NAME or NAME[key=value,...]")
    params: dict[str, Any] = {}
    if m.group(2):
        for item in m.group(2).split(","):
            if "=" not in item:
                raise ValueError(f"parameter {item!r} in {text!r} is not key=value")
            k, v = (part.strip() for part in item.split("=", 1))
            if k in params:
                raise ValueError(f"parameter {k!r} is given twice in {text!r}; give it once")
            params[k] = _value(v)
    return m.group(1), params


FLOAT, BOOL, TEXT = "a finite number", "true or false", "a name"
COUNT, EPOCH = "an integer >= 1", "an integer >= 0"
MAX_INT = 2**31 - 1
"""The largest integer parameter (epochs, batch geometry): anything larger is a typo."""

SCHEME_KEYS = ("alpha", "q", "beta")
_SCHEME = {"scheme": TEXT, **dict.fromkeys(SCHEME_KEYS, FLOAT)}
PARAMETERS: dict[str, dict[str, dict[str, str]]] = {
    "sampler": {
        "instance": {},
        "weighted": _SCHEME,
        "class_balanced": {"cycle": BOOL},
        "sqrt": {"q": FLOAT},
        "progressive": {},
        "hybrid": {"under_ratio": FLOAT, "over_max": FLOAT},
        "curriculum": {
            "base": TEXT,
            "temperature": FLOAT,
            "max_ratio": FLOAT,
            "momentum": FLOAT,
            "eps": FLOAT,
        },
        "repeat_factor": {"threshold": FLOAT},
        "balanced_batch": {"classes_per_batch": COUNT, "samples_per_class": COUNT},
    },
    "loss": {
        "ce": {"label_smoothing": FLOAT},
        "weighted_ce": {**_SCHEME, "label_smoothing": FLOAT},
        "focal": {"gamma": FLOAT},
        "cb_focal": {"beta": FLOAT, "gamma": FLOAT},
        "cb_ce": {"beta": FLOAT},
        "ldam_drw": {"max_margin": FLOAT, "s": FLOAT, "drw_epoch": EPOCH, "drw_beta": FLOAT},
        "balanced_softmax": {},
        "logit_adjusted": {"tau": FLOAT},
    },
    "stage": {
        "crt": {"epochs": COUNT, "lr": FLOAT},
        "lws": {"epochs": COUNT, "lr": FLOAT},
        "tau_norm": {},
        "logit_adjust": {},
        "weight_balancing": {
            "epochs": COUNT,
            "lr": FLOAT,
            "weight_decay": FLOAT,
            "max_norm": FLOAT,
        },
    },
}
"""The parameters a strategy string may give each sampler, loss and second stage, with the kind
of value each takes; everything else a component's constructor has (its DDP rank and world size,
seed, epoch count) is the training loop's to set, never the strategy's."""


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _check_params(kind: str, name: str, params: dict[str, Any], spec: str) -> None:
    """Refuse a parameter ``name`` does not document, or a value of the wrong kind."""
    accepted = PARAMETERS[kind].get(name, {})
    if "scheme" in accepted:  # a weight scheme's own parameters: the scheme says which it reads
        scheme = params.get("scheme", "inverse")
        check_scheme_params(str(scheme), {k: v for k, v in params.items() if k in SCHEME_KEYS})
    for key, value in params.items():
        if key not in accepted:
            names = ", ".join(sorted(accepted)) or "none"
            raise ValueError(
                f"{kind} {name!r} has no parameter {key!r} (in {spec!r}); its parameters: {names}"
            )
        want = accepted[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {
            FLOAT: number and _finite(value),
            BOOL: isinstance(value, bool),
            TEXT: isinstance(value, str) and bool(value),
            COUNT: number and isinstance(value, int) and 1 <= value <= MAX_INT,
            EPOCH: number and isinstance(value, int) and 0 <= value <= MAX_INT,
        }[want]
        if not ok:
            raise ValueError(f"{name}: {key} must be {want}, got {value!r} (in {spec!r})")


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
    def slug(self) -> str:
        """A file-system friendly name."""
        return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", self.label).strip("_")


def parse_strategy(spec: str) -> Strategy:
    """Parse ``SAMPLER[params]+LOSS[params]`` or ``SAMPLER[params]+LOSS[params]:STAGE[params]``
    (see module docstring)."""
    from longtail.strategies.stages import STAGES

    first, *rest = split_outside_brackets(spec, ":")
    if len(rest) > 1:
        raise ValueError(f"strategy {spec!r} has {len(rest) + 1} stages; at most 2 (FIRST:SECOND)")
    stage, stage_params = _parse_part(rest[0]) if rest else (None, {})
    if stage is not None and stage not in STAGES:
        raise ValueError(
            f"unknown second stage {stage!r} in {spec!r}; stages: {', '.join(sorted(STAGES))}"
        )
    parts = split_outside_brackets(first, "+")
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"strategy {spec!r} must be SAMPLER+LOSS, e.g. class_balanced+focal")
    if len(parts) == 1:
        name, _ = _parse_part(parts[0])
        parts = [parts[0], "ce"] if name in SAMPLERS else ["instance", parts[0]]
    (s_name, s_params), (l_name, l_params) = _parse_part(parts[0]), _parse_part(parts[1])
    if s_name not in SAMPLERS:
        raise ValueError(
            f"unknown sampler {s_name!r} in {spec!r}; samplers: {', '.join(sorted(SAMPLERS))}"
        )
    if l_name not in LOSSES:
        raise ValueError(
            f"unknown loss {l_name!r} in {spec!r}; losses: {', '.join(sorted(LOSSES))}"
        )
    _check_params("sampler", s_name, s_params, spec)
    _check_params("loss", l_name, l_params, spec)
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


DEFAULT_STRATEGIES = (
    "instance+ce",
    "weighted+ce",
    "weighted[scheme=smooth_inverse,alpha=500]+ce",
    "weighted[scheme=effective_number,beta=0.999]+ce",
    "hybrid+ce",
    "curriculum+ce",
    "instance+focal",
    "class_balanced+focal",
    "instance+balanced_softmax",
    "instance+ldam_drw",
    "sqrt+ce:crt",
    "weighted+ce:lws",
    "sqrt+ce:logit_adjust",
    "instance+ce:weight_balancing",
)
"""What ``longtail compare`` runs by default: plain training, inverse / smoothed-inverse /
class-balanced (effective number) weighted sampling, hybrid and curriculum sampling, focal loss,
class-balanced sampling with focal loss, two of the strongest published losses (balanced
softmax, LDAM with deferred re-weighting), and the decoupled second stages in their strongest
pairing on the demo (classifier re-training and post-hoc logit adjustment after square-root
sampling, learnable weight scaling after inverse-frequency sampling, weight balancing)."""
