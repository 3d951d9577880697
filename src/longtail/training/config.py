"""The settings of a training run, each declared once with what the command line needs.

Every :class:`TrainConfig` field carries an :class:`Option` in its metadata: its flag, help,
choices, and whether it belongs to the run's **identity** (it changes the result) or only to its
**execution** (device, workers, progress bars). The command line's options
(:func:`add_options`), option files and a run's ``config.json`` read back
(:mod:`longtail.config_file`), and the identity (:mod:`longtail.training.identity`) are all
derived from these fields, so adding a setting is adding one field, in a subclass if need be.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from longtail._checks import check_int, check_number
from longtail.data import OWN_TRANSFORMS, PRESETS
from longtail.errors import LongtailError
from longtail.params import MAX_INT

HEADS = ("linear", "cosine")
"""The classifier heads a model may end with (:func:`longtail.training.models.build_model`)."""

MAX_EPOCHS = 100_000
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Option:
    """How a setting appears on the command line and whether it is part of a run's identity.

    ``flag`` is its long option (None: set by the command itself, as ``--strategy`` and
    ``--seed`` are); ``negated`` marks a true-by-default setting whose flag turns it off
    (``--no-amp`` sets ``amp`` to false); ``execution`` marks a setting that does not change the
    result, left out of the identity. ``low`` / ``high`` bound an integer, ``positive`` a number;
    ``also`` lists values accepted from code but not offered on the command line; ``shared``
    marks a setting that every row of a comparison has in common (the model and its epochs,
    what the runs are judged for), which a row may not set for itself (see
    :func:`parse_setting`); ``parse`` names the function (imported when a value is checked, so
    that building the command line imports nothing heavy) that checks a value written in a
    small language of its own (``mixup[alpha=0.2]``)."""

    help: str
    flag: str | None = None
    choices: tuple[str, ...] | None = None
    negated: bool = False
    execution: bool = False
    low: int = 0
    high: int | None = None
    positive: bool = False
    also: tuple[str, ...] = ()
    shared: bool = False
    parse: str | None = None  # "module:function" that refuses a value it cannot read


def option(default: Any, help: str, flag: str | None = None, **kw: Any) -> Any:
    """A dataclass field whose metadata is its :class:`Option`."""
    return field(default=default, metadata={"option": Option(help, flag, **kw)})


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved beside its results)."""

    strategy: str = option("instance+ce", "SAMPLER+LOSS[:STAGE]")
    model: str = option(
        "mlp",
        "mlp, small_cnn, a torchvision classifier (resnet18, ...) or timm:NAME",
        "--model",
        shared=True,
    )
    pretrained: str | None = option(
        None,
        "local weights file, a torchvision weights name or a timm tag (needs network once), or "
        "embedded (small_cnn pretrained without labels on the embedded set's unused images)",
        "--pretrained",
        shared=True,
    )
    tune: str = option(
        "full",
        "how much of the backbone trains: full; frozen (the head only, the backbone in eval "
        "mode); last[n=2] (the last n blocks and the head); lora[r=8,alpha=16] (low-rank "
        "adapters, needs longtail[peft])",
        "--tune",
        shared=True,
        parse="longtail.training.backbones:check_tune",
    )
    backbone_lr_scale: float = option(
        1.0,
        "the backbone's learning rate as a multiple of --lr (the head's)",
        "--backbone-lr-scale",
        positive=True,
    )
    epochs: int = option(10, "first-stage epochs", "--epochs", low=1, high=MAX_EPOCHS, shared=True)
    batch_size: int = option(128, "images per batch", "--batch-size", low=1)
    optimizer: str = option(
        "adamw",
        "optimiser: adamw, sgd, or a sharpness-aware step around one: sam[rho=0.05,base=sgd] "
        "(Foret et al. 2021) or imbsam[rho=0.05,base=sgd] (the tail classes' loss only; Zhou "
        "et al. 2023)",
        "--optimizer",
        parse="longtail.training.sharpness:check_optimizer",
    )
    lr: float = option(1e-3, "learning rate", "--lr", positive=True)
    weight_decay: float = option(1e-4, "weight decay", "--weight-decay")
    momentum: float = option(0.9, "SGD momentum", "--momentum")
    warmup_epochs: int = option(
        1,
        "linear learning-rate warm-up before the cosine decay",
        "--warmup-epochs",
        low=0,
        high=MAX_EPOCHS,
    )
    select_best: bool = option(
        True,
        "test the model of the epoch with the best validation balanced accuracy (--last-epoch: "
        "the last epoch's instead)",
        "--last-epoch",
        negated=True,
    )
    head: str | None = option(
        None,
        "classifier head (default: the one the loss needs, cosine for ldam_drw, else linear); "
        "a cosine head scales its logits by 30",
        "--head",
        choices=HEADS,
    )
    augment: str | None = option(
        None,
        "training augmentation (default: none for the mlp, which reads pixels by position, "
        "standard for other models): standard = random-resized crop + horizontal "
        "flip (embedded set: padded random crop + flip); aerial = the crop in any of the 8 "
        "flips/90-degree rotations, for overhead imagery; none. Evaluation is never augmented",
        "--augment",
        choices=PRESETS,
        also=(OWN_TRANSFORMS,),
    )
    seed: int = option(0, "random seed of the run", low=0, high=MAX_SEED)
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...", "--device", execution=True)
    num_workers: int | None = option(
        None,
        "DataLoader workers (default: from the CPU count; 0 for in-memory data)",
        "--workers",
        execution=True,
        low=0,
        high=1024,
    )
    target_prior: str = option(
        "uniform",
        "the class prior the model is selected and judged for: uniform (balanced accuracy), "
        "train, or a file of class,share rows (CSV) or a JSON object class -> share",
        "--target-prior",
        shared=True,
        parse="longtail.priors:check_target_prior",
    )
    mix: str = option(
        "none",
        "mixed-sample training of the first stage: none, mixup[alpha=0.2], cutmix[alpha=1] or "
        "remix[alpha=0.2,kappa=3,tau=0.5] (the label leans to the rarer class)",
        "--mix",
        parse="longtail.mixing:check_mix",
    )
    amp: bool = option(
        True, "mixed precision on CUDA (--no-amp: full precision)", "--no-amp", negated=True
    )
    progress: bool = option(
        True,
        "progress bars on a terminal, a line per epoch in a log (--no-progress: neither)",
        "--no-progress",
        negated=True,
        execution=True,
    )

    def __post_init__(self) -> None:
        for f, opt in settings(type(self)):
            try:
                check_value(f.name, getattr(self, f.name), f.default, opt)
            except LongtailError as err:  # name the flag too: the command line's name of it
                raise LongtailError(
                    f"{err} (option {opt.flag})" if opt.flag else str(err)
                ) from None


def settings(cls: type) -> Iterator[tuple[Any, Option]]:
    """(field, its :class:`Option`) of every setting of the config class ``cls``."""
    for f in fields(cls):
        opt = f.metadata.get("option")
        if opt is not None:
            yield f, opt


def execution_fields(cls: type) -> tuple[str, ...]:
    """The settings of ``cls`` that do not change a run's result."""
    return tuple(f.name for f, opt in settings(cls) if opt.execution)


def check_value(name: str, value: Any, default: Any, opt: Option) -> None:
    """Refuse ``value`` for the setting ``name`` unless it is of the default's kind, within the
    option's bounds and among its choices; None is taken where the default is None."""
    if value is None and default is None:
        return
    if opt.choices is not None and value not in (*opt.choices, *opt.also):
        raise LongtailError(f"{name} must be one of {', '.join(opt.choices)}, got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise LongtailError(f"{name} must be true or false, got {value!r}")
    elif isinstance(default, int) or opt.high is not None:
        check_int(value, name, opt.low, opt.high or MAX_INT)
    elif isinstance(default, float):
        check_number(value, name, opt.positive)
    if opt.parse is not None:
        if not isinstance(value, str):
            raise LongtailError(f"{name} must be text, got {value!r}")
        module, function = opt.parse.split(":")
        getattr(importlib.import_module(module), function)(value)


def row_settings(cls: type = TrainConfig) -> tuple[str, ...]:
    """The settings a row of a comparison may set for itself: those with a command-line flag
    that change the result and are not ``shared``."""
    return tuple(
        f.name
        for f, opt in settings(cls)
        if opt.flag is not None and not opt.execution and not opt.shared
    )


def parse_setting(name: str, text: str, cls: type = TrainConfig) -> Any:
    """The value of the setting ``name`` written as ``text`` (``lr`` and ``"0.002"``, as a
    compared row writes it after ``@``), of the setting's kind and checked like any other;
    ``true``/``false`` for a switch. A setting a row may not set raises ``ValueError``."""
    allowed = row_settings(cls)
    if name not in allowed:
        raise LongtailError(
            f"a compared row cannot set {name!r}"
            + (" (every row of a comparison shares it)" if _is_setting(name, cls) else "")
            + f"; it may set {', '.join(allowed)}"
        )
    f, opt = next((f, opt) for f, opt in settings(cls) if f.name == name)
    value: Any = text
    try:
        if isinstance(f.default, bool):
            value = {"true": True, "false": False}[text.lower()]
        elif isinstance(f.default, int) or opt.high is not None:
            value = int(text)
        elif isinstance(f.default, float):
            value = float(text)
    except (KeyError, ValueError):
        kind = {bool: "true or false", int: "an integer"}.get(type(f.default), "a number")
        raise LongtailError(f"{name} must be {kind}, got {text!r}") from None
    check_value(name, value, f.default, opt)
    return value


def _is_setting(name: str, cls: type) -> bool:
    return any(f.name == name for f, _ in settings(cls))


def add_options(parser: argparse._ActionsContainer, cls: type = TrainConfig) -> None:
    """Add a command-line option for every setting of ``cls`` that has a flag."""
    for f, opt in settings(cls):
        if opt.flag is None:
            continue
        if opt.negated:
            parser.add_argument(opt.flag, dest=f.name, action="store_false", help=opt.help)
            continue
        kind = type(f.default) if f.default is not None else (int if opt.high else str)
        shown = "" if f.default is None else f" (default {f.default})"
        parser.add_argument(
            opt.flag,
            dest=f.name,
            type=kind,
            default=f.default,
            choices=opt.choices,
            metavar=None if opt.choices else opt.flag.lstrip("-").upper().replace("-", "_"),
            help=opt.help + shown,
        )


def from_arguments(args: argparse.Namespace, cls: type = TrainConfig, **given: Any) -> TrainConfig:
    """The config of class ``cls`` whose settings are ``args``' (parsed with :func:`add_options`),
    with ``given`` (the command's own: strategy, seed) on top."""
    values = {f.name: getattr(args, f.name) for f, opt in settings(cls) if opt.flag is not None}
    return cls(**{**values, **given})


def option_names(cls: type = TrainConfig) -> dict[str, tuple[str, bool]]:
    """For each setting with a flag: (its option name with underscores, whether it is negated),
    as option files spell it (``last_epoch`` for ``select_best``)."""
    return {
        f.name: (opt.flag.lstrip("-").replace("-", "_"), opt.negated)
        for f, opt in settings(cls)
        if opt.flag is not None
    }


__all__ = [
    "HEADS",
    "MAX_EPOCHS",
    "MAX_SEED",
    "Option",
    "TrainConfig",
    "add_options",
    "check_value",
    "execution_fields",
    "from_arguments",
    "option",
    "option_names",
    "parse_setting",
    "row_settings",
    "settings",
]
