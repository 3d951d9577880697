"""Stages of a run: the first trains the whole model with the strategy's sampler and loss; a second
re-trains or re-scales the classifier on the frozen representation ("decoupling", Kang et al.,
ICLR 2020). Second stages by name (``SAMPLER+LOSS:STAGE[params]``):

- ``crt`` (classifier re-training): the classifier re-initialised, then trained alone for
  ``epochs`` (default 2) with class-balanced sampling and cross-entropy.
- ``lws`` (learnable weight scaling): z_j = f_j (w_j . x + b_j), one scale f_j per class (from 1),
  trained alone for ``epochs`` with class-balanced sampling; the classifier stays as it is.
- ``tau_norm``: w_j <- w_j / ||w_j||^tau, tau in 0, 0.1, ..., 2 chosen by validation balanced
  accuracy (the bias is kept).
- ``logit_adjust`` (post-hoc logit adjustment; Menon et al., ICLR 2021): z_j - tau log pi_j with
  pi the training prior, tau in 0, 0.1, ..., 2 chosen by validation balanced accuracy.
- ``weight_balancing`` (Alshammari et al., CVPR 2022): the first stage trains with
  ``weight_decay`` (default 0.05, decoupled as in AdamW) instead of the run's; then the classifier
  alone for ``epochs`` with the class-balanced (effective number) cross-entropy, the same weight
  decay, and MaxNorm: after each step every class row is projected back to norm <= ``max_norm``
  (default: the mean row norm at the end of the first stage).

Stages that train (``crt``, ``lws``, ``weight_balancing``) take ``epochs`` and ``lr``; their
learning rate defaults to 10 times the run's (a classifier alone on fixed features takes larger
steps than the whole network), with a cosine decay over the stage. Everything a second stage
chooses by looking at data looks at the validation split. Its random
parts (the re-initialised classifier, its sampler) are drawn from (seed, epoch) like the rest of
the run, so a run resumed across the stage boundary is the same as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.losses import ClassBalancedLoss, CrossEntropyLoss, log_prior, tau_normalize
from longtail.params import COUNT, NON_NEGATIVE, POSITIVE, Param, check_params
from longtail.sampling import ClassBalancedSampler, InstanceSampler
from longtail.strategies.lifecycle import EpochSampler, LossPart, Part

TAU_GRID = tuple(round(0.1 * k, 1) for k in range(21))
"""The values of tau that ``tau_norm`` and ``logit_adjust`` try on the validation split."""

Head = Callable[[Tensor], Tensor]
"""A classifier as a function: features (the classifier's input) -> logits."""


@dataclass
class StageContext:
    """What a stage may touch: the model, its classifier layer, and validation scores.

    ``score(heads)`` gives the validation balanced accuracy of each candidate classifier (a
    function from the classifier's input features to logits), from one pass over the validation
    split, exact under DDP."""

    model: nn.Module
    get_classifier: Callable[[], nn.Module]
    set_classifier: Callable[[nn.Module], None]
    score: Callable[[list[Head]], list[float]]


class Stage(Part):
    """A stage of training: its epochs, sampler and loss, what learns, and what happens when it
    begins. The loop calls :meth:`begin` at the end of the previous stage (the ``end_of_stage``
    event), :meth:`restore` instead when it resumes a checkpoint taken inside this stage, and
    :meth:`after_step` after every optimiser step."""

    name = "train"
    epochs = 0
    sampler: EpochSampler | None = None
    loss: LossPart | None = None
    weight_decay: float | None = None  # None: the run's
    lr: float | None = None  # None: the run's times lr_multiplier
    lr_multiplier = 10.0  # a classifier alone on fixed features takes larger steps
    lr_warmup = False
    recipe = False  # whether the run's --mix and sharpness-aware optimiser apply to this stage

    def begin(self, ctx: StageContext) -> None:
        """Set up the model for this stage (re-initialise, wrap or re-scale the classifier)."""

    def restore(self, ctx: StageContext) -> None:
        """Give the model this stage's structure again, before a checkpoint's weights load."""

    def parameters(self, ctx: StageContext) -> Iterable[nn.Parameter]:
        """What this stage trains: the classifier's parameters."""
        return ctx.get_classifier().parameters()

    def freezes_representation(self) -> bool:
        return True

    def after_step(self, ctx: StageContext) -> None:
        """Called after every optimiser step of this stage."""

    def parts(self) -> list[Part]:
        return [p for p in (self.sampler, self.loss) if p is not None] + [self]

    def summary(self) -> dict[str, Any]:
        """What the stage chose, for the run's metrics."""
        return {"stage": self.name}


class FirstStage(Stage):
    """The strategy's sampler and loss on the whole model for the run's epochs (with warm-up)."""

    lr_warmup = True
    lr_multiplier = 1.0
    recipe = True

    def __init__(
        self, sampler: EpochSampler, loss: LossPart, epochs: int, weight_decay: float | None
    ) -> None:
        self.sampler, self.loss = sampler, loss
        self.epochs, self.weight_decay = epochs, weight_decay

    def parameters(self, ctx: StageContext) -> Iterable[nn.Parameter]:
        return ctx.model.parameters()

    def freezes_representation(self) -> bool:
        return False


class ScaledClassifier(nn.Module):
    """LWS head: z_j = f_j * inner(x)_j with a learnable scale per class (Kang et al., ICLR 2020)."""

    def __init__(self, inner: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.inner = inner
        self.scales = nn.Parameter(torch.ones(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) * self.scales


class AdjustedClassifier(nn.Module):
    """Post-hoc logit adjustment: z_j = inner(x)_j + offset_j, with offset = -tau log pi fixed."""

    def __init__(self, inner: nn.Module, offset: Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("offset", offset.clone().float())

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) + self.offset.to(x.device)


def _classifier_weight(classifier: nn.Module, stage: str) -> Tensor:
    weight = getattr(classifier, "weight", None)
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise LongtailError(f"{stage} needs a classifier layer with a [classes, features] weight")
    return weight


class BalancedClassifierStage(Stage):
    """A stage that trains the classifier for ``epochs`` with class-balanced sampling and CE."""

    param_ranges: ClassVar[dict[str, Param]] = {"epochs": COUNT, "lr": POSITIVE}

    def __init__(
        self, targets: Any, counts: np.ndarray, seed: int, epochs: int = 2, lr: float | None = None
    ) -> None:
        check_params(self.param_ranges, self.name, epochs=epochs, lr=lr)
        self.epochs, self.lr = int(epochs), None if lr is None else float(lr)
        self.num_classes = len(counts)
        self.sampler = EpochSampler(
            ClassBalancedSampler(targets, seed=seed, num_classes=self.num_classes)
        )
        self.loss = LossPart(CrossEntropyLoss())


class ClassifierRetraining(BalancedClassifierStage):
    """cRT: the classifier re-initialised and re-trained with class-balanced sampling."""

    name = "crt"

    def begin(self, ctx: StageContext) -> None:
        classifier = ctx.get_classifier()
        if not hasattr(classifier, "reset_parameters"):
            raise LongtailError("crt needs a classifier layer that can be re-initialised")
        classifier.reset_parameters()  # from torch's RNG, seeded by the loop from (seed, epoch)


class LearnableWeightScaling(BalancedClassifierStage):
    """LWS: one learnable scale per class on the frozen classifier, class-balanced sampling."""

    name = "lws"

    def begin(self, ctx: StageContext) -> None:
        ctx.set_classifier(ScaledClassifier(ctx.get_classifier(), self.num_classes))

    restore = begin

    def parameters(self, ctx: StageContext) -> Iterable[nn.Parameter]:
        return [ctx.get_classifier().scales]


class TunedOnValidation(Stage):
    """A stage with no epochs that picks the ``tau`` of its grid whose classifier scores the best
    validation balanced accuracy (the smallest among equals)."""

    def __init__(self, grid: Iterable[float] = TAU_GRID) -> None:
        self.grid = [float(t) for t in grid]
        self.tau: float | None = None

    def choose(self, ctx: StageContext, head: Callable[[float], Head]) -> float:
        scores = ctx.score([head(t) for t in self.grid])
        self.tau = self.grid[int(np.argmax(scores))]
        return self.tau

    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tau = state.get("tau", self.tau)

    def summary(self) -> dict[str, Any]:
        return {"stage": self.name, "tau": self.tau}


class TauNormalisation(TunedOnValidation):
    """tau-normalisation with tau chosen on the validation split."""

    param_ranges: ClassVar[dict[str, Param]] = {}

    name = "tau_norm"

    def begin(self, ctx: StageContext) -> None:
        classifier = ctx.get_classifier()
        weight = _classifier_weight(classifier, self.name).detach()
        bias = getattr(classifier, "bias", None)

        def head(tau: float) -> Head:
            w = tau_normalize(weight, tau)
            return lambda x: nn.functional.linear(x, w.to(x.device), bias)

        tau = self.choose(ctx, head)
        with torch.no_grad():
            classifier.weight.copy_(tau_normalize(weight, tau))


class PostHocLogitAdjustment(TunedOnValidation):
    """Post-hoc logit adjustment with tau chosen on the validation split: z - tau log pi for a
    balanced target, z - tau (log pi - log q) for a target prior q (Menon et al., ICLR 2021:
    the Bayes-optimal rule for test classes drawn from q at tau = 1)."""

    param_ranges: ClassVar[dict[str, Param]] = {}

    name = "logit_adjust"

    def __init__(
        self, counts: np.ndarray, grid: Iterable[float] = TAU_GRID, prior: Any = None
    ) -> None:
        super().__init__(grid)
        self.log_prior = log_prior(counts)
        if prior is not None:
            q = torch.as_tensor(np.asarray(prior, dtype=np.float64))
            if (q <= 0).any():
                raise LongtailError("logit_adjust toward a target prior needs every share > 0")
            self.log_prior = self.log_prior - torch.log(q / q.sum()).float()

    def begin(self, ctx: StageContext) -> None:
        inner = ctx.get_classifier()

        def head(tau: float) -> Head:
            return lambda x: inner(x) - tau * self.log_prior.to(x.device)

        tau = self.choose(ctx, head)
        ctx.set_classifier(AdjustedClassifier(inner, -tau * self.log_prior))

    def restore(self, ctx: StageContext) -> None:
        ctx.set_classifier(
            AdjustedClassifier(ctx.get_classifier(), torch.zeros_like(self.log_prior))
        )


class WeightBalancing(Stage):
    """Weight balancing: weight decay in both stages, then the classifier alone with the
    class-balanced loss and MaxNorm (per-class row norms projected to <= ``max_norm``)."""

    param_ranges: ClassVar[dict[str, Param]] = {
        "epochs": COUNT,
        "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE,
        "max_norm": POSITIVE,
    }

    name = "weight_balancing"

    def __init__(
        self,
        targets: Any,
        counts: np.ndarray,
        seed: int,
        epochs: int = 2,
        weight_decay: float = 0.05,
        max_norm: float | None = None,
        lr: float | None = None,
    ) -> None:
        check_params(
            self.param_ranges,
            self.name,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            max_norm=max_norm,
        )
        self.epochs, self.lr = int(epochs), None if lr is None else float(lr)
        self.weight_decay = float(weight_decay)
        self.max_norm = None if max_norm is None else float(max_norm)
        self.sampler = EpochSampler(InstanceSampler(targets, seed=seed, num_classes=len(counts)))
        self.loss = LossPart(ClassBalancedLoss(counts, base="ce"))

    def begin(self, ctx: StageContext) -> None:
        weight = _classifier_weight(ctx.get_classifier(), self.name)
        if self.max_norm is None:
            self.max_norm = float(weight.detach().norm(dim=1).mean())
        self.after_step(ctx)

    def after_step(self, ctx: StageContext) -> None:
        weight = _classifier_weight(ctx.get_classifier(), self.name)
        with torch.no_grad():
            norms = weight.norm(dim=1, keepdim=True)
            weight.mul_((self.max_norm / norms.clamp_min(1e-12)).clamp(max=1.0))

    def state_dict(self) -> dict[str, Any]:
        return {"max_norm": self.max_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.max_norm = state.get("max_norm", self.max_norm)

    def summary(self) -> dict[str, Any]:
        return {"stage": self.name, "max_norm": self.max_norm, "weight_decay": self.weight_decay}


__all__ = [
    "TAU_GRID",
    "AdjustedClassifier",
    "BalancedClassifierStage",
    "ClassifierRetraining",
    "FirstStage",
    "Head",
    "LearnableWeightScaling",
    "PostHocLogitAdjustment",
    "ScaledClassifier",
    "Stage",
    "StageContext",
    "TauNormalisation",
    "TunedOnValidation",
    "WeightBalancing",
]
