"""Models by name: small built-in networks, any torchvision classifier, and timm models if installed."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from longtail._checks import check_int
from longtail.errors import LongtailError
from longtail.training.config import HEADS

BUILTIN = ("mlp", "small_cnn")
EMBEDDED = "embedded"
"""``--pretrained embedded``: the shipped self-supervised ``small_cnn`` backbone of the embedded set."""
EMBEDDED_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "small_cnn_embedded.pt"
"""Its file, made by ``scripts/pretrain_embedded_backbone.py`` (no label used)."""
POSITIONAL = ("mlp",)
"""Models that read each pixel by its position (no convolution, no translation invariance)."""


def default_augment(name: str) -> str:
    """The augmentation preset a model trains with when none is asked: ``none`` for a model
    that reads pixels by position (an MLP: a shifted image is another input to it, so random
    crops blur what it learns; on Fashion-MNIST-LT plain training reaches 81.4% balanced accuracy
    without them and 76.9% with the padded crop, ``benchmarks/balanced_reference.py``),
    ``standard`` for convolutional and attention models."""
    return "none" if name in POSITIONAL else "standard"


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] x len(hidden) -> Linear: the reference model for 28x28 images."""

    def __init__(
        self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 128)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-pool stages and a linear classifier; suits 28-96 px images."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(
            stage(in_channels, width),
            stage(width, 2 * width),
            stage(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class FeatureHead(nn.Module):
    """A head alone, for features computed once (:mod:`longtail.data.features`): its
    ``classifier``, a linear layer ``in_features`` -> ``num_classes`` (or what replaces it)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


def feature_head(in_features: int, num_classes: int, head: str, head_scale: float) -> nn.Module:
    """A :class:`FeatureHead`, linear or cosine (``head``, with ``head_scale``)."""
    model = FeatureHead(in_features, num_classes)
    if head == "cosine":
        _replace_head(model, num_classes, lambda n_in, k: CosineClassifier(n_in, k, head_scale))
    return model


class CosineClassifier(nn.Module):
    """Normalised (cosine) classifier: z_j = s cos(x, w_j) = s <x / ||x||, w_j / ||w_j||>, the
    NormedLinear head of LDAM (Cao et al., NeurIPS 2019; Gidaris and Komodakis, CVPR 2018).
    Every class row has the same norm, so no class wins by the length of its weight vector."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 1.0) -> None:
        super().__init__()
        if scale <= 0:
            raise LongtailError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # as nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(x.float(), dim=1)
        w = nn.functional.normalize(self.weight.float(), dim=1)
        return self.scale * x @ w.T


def build_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 224,
    pretrained: str | None = None,
    head: str = "linear",
    head_scale: float = 1.0,
) -> nn.Module:
    """A classifier with ``num_classes`` outputs.

    ``head``: ``linear`` (the model's own last layer) or ``cosine`` (that layer replaced by a
    :class:`CosineClassifier` of scale ``head_scale``).

    ``name``: ``mlp`` or ``small_cnn`` (built in), any torchvision classification model
    (``resnet18``, ``resnet50``, ``efficientnet_b0``, ``convnext_tiny``, ...), or ``timm:NAME`` when
    timm is installed. ``pretrained``: a local state-dict file (always works offline; the classifier
    layer is re-initialised when its shape differs), a torchvision weights name such as
    ``IMAGENET1K_V1`` (downloaded to the torch cache when online), or ``embedded`` for
    ``small_cnn``: the backbone pretrained without labels on the embedded set's unlabelled pool
    (``scripts/pretrain_embedded_backbone.py``).
    """
    check_int(image_size, "image_size", low=1)
    pretrained = _weights_source(name, in_channels, pretrained)
    if name == "mlp":
        model: nn.Module = MLP(in_channels * image_size * image_size, num_classes)
    elif name == "small_cnn":
        model = SmallCNN(in_channels, num_classes)
    elif name.startswith("timm:"):
        try:
            import timm
        except ImportError as err:
            raise LongtailError(f"model {name!r} needs timm: pip install 'longtail[timm]'") from err
        weights_name = pretrained if pretrained and not os.path.exists(pretrained) else None
        model = _timm_model(timm, name[5:], weights_name, num_classes, in_channels)
    else:
        import torchvision

        available = torchvision.models.list_models(module=torchvision.models)
        if name not in available:
            raise LongtailError(
                f"unknown model {name!r}; use 'mlp', 'small_cnn', 'timm:NAME' or a torchvision classifier such as {', '.join(available[:8])}, ..."
            )
        if pretrained and not os.path.exists(pretrained):
            known = [w.name for w in torchvision.models.get_model_weights(name)]
            if pretrained not in known and pretrained != "DEFAULT":
                raise LongtailError(
                    f"--pretrained {pretrained} is neither a file nor a weights name of {name} "
                    f"({', '.join(['DEFAULT', *known])})"
                )
            model = torchvision.models.get_model(name, weights=pretrained)
            _replace_head(model, num_classes)
        else:
            model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        if in_channels != 3:
            raise LongtailError(
                f"torchvision models expect 3-channel images, got in_channels={in_channels}"
            )
    if head not in HEADS:
        raise LongtailError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if head == "cosine":
        _replace_head(model, num_classes, lambda n_in, k: CosineClassifier(n_in, k, head_scale))
    if pretrained and os.path.exists(pretrained):
        load_pretrained(model, pretrained)
    check_input_size(model, name, in_channels, image_size)
    return model


def _weights_source(name: str, in_channels: int, pretrained: str | None) -> str | None:
    """``pretrained`` as build_model reads it: ``embedded`` as the shipped file's path; a file
    name that is no file refused (a built-in model takes nothing else)."""
    if pretrained == EMBEDDED:
        if name != "small_cnn" or in_channels != 1:
            raise LongtailError(
                "--pretrained embedded is a small_cnn backbone for 1-channel images (the "
                "embedded set): use --model small_cnn, or give a weights file of your model"
            )
        pretrained = str(EMBEDDED_WEIGHTS)
    if (
        pretrained
        and not os.path.isfile(pretrained)
        and (
            name in BUILTIN
            or os.sep in pretrained
            or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
        )
    ):
        raise LongtailError(
            f"--pretrained {pretrained}: no such file"
            + ("; mlp and small_cnn take only a local weights file" if name in BUILTIN else "")
        )
    return pretrained


def weights_digest(pretrained: str | None) -> str | None:
    """The SHA-256 of the weights file ``pretrained`` names (``embedded``: the shipped one), so
    that a run's identity changes with the weights and not only with their name; None for no
    file (no weights, or a torchvision / timm weights name)."""
    path = str(EMBEDDED_WEIGHTS) if pretrained == EMBEDDED else pretrained
    if not path or not os.path.isfile(path):
        return None
    stat = os.stat(path)
    return _file_digest(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of the file at ``path`` (cached while its size and modification time stay)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_input_size(model: nn.Module, name: str, in_channels: int, image_size: int) -> None:
    """Run one tiny batch through ``model`` (eval mode, no gradients) so that an image size it
    cannot take is reported now, by name, rather than as a shape error mid-epoch."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise LongtailError(
            f"model {name} cannot take {image_size} x {image_size} images ({first}); "
            "use a larger --image-size (e.g. 32 or more for small_cnn, 64 or more for torchvision models)"
        ) from None
    finally:
        model.train(was_training)


def find_classifier(model: nn.Module) -> str:
    """The name of ``model``'s classifier layer: its last ``nn.Linear`` or
    :class:`CosineClassifier` (what :func:`build_model`'s ``head`` replaces)."""
    found = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, CosineClassifier))]
    if not found or not found[-1]:
        raise LongtailError("model has no Linear classifier layer")
    return found[-1]


def _replace_head(
    model: nn.Module,
    num_classes: int,
    make: Callable[[int, int], nn.Module] = nn.Linear,
) -> None:
    """Swap the last Linear layer for ``make(in_features, num_classes)``."""
    last_name, last = None, None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last_name, last = n, m
    if last is None:
        raise LongtailError("model has no Linear classifier layer to replace")
    parent = model.get_submodule(last_name.rsplit(".", 1)[0]) if "." in last_name else model
    setattr(parent, last_name.rsplit(".", 1)[-1], make(last.in_features, num_classes))


def _timm_model(
    timm: Any, name: str, tag: str | None, num_classes: int, in_channels: int
) -> nn.Module:
    """timm's ``name``, with the pretrained weights ``tag`` (one of ``timm.list_pretrained``'s for
    it, or ``DEFAULT``) fetched from the hub or its local cache; an unknown tag is refused before
    anything is asked of the hub."""
    if tag is None:
        return timm.create_model(name, num_classes=num_classes, in_chans=in_channels)
    known = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{name}.*")]
    if tag != "DEFAULT" and tag not in known:
        raise LongtailError(
            f"--pretrained {tag} is neither a file nor a timm weights tag of {name} "
            f"({', '.join(['DEFAULT', *known[:12]]) if known else 'it has none'})"
        )
    full = name if tag == "DEFAULT" else f"{name}.{tag}"
    try:
        return timm.create_model(
            full, pretrained=True, num_classes=num_classes, in_chans=in_channels
        )
    except Exception as err:  # noqa: BLE001 - the hub's errors, offline most of all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LongtailError(
            f"--pretrained {tag}: timm could not load the weights of {full} ({first}); fetch them "
            "once where the hub is reachable, or pass a local weights file"
        ) from None


log = logging.getLogger("longtail")


@dataclass(frozen=True)
class PretrainedLoad:
    """What :func:`load_pretrained` took from a weights file: the tensors loaded, the model's
    tensors it left as they were (absent from the file, or of another shape there), and the
    file's tensors the model has no place for."""

    loaded: tuple[str, ...]
    kept_as_is: tuple[str, ...]
    unused: tuple[str, ...]


def load_pretrained(model: nn.Module, path: str | Path) -> PretrainedLoad:
    """Load a local state dict (weights only: nothing in the file can run), skipping tensors whose
    shape does not match (e.g. another head). Refuses a file that would leave every tensor
    outside the classifier untouched (weights of another architecture), and logs what was not
    loaded."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LongtailError(
            f"--pretrained {path} is damaged or not a weights file that loads safely ({first})"
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise LongtailError(f"--pretrained {path} holds no state dict (a name -> tensor table)")
    own = model.state_dict()
    fits = {
        k: v
        for k, v in state.items()
        if k in own and isinstance(v, torch.Tensor) and own[k].shape == v.shape
    }
    head = find_classifier(model)
    backbone = [k for k in own if not k.startswith(f"{head}.")]
    report = PretrainedLoad(
        tuple(fits),
        tuple(k for k in own if k not in fits),
        tuple(k for k in state if k not in fits),
    )
    if backbone and not any(k in fits for k in backbone):
        raise LongtailError(
            f"--pretrained {path} fits none of this model's backbone ({len(fits)} of {len(own)} "
            f"tensors match; e.g. the file has {', '.join(list(state)[:3]) or 'nothing'}): "
            "weights of another architecture? Pass the file made for this --model"
        )
    model.load_state_dict(fits, strict=False)
    if report.kept_as_is or report.unused:
        log.warning(
            "--pretrained %s: loaded %d of the model's %d tensors; not loaded: %s%s",
            path,
            len(fits),
            len(own),
            ", ".join(report.kept_as_is[:8]) + ("..." if len(report.kept_as_is) > 8 else ""),
            f"; {len(report.unused)} of the file's tensors unused" if report.unused else "",
        )
    return report


__all__ = [
    "FeatureHead",
    "feature_head",
    "weights_digest",
    "POSITIONAL",
    "default_augment",
    "BUILTIN",
    "HEADS",
    "MLP",
    "build_model",
    "check_input_size",
    "CosineClassifier",
    "find_classifier",
    "load_pretrained",
    "PretrainedLoad",
    "SmallCNN",
]
