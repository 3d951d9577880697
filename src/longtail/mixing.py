"""Mixed-sample training: mixup, CutMix and Remix on a batch, keyed on (seed, epoch, step).

A batch (x, y) is paired with a permutation of itself, x~ = mix(x, x[perm]), and the loss of a
sample is lambda_y l(z, y) + (1 - lambda_y) l(z, y[perm]) with any longtail loss l:

- ``mixup`` (Zhang et al., ICLR 2018): x~ = lam x + (1 - lam) x[perm], lam ~ Beta(alpha, alpha),
  lambda_y = lam;
- ``cutmix`` (Yun et al., ICCV 2019): a box of area (1 - lam) of the image comes from x[perm];
  lambda_y = the share of the image left as it was (after clipping the box to the image);
- ``remix`` (Chou et al., "Remix: Rebalanced Mixup", ECCV Workshops 2020): mixup's images, but the
  label leans to the rarer class: lambda_y = 0 when n_y / n_y[perm] >= kappa and lam < tau,
  lambda_y = 1 when n_y / n_y[perm] <= 1 / kappa and 1 - lam < tau, lambda_y = lam otherwise.

torchvision's ``v2.MixUp`` / ``v2.CutMix`` return one-hot soft targets and draw from torch's
global generator; longtail's losses take class indices and its randomness is a function of
(seed, epoch, step), so a resumed run mixes exactly as the uninterrupted one did.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from longtail._checks import parse_named
from longtail.errors import LongtailError
from longtail.params import POSITIVE, Param, check_params

MIXES = ("none", "mixup", "cutmix", "remix")
MIX_PARAMS: dict[str, dict[str, Param]] = {
    "mixup": {"alpha": POSITIVE},
    "cutmix": {"alpha": POSITIVE},
    "remix": {
        "alpha": POSITIVE,
        "kappa": POSITIVE,
        "tau": Param("number", low=0, high=1, low_open=True, high_open=True),
    },
}
"""Each recipe's parameters, with their ranges."""
_DEFAULTS = {"mixup": 0.2, "cutmix": 1.0, "remix": 0.2}


@dataclass(frozen=True)
class MixSpec:
    """A mixing recipe: its name, the Beta(alpha, alpha) of lam, and Remix's kappa and tau."""

    name: str
    alpha: float
    kappa: float = 3.0
    tau: float = 0.5


def parse_mix(text: str) -> MixSpec | None:
    """``none``, ``mixup[alpha=0.2]``, ``cutmix[alpha=1]`` or ``remix[alpha=0.2,kappa=3,tau=0.5]``
    as a :class:`MixSpec` (None for ``none``); anything else raises ``ValueError``."""
    name, params = parse_named(text)
    if name not in MIXES:
        raise LongtailError(
            f"mix must be one of {', '.join(MIXES)} (with [key=value]), got {text!r}"
        )
    if name == "none":
        if params:
            raise LongtailError("mix none takes no parameters")
        return None
    check_params(MIX_PARAMS[name], name, **params)
    values = {"alpha": _DEFAULTS[name], **params}
    return MixSpec(name, **{k: float(v) for k, v in values.items()})


@dataclass(frozen=True)
class MixedBatch:
    """Mixed images, the two targets of each sample and the weight of the first, [B]."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    weight: Tensor


def _box(lam: float, height: int, width: int, rng: np.random.Generator) -> tuple[int, ...]:
    """CutMix's box: side ratio sqrt(1 - lam), centre uniform, clipped to the image."""
    cut = np.sqrt(1.0 - lam)
    h, w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = np.clip([cy - h // 2, cy + h // 2], 0, height)
    left, right = np.clip([cx - w // 2, cx + w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


def remix_weight(lam: float, n_a: Tensor, n_b: Tensor, kappa: float, tau: float) -> Tensor:
    """Remix's label weight of the first class of each pair, from the two classes' training
    counts n_a, n_b [B] (see the module docstring)."""
    weight = torch.full(n_a.shape, float(lam), dtype=torch.float32, device=n_a.device)
    ratio = n_a.double() / n_b.double().clamp_min(1)
    weight[(ratio >= kappa) & (lam < tau)] = 0.0
    weight[(ratio <= 1 / kappa) & (1 - lam < tau)] = 1.0
    return weight


def mix_batch(
    spec: MixSpec, x: Tensor, y: Tensor, rng: np.random.Generator, counts: Tensor | None = None
) -> MixedBatch:
    """The batch (x [B, ...], y [B]) mixed by ``spec``, drawing lam, the pairing and the box
    from ``rng``; Remix needs the training ``counts`` [K]."""
    lam = float(rng.beta(spec.alpha, spec.alpha))
    perm = torch.from_numpy(rng.permutation(len(y))).to(y.device)
    if spec.name == "cutmix":
        top, bottom, left, right = _box(lam, x.shape[-2], x.shape[-1], rng)
        mixed = x.clone()
        mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (x.shape[-2] * x.shape[-1])
    else:
        mixed = lam * x + (1.0 - lam) * x[perm]
    y_b = y[perm]
    if spec.name == "remix":
        if counts is None:
            raise LongtailError("remix needs the training class counts")
        counts = counts.to(y.device)
        weight = remix_weight(lam, counts[y], counts[y_b], spec.kappa, spec.tau)
    else:
        weight = torch.full((len(y),), lam, dtype=torch.float32, device=y.device)
    return MixedBatch(mixed, y, y_b, weight)


def mixed_loss(criterion: nn.Module, logits: Tensor, batch: MixedBatch) -> Tensor:
    """mean_i [w_i l(z_i, a_i) + (1 - w_i) l(z_i, b_i)] with ``criterion``'s per-sample values
    (a copy with ``reduction="none"``; the criterion given is not changed)."""
    if not hasattr(criterion, "reduction"):
        raise LongtailError(
            f"{type(criterion).__name__} has no 'reduction', so it cannot give the per-sample "
            "losses that mixing weighs; give the loss a reduction='none' mode"
        )
    per_sample = copy.copy(criterion)  # its own attributes: the one given keeps its reduction
    per_sample.reduction = "none"
    first, second = per_sample(logits, batch.y_a), per_sample(logits, batch.y_b)
    w = batch.weight.to(first.dtype)
    return (w * first + (1 - w) * second).mean()


def mix_rng(seed: int, epoch: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator of one step's mixing: a function of (seed, epoch, step, rank) only."""
    return np.random.default_rng([seed, epoch, step, rank, 0x6D6978])


def check_mix(text: Any) -> None:
    """Refuse a mix option that :func:`parse_mix` cannot read."""
    parse_mix(str(text))


__all__ = [
    "MIXES",
    "MixSpec",
    "MixedBatch",
    "check_mix",
    "mix_batch",
    "mix_rng",
    "mixed_loss",
    "parse_mix",
    "remix_weight",
]
