"""How much of a backbone trains: ``--tune full | frozen | last[n=2] | lora[r=8,alpha=16]``.

The backbone is everything but the classifier layer (:func:`~longtail.training.models.
find_classifier`), seen as a sequence of **blocks**: the model's children that hold parameters,
in order, a lone container among them opened (``small_cnn``: its three conv stages; a ResNet:
``conv1``, ``bn1``, ``layer1`` .. ``layer4``; a timm ViT: ``patch_embed``, ``blocks``, ``norm``).

- ``full``: everything trains (the backbone's learning rate times ``--backbone-lr-scale``).
- ``frozen``: only the head trains; the backbone stays in eval mode (BatchNorm statistics and
  dropout frozen), a linear probe on its features (Kang et al., "Decoupling Representation and
  Classifier for Long-Tailed Recognition", ICLR 2020, train the classifier on fixed features).
- ``last[n]``: the last ``n`` blocks and the head train; the earlier blocks are frozen, in eval
  mode.
- ``lora[r, alpha]``: every ``Linear`` and ``Conv2d`` of the backbone gets a low-rank update
  W + (alpha / r) B A with A, B of rank ``r`` (Hu et al., "LoRA", ICLR 2022), injected by Hugging
  Face ``peft`` (``pip install 'longtail[peft]'``); only A, B and the head train, the rest of the
  backbone is frozen, in eval mode. LIFT (Shi et al., ICML 2024) finds such light tuning better
  for the tail than full fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from longtail._checks import parse_named
from longtail.data.bundle import DataBundle
from longtail.data.features import Backbone, feature_bundle
from longtail.errors import LongtailError
from longtail.params import COUNT, POSITIVE, Param, check_params
from longtail.training.config import TrainConfig
from longtail.training.models import build_model, find_classifier, weights_digest
from longtail.training.runtime import resolve_device

TUNINGS: dict[str, dict[str, Param]] = {
    "full": {},
    "frozen": {},
    "last": {"n": COUNT},
    "lora": {"r": COUNT, "alpha": POSITIVE},
}
"""Each ``--tune`` and its parameters, with their ranges."""
LORA_MARK = "lora_"
"""What the names of LoRA's own parameters hold."""


@dataclass(frozen=True)
class Tuning:
    """A parsed ``--tune``: its ``kind`` and parameters (``n`` for last, ``r`` and ``alpha`` for
    lora)."""

    kind: str = "full"
    n: int = 2
    r: int = 8
    alpha: float = 16.0


@dataclass(frozen=True)
class TunedSplit:
    """What ``--tune`` leaves to train in a model: the backbone parameters that stay frozen (by
    ``id``), the blocks kept in eval mode, and the backbone parameters that train."""

    frozen: frozenset[int]
    eval_blocks: tuple[nn.Module, ...]
    backbone: tuple[nn.Parameter, ...]


def parse_tune(text: str) -> Tuning:
    """``full``, ``frozen``, ``last[n=2]`` or ``lora[r=8,alpha=16]`` as a :class:`Tuning`."""
    name, params = parse_named(text)
    if name not in TUNINGS:
        raise LongtailError(
            f"tune must be one of full, frozen, last[n=2] or lora[r=8,alpha=16], got {text!r}"
        )
    check_params(TUNINGS[name], f"tune {name}", **params)
    return Tuning(name, **params)


def check_tune(text: str) -> None:
    """Refuse a ``--tune`` that :func:`parse_tune` cannot read."""
    parse_tune(text)


def backbone_blocks(model: nn.Module) -> list[nn.Module]:
    """The backbone's blocks: ``model``'s children with parameters, except the classifier's,
    a lone container among them opened (repeatedly)."""
    head = find_classifier(model).split(".")[0]
    blocks = [m for name, m in model.named_children() if name != head and _has_parameters(m)]
    while len(blocks) == 1:
        inner = [m for m in blocks[0].children() if _has_parameters(m)]
        if not inner:
            break
        blocks = inner
    return blocks


def add_lora(model: nn.Module, tuning: Tuning) -> nn.Module:
    """``model`` with LoRA adapters of ``tuning`` injected into its backbone's ``Linear`` and
    ``Conv2d`` layers (in place; a model longtail built for the run)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as err:
        raise LongtailError("--tune lora needs peft: pip install 'longtail[peft]'") from err
    head = find_classifier(model)
    targets = [
        name
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d)) and not _under(name, head)
    ]
    if not targets:
        raise LongtailError("--tune lora: the backbone has no Linear or Conv2d layer to adapt")
    config = LoraConfig(r=tuning.r, lora_alpha=tuning.alpha, target_modules=targets)
    return inject_adapter_in_model(config, model)


def tuned_split(model: nn.Module, tuning: Tuning) -> TunedSplit:
    """What trains in ``model`` under ``tuning`` (see the module docstring)."""
    head = find_classifier(model)
    backbone = [(n, p) for n, p in model.named_parameters() if not _under(n, head)]
    if tuning.kind == "full":
        return TunedSplit(frozenset(), (), tuple(p for _, p in backbone))
    blocks = backbone_blocks(model)
    if tuning.kind == "last":
        if tuning.n > len(blocks):
            raise LongtailError(
                f"--tune last[n={tuning.n}]: this backbone has {len(blocks)} blocks; "
                f"use n <= {len(blocks)}, or --tune full"
            )
        keep = {id(p) for block in blocks[-tuning.n :] for p in block.parameters()}
        blocks = blocks[: -tuning.n]
    else:  # frozen, or lora's adapters alone
        keep = {id(p) for n, p in backbone if tuning.kind == "lora" and LORA_MARK in n}
    frozen = frozenset(id(p) for _, p in backbone if id(p) not in keep)
    trained = tuple(p for _, p in backbone if id(p) in keep)
    return TunedSplit(frozen, tuple(blocks), trained)


def backbone_lr_groups(
    trainable: list[nn.Parameter], split: TunedSplit, lr: float, scale: float
) -> list[nn.Parameter] | list[dict[str, Any]]:
    """``trainable`` as optimiser parameter groups: the head's first (at the optimiser's
    learning rate ``lr``), then the backbone's at ``lr * scale``; a plain list when the backbone
    trains no parameter of ``trainable`` or ``scale`` is 1."""
    backbone = {id(p) for p in split.backbone}
    body = [p for p in trainable if id(p) in backbone]
    if not body or scale == 1.0:
        return trainable
    head = [p for p in trainable if id(p) not in backbone]
    return [{"params": head}, {"params": body, "lr": lr * scale}]


FEATURE_SEED = 0
"""The seed a frozen backbone is built with before its weights load (the same for every run)."""


def frozen_features(config: TrainConfig, data: DataBundle) -> DataBundle:
    """``data`` as the features of ``config``'s frozen backbone, computed once
    (:func:`~longtail.data.features.feature_bundle`), when ``config.tune`` is ``frozen``;
    otherwise (or when ``data`` holds features already) ``data`` itself."""
    if parse_tune(config.tune).kind != "frozen" or "feature_dim" in data.extras:
        return data
    with torch.random.fork_rng(devices=[]):  # the caller's generator is left as it was
        torch.manual_seed(FEATURE_SEED)
        model = build_model(
            config.model,
            data.distribution.num_classes,
            data.in_channels,
            data.image_size,
            config.pretrained,
        )
    describe = {
        "model": config.model,
        "pretrained": config.pretrained,
        "pretrained_sha256": weights_digest(config.pretrained),
    }
    backbone = Backbone(model, model.get_submodule(find_classifier(model)), describe)
    return feature_bundle(data, backbone, resolve_device(config.device))


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


__all__ = [
    "LORA_MARK",
    "TUNINGS",
    "TunedSplit",
    "Tuning",
    "FEATURE_SEED",
    "add_lora",
    "frozen_features",
    "backbone_lr_groups",
    "backbone_blocks",
    "check_tune",
    "parse_tune",
    "tuned_split",
]
