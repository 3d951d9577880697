"""One record per strategy component: every sampler, loss and second stage is declared here once.

A :class:`ComponentSpec` holds what the rest of longtail needs to know about a component: its
factory, the part that answers the training loop's events (:mod:`longtail.strategies.lifecycle`),
the classifier head a loss is defined on, what a stage cannot follow, and the parameters a
strategy string may give it. Parsing (:mod:`longtail.strategies.spec`), building
(:mod:`longtail.strategies.build`), the CLI's help and the parameter checks read only these
records, so adding a component is adding one record (or calling :func:`register`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from torch import nn
from torch.utils.data import Sampler

from longtail._checks import as_labels
from longtail.errors import LongtailError
from longtail.losses import (
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    CrossEntropyLoss,
    FocalLoss,
    HierarchicalCrossEntropyLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    SoftLabelLoss,
    weighted_cross_entropy,
)
from longtail.params import BOOL, NUMBER, TEXT, Param
from longtail.sampling import (
    BalancedBatchSampler,
    ClassBalancedSampler,
    CurriculumSampler,
    HierarchicalSampler,
    HybridSampler,
    InstanceSampler,
    PowerSampler,
    ProgressiveSampler,
    RepeatFactorSampler,
    WeightedSampler,
)
from longtail.strategies.lifecycle import (
    BatchSamplerPart,
    EpochSampler,
    FeedbackSampler,
    LossPart,
    Part,
    ScheduledLoss,
)
from longtail.strategies.stages import (
    ClassifierRetraining,
    LearnableWeightScaling,
    PostHocLogitAdjustment,
    TauNormalisation,
    WeightBalancing,
)

Kind = Literal["sampler", "loss", "stage"]
KINDS: tuple[Kind, ...] = ("sampler", "loss", "stage")


SCHEME_KEYS = ("alpha", "q", "beta")
_SCHEME = {"scheme": TEXT, **dict.fromkeys(SCHEME_KEYS, NUMBER)}
"""A weight scheme's parameters; which of them a scheme reads, and their ranges, are the
scheme's (:func:`longtail.weights.check_scheme_params`)."""


@dataclass(frozen=True)
class BuildContext:
    """What a factory may read about the run it builds for: the training targets and class
    counts, the run's seed (None: follow torch's RNG), first-stage epochs and batch size, and
    the class tree (None: flat) and the target prior the run is judged under (None: uniform)."""

    targets: Any = None
    counts: np.ndarray | None = None
    seed: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    tree: Any = None  # each class's ancestor at every level (ClassDistribution.tree_paths)
    prior: np.ndarray | None = None  # the target prior [K] (None: uniform)

    @property
    def num_classes(self) -> int | None:
        return None if self.counts is None else len(self.counts)


@dataclass(frozen=True)
class ClassifierHead:
    """The classifier head a loss is defined on: ``kind`` (``cosine``) with its ``scale``, and the
    loss parameter that scales the logits itself (which a user must give with a linear head)."""

    kind: str
    scale: float
    scale_param: str


@dataclass(frozen=True)
class ComponentSpec:
    """One sampler, loss or second stage.

    ``factory(ctx, **params)`` builds it for a run (:class:`BuildContext`); ``part`` wraps the
    sampler or loss in the part that answers the loop's events (stages are parts themselves);
    ``params`` maps each parameter a strategy string may set to its declaration (kind and range,
    :class:`~longtail.params.Param`, mostly the class's own ``param_ranges``);
    ``head`` is the classifier head a loss needs (None: any); ``rescales_rows`` marks a stage that
    re-scales the rows of a linear classifier, which cannot follow a loss with a cosine head."""

    name: str
    kind: Kind
    factory: Callable[..., Any]
    params: Mapping[str, Param] = field(default_factory=dict)
    part: Callable[[Any], Part] | None = None
    head: ClassifierHead | None = None
    rescales_rows: bool = False
    summary: str = ""

    def build(self, ctx: BuildContext, **params: Any) -> Any:
        """The component for the run described by ``ctx``. Parameters are checked against
        ``params`` when a strategy is parsed; an exception raised here is the factory's own."""
        return self.factory(ctx, **params)

    def wrap(self, component: Any) -> Part:
        """``component`` in the part that answers the loop's events."""
        default = {"sampler": EpochSampler, "loss": LossPart}.get(self.kind)
        adapter = self.part or default
        return component if adapter is None else adapter(component)


def _sampler_args(ctx: BuildContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"seed": ctx.seed, "num_classes": ctx.num_classes, **params}


def _scheme_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Weight-scheme parameters (alpha, q, beta) moved into ``scheme_kwargs``."""
    scheme = {k: params.pop(k) for k in SCHEME_KEYS if k in params}
    return {**params, "scheme_kwargs": scheme} if scheme else params


def _progressive(ctx: BuildContext, **p: Any) -> ProgressiveSampler:
    if ctx.epochs is None:
        raise LongtailError(
            "the 'progressive' sampler needs total_epochs (the epoch at which it is class-balanced)"
        )
    return ProgressiveSampler(ctx.targets, total_epochs=ctx.epochs, **_sampler_args(ctx, p))


def _balanced_batch(ctx: BuildContext, **p: Any) -> BalancedBatchSampler:
    """P x M batches; by default M = 4 and P as many classes as fill the run's batch."""
    p.setdefault("samples_per_class", 4)
    if ctx.batch_size is not None and ctx.counts is not None:
        filled = ctx.batch_size // p["samples_per_class"]
        p.setdefault("classes_per_batch", max(1, min(np.count_nonzero(ctx.counts), filled)))
    return BalancedBatchSampler(ctx.targets, **_sampler_args(ctx, p))


def _ldam_drw(ctx: BuildContext, **p: Any) -> LDAMLoss:
    """LDAM with DRW from 80% of the epochs (10 when not known), s = 30 on cosine logits."""
    p.setdefault("drw_epoch", max(1, int(0.8 * (ctx.epochs or 10))))
    return LDAMLoss(ctx.counts, **p)


def _target_sampler(ctx: BuildContext, **p: Any) -> WeightedSampler:
    """Each class drawn with its share of the target prior (uniform: class-balanced), images
    uniformly within it: sample weights q_y / n_y."""
    counts = np.asarray(ctx.counts, dtype=np.float64)
    q = ctx.prior if ctx.prior is not None else (counts > 0) / np.count_nonzero(counts)
    y = as_labels(ctx.targets, len(counts))
    weights = np.divide(q, counts, out=np.zeros_like(counts), where=counts > 0)[y]
    return WeightedSampler(weights, seed=ctx.seed, **p)


def _sampler(name: str, cls: Callable[..., Sampler], params: Mapping[str, Param], **kw: Any):
    return ComponentSpec(
        name,
        "sampler",
        lambda ctx, **p: cls(ctx.targets, **_sampler_args(ctx, p)),
        params,
        **kw,
    )


SAMPLER_SPECS = (
    _sampler("instance", InstanceSampler, {}, summary="every image once per epoch"),
    ComponentSpec(
        "weighted",
        "sampler",
        lambda ctx, **p: WeightedSampler(
            labels=ctx.targets, **_sampler_args(ctx, _scheme_kwargs(p))
        ),
        _SCHEME,
        summary="draws with replacement by a class weight scheme",
    ),
    _sampler("class_balanced", ClassBalancedSampler, {"cycle": BOOL}, summary="classes equally"),
    _sampler(
        "sqrt", PowerSampler, PowerSampler.param_ranges, summary="class share ~ count^q (q = 0.5)"
    ),
    ComponentSpec("progressive", "sampler", _progressive, {}, summary="instance to balanced"),
    _sampler("hybrid", HybridSampler, HybridSampler.param_ranges),
    _sampler(
        "curriculum",
        CurriculumSampler,
        CurriculumSampler.param_ranges,
        part=FeedbackSampler,
        summary="follows per-class validation recall",
    ),
    _sampler("repeat_factor", RepeatFactorSampler, RepeatFactorSampler.param_ranges),
    ComponentSpec(
        "target_prior",
        "sampler",
        _target_sampler,
        {},
        summary="classes drawn by the target prior (--target-prior)",
    ),
    ComponentSpec(
        "hierarchical",
        "sampler",
        lambda ctx, **p: HierarchicalSampler(ctx.targets, tree=ctx.tree, **_sampler_args(ctx, p)),
        {"levels": TEXT},
        summary="a product over the tree's levels: uniform / sqrt / instance per level",
    ),
    ComponentSpec(
        "balanced_batch",
        "sampler",
        _balanced_batch,
        BalancedBatchSampler.param_ranges,
        part=BatchSamplerPart,
        summary="P classes x M images per batch",
    ),
)


def _tree(ctx: BuildContext) -> Any:
    """The class tree, a single level when the data has none."""
    return ctx.tree if ctx.tree is not None else [list(range(len(ctx.counts)))]


def _loss(name: str, build: Callable[..., nn.Module], params: Mapping[str, Param], **kw: Any):
    return ComponentSpec(name, "loss", build, params, **kw)


LOSS_SPECS = (
    _loss("ce", lambda ctx, **p: CrossEntropyLoss(**p), CrossEntropyLoss.param_ranges),
    _loss(
        "weighted_ce",
        lambda ctx, **p: weighted_cross_entropy(ctx.counts, **p),
        {**_SCHEME, **CrossEntropyLoss.param_ranges},
    ),
    _loss("focal", lambda ctx, **p: FocalLoss(**p), FocalLoss.param_ranges),
    _loss(
        "cb_focal",
        lambda ctx, **p: ClassBalancedLoss(ctx.counts, base="focal", **p),
        ClassBalancedLoss.param_ranges,
    ),
    _loss(
        "cb_ce",
        lambda ctx, **p: ClassBalancedLoss(ctx.counts, base="ce", **p),
        {"beta": ClassBalancedLoss.param_ranges["beta"]},
    ),
    _loss(
        "ldam_drw",
        _ldam_drw,
        LDAMLoss.param_ranges,
        part=ScheduledLoss,
        head=ClassifierHead("cosine", 1.0, "s"),  # LDAM scales cos(x, w_j) by its own s = 30
    ),
    _loss("balanced_softmax", lambda ctx, **p: BalancedSoftmaxLoss(ctx.counts, **p), {}),
    _loss(
        "logit_adjusted",
        lambda ctx, **p: LogitAdjustedLoss(ctx.counts, **p),
        LogitAdjustedLoss.param_ranges,
    ),
    _loss(
        "hxe",
        lambda ctx, **p: HierarchicalCrossEntropyLoss(_tree(ctx), **p),
        HierarchicalCrossEntropyLoss.param_ranges,
        summary="hierarchical cross-entropy over the class tree",
    ),
    _loss(
        "soft_labels",
        lambda ctx, **p: SoftLabelLoss(_tree(ctx), **p),
        SoftLabelLoss.param_ranges,
        summary="soft labels from tree distance",
    ),
)

STAGE_SPECS = (
    ComponentSpec(
        "crt",
        "stage",
        lambda ctx, **p: ClassifierRetraining(ctx.targets, ctx.counts, ctx.seed, **p),
        ClassifierRetraining.param_ranges,
    ),
    ComponentSpec(
        "lws",
        "stage",
        lambda ctx, **p: LearnableWeightScaling(ctx.targets, ctx.counts, ctx.seed, **p),
        LearnableWeightScaling.param_ranges,
    ),
    ComponentSpec(
        "tau_norm", "stage", lambda ctx, **p: TauNormalisation(**p), {}, rescales_rows=True
    ),
    ComponentSpec(
        "logit_adjust",
        "stage",
        lambda ctx, **p: PostHocLogitAdjustment(ctx.counts, prior=ctx.prior, **p),
    ),
    ComponentSpec(
        "weight_balancing",
        "stage",
        lambda ctx, **p: WeightBalancing(ctx.targets, ctx.counts, ctx.seed, **p),
        WeightBalancing.param_ranges,
        rescales_rows=True,
    ),
)

REGISTRY: dict[Kind, dict[str, ComponentSpec]] = {
    kind: {s.name: s for s in (*SAMPLER_SPECS, *LOSS_SPECS, *STAGE_SPECS) if s.kind == kind}
    for kind in KINDS
}
"""Every component by kind and name; change it through :func:`register` / :func:`unregister`."""


def register(spec: ComponentSpec) -> ComponentSpec:
    """Add ``spec`` to the registry (a name already taken raises ``ValueError``)."""
    if spec.kind not in REGISTRY:
        raise LongtailError(f"kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
    if spec.name in REGISTRY[spec.kind]:
        raise LongtailError(f"a {spec.kind} named {spec.name!r} is registered already")
    REGISTRY[spec.kind][spec.name] = spec
    return spec


def unregister(kind: Kind, name: str) -> None:
    """Remove the component ``name`` of ``kind`` (added by :func:`register`)."""
    REGISTRY[kind].pop(name, None)


_WORDS = {
    "sampler": ("sampler", "samplers"),
    "loss": ("loss", "losses"),
    "stage": ("second stage", "stages"),
}


def names(kind: Kind) -> list[str]:
    """The registered names of ``kind``, sorted."""
    return sorted(REGISTRY[kind])


def component(kind: Kind, name: str) -> ComponentSpec:
    """The record of ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    spec = REGISTRY[kind].get(name)
    if spec is None:
        label, plural = _WORDS[kind]
        raise LongtailError(f"unknown {label} {name!r}; {plural}: {', '.join(names(kind))}")
    return spec


def make_sampler(
    name: str,
    labels: Any,
    *,
    total_epochs: int | None = None,
    batch_size: int | None = None,
    **params: Any,
) -> Sampler:
    """The sampler registered as ``name`` over ``labels``; ``params`` go to its constructor
    (``seed``, ``generator``, ``num_replicas``, ``rank``, its own parameters)."""
    ctx = BuildContext(labels, epochs=total_epochs, batch_size=batch_size)
    return component("sampler", name).build(ctx, **params)


def make_loss(
    name: str, counts: Any, *, total_epochs: int | None = None, **params: Any
) -> nn.Module:
    """The loss registered as ``name`` for training class ``counts``."""
    ctx = BuildContext(counts=np.asarray(counts), epochs=total_epochs)
    return component("loss", name).build(ctx, **params)


__all__ = [
    "KINDS",
    "REGISTRY",
    "BuildContext",
    "ClassifierHead",
    "ComponentSpec",
    "component",
    "make_loss",
    "make_sampler",
    "names",
    "register",
    "unregister",
]
