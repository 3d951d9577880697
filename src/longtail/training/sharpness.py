"""Optimisers by name, and sharpness-aware steps around them (SAM, ImbSAM).

``--optimizer`` takes ``adamw``, ``sgd``, ``sam[rho=0.05,base=sgd]`` or
``imbsam[rho=0.05,base=adamw]``:

- SAM (Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization",
  ICLR 2021): the base optimiser steps with the gradient taken at w + e,
  e = rho g / ||g||, g = grad L(w): it seeks weights whose whole neighbourhood has low loss.
- ImbSAM (Zhou et al., "ImbSAM: A Closer Look at Sharpness-Aware Minimization in
  Class-Imbalanced Recognition", ICCV 2023): only the tail classes' loss is made flat. With
  L = L_head + L_tail over the batch, the step uses grad L_head(w) + grad L_tail(w + e_tail),
  e_tail = rho g_tail / ||g_tail||. The tail classes are the training distribution's tail group.

Under mixed precision the gradients of the first pass are unscaled by hand (the scaler unscales
once, at its step), and a first pass with non-finite gradients is not perturbed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from longtail._checks import parse_named
from longtail.errors import LongtailError
from longtail.params import POSITIVE, Param, check_params

BASES = ("adamw", "sgd")
SHARPNESS = ("sam", "imbsam")
SHARPNESS_PARAMS: dict[str, Param] = {"rho": POSITIVE, "base": Param("text", choices=BASES)}
"""The parameters of ``sam[...]`` and ``imbsam[...]``, with their ranges."""


@dataclass(frozen=True)
class OptimizerSpec:
    """The base optimiser, and the sharpness-aware step around it (None: plain steps)."""

    base: str
    sharpness: str | None = None
    rho: float = 0.05


def parse_optimizer(text: str) -> OptimizerSpec:
    """``adamw``, ``sgd``, ``sam[rho=..,base=..]`` or ``imbsam[rho=..,base=..]``."""
    name, params = parse_named(str(text))
    if name in BASES:
        if params:
            raise LongtailError(f"optimizer {name} takes no parameters; sam[base={name}] wraps it")
        return OptimizerSpec(name)
    if name not in SHARPNESS:
        raise LongtailError(
            f"optimizer must be one of {', '.join(BASES + SHARPNESS)} (sam[rho=0.05,base=sgd]), "
            f"got {text!r}"
        )
    check_params(SHARPNESS_PARAMS, name, **params)
    rho, base = params.get("rho", 0.05), params.get("base", "sgd")
    return OptimizerSpec(base, name, float(rho))


def check_optimizer(text: str) -> None:
    """Refuse an optimiser option :func:`parse_optimizer` cannot read."""
    parse_optimizer(text)


def build_optimizer(
    spec: OptimizerSpec,
    parameters: list[nn.Parameter],
    lr: float,
    weight_decay: float,
    momentum: float,
) -> torch.optim.Optimizer:
    """The base optimiser of ``spec`` (SGD with Nesterov momentum, or AdamW)."""
    if spec.base == "sgd":
        return torch.optim.SGD(
            parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True
        )
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


Losses = Callable[[], tuple[Tensor, Tensor | None]]
"""A forward pass at the current weights: (the loss made flat, the loss kept as it is or None)."""


def sharpness_step(
    rho: float,
    optimizer: torch.optim.Optimizer,
    losses: Losses,
    scaler: torch.amp.GradScaler | None = None,
    first: tuple[Tensor, Tensor | None] | None = None,
) -> None:
    """One sharpness-aware step of ``optimizer``: gradients of ``losses()``' first part at
    w + rho g / ||g|| plus those of its second part at w (``first``: the pass at w, when the
    caller has made it already)."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    flat, kept = first if first is not None else losses()
    scale = float(scaler.get_scale()) if scaler is not None else 1.0

    def backward(loss: Tensor, retain: bool = False) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward(retain_graph=retain)

    optimizer.zero_grad(set_to_none=True)
    backward(flat, retain=kept is not None)
    grads = [p.grad / scale if p.grad is not None else torch.zeros_like(p) for p in params]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    step = rho / norm if bool(torch.isfinite(norm)) and norm > 0 else torch.zeros_like(norm)
    optimizer.zero_grad(set_to_none=True)
    held = None
    if kept is not None:
        backward(kept)
        held = [p.grad.clone() if p.grad is not None else None for p in params]
        optimizer.zero_grad(set_to_none=True)
    shifts = [g * step for g in grads]
    with torch.no_grad():
        for p, e in zip(params, shifts, strict=True):
            p.add_(e)
    backward(losses()[0])
    with torch.no_grad():
        for k, (p, e) in enumerate(zip(params, shifts, strict=True)):
            p.sub_(e)
            if held is not None and held[k] is not None:
                p.grad = held[k] if p.grad is None else p.grad + held[k]
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


__all__ = [
    "BASES",
    "SHARPNESS",
    "OptimizerSpec",
    "build_optimizer",
    "check_optimizer",
    "parse_optimizer",
    "sharpness_step",
]
