"""Imbalance-aware losses: each an ``nn.Module`` taking logits [B, K] and integer targets [B].

All are computed from ``log_softmax`` in float32 (stable at extreme logits, safe under fp16/bf16
autocast), support ``reduction`` = "mean" | "sum" | "none" and ``ignore_index``. With class weights
w, "mean" is the weighted mean sum_i w_{y_i} l_i / sum_i w_{y_i}, as ``F.cross_entropy(weight=w)``.

Losses that change during training (LDAM-DRW) expose ``set_epoch(epoch)``; the training loop calls
it at the start of every epoch.

Common arguments (every loss's docstring points here):

- ``reduction``: ``"mean"`` (the weighted mean, as ``F.cross_entropy``), ``"sum"`` or ``"none"``
  (one value per sample); anything else is refused when the loss is built.
- ``ignore_index``: a target value that contributes nothing (default -100).

Shape (every loss): logits [B, K] (any float dtype; computed in float32), target [B] integer class
indices in [0, K-1]; the output is a scalar, or [B] with ``reduction="none"``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail._checks import as_counts
from longtail.errors import LongtailError
from longtail.hierarchy import ancestors, lca_heights
from longtail.params import (
    EPOCH,
    NON_NEGATIVE,
    NUMBER,
    POSITIVE,
    SHARE,
    Param,
    check_params,
)
from longtail.weights import check_scheme_params, class_weights

Reduction = Literal["mean", "sum", "none"]


def _as_weight(
    weight: Sequence[float] | np.ndarray | Tensor | None, name: str = "alpha"
) -> Tensor | None:
    if weight is None:
        return None
    w = torch.as_tensor(
        np.asarray(
            weight.detach().cpu() if isinstance(weight, Tensor) else weight, dtype=np.float32
        )
    )
    if w.ndim != 1 or not torch.isfinite(w).all() or (w < 0).any():
        raise LongtailError(f"{name} must be a 1-D vector of finite non-negative class weights")
    return w


def _nonempty_counts(counts: Any) -> np.ndarray:
    c = as_counts(counts)
    if np.any(c == 0):
        raise LongtailError(
            f"classes {np.flatnonzero(c == 0).tolist()} have zero training samples, so their prior is 0 "
            "and log-prior terms are undefined; drop the empty classes"
        )
    return c


def log_prior(counts: Any) -> Tensor:
    """log pi_j = log(n_j / N) as a float32 tensor."""
    c = _nonempty_counts(counts).astype(np.float64)
    return torch.as_tensor(np.log(c / c.sum()), dtype=torch.float32)


def _checked_targets(target: Tensor, num_classes: int, ignore_index: int) -> tuple[Tensor, Tensor]:
    """(mask of the targets not ignored, targets with the ignored ones set to 0); a target outside
    [0, K-1] that is not ``ignore_index`` raises ``ValueError``."""
    valid = target != ignore_index
    safe_t = torch.where(valid, target, torch.zeros_like(target))
    if valid.any() and (safe_t[valid].min() < 0 or safe_t[valid].max() >= num_classes):
        raise LongtailError(
            f"targets must lie in [0, {num_classes - 1}] (or equal ignore_index={ignore_index})"
        )
    return valid, safe_t


def _weighted_nll(
    logp: Tensor,
    target: Tensor,
    modulate: Callable[[Tensor], Tensor] | None,
    weight: Tensor | None,
    reduction: Reduction,
    ignore_index: int,
) -> Tensor:
    """-w_t * modulate(log p_t) * log p_t, reduced as F.cross_entropy does."""
    if logp.ndim != 2:
        raise LongtailError(f"logits must have shape [batch, classes], got {tuple(logp.shape)}")
    valid, safe_t = _checked_targets(target, logp.shape[1], ignore_index)
    logp_t = logp.gather(1, safe_t[:, None]).squeeze(1)
    loss = -logp_t
    if modulate is not None:
        loss = modulate(logp_t) * loss
    return _reduce(loss, safe_t, valid, weight, reduction)


def _reduce(
    loss: Tensor, safe_t: Tensor, valid: Tensor, weight: Tensor | None, reduction: Reduction
) -> Tensor:
    """Per-sample ``loss`` weighted by w_{y_i} (ignored targets: 0) and reduced as
    ``F.cross_entropy`` does: "mean" is sum_i w_i l_i / sum_i w_i."""
    w = torch.ones_like(loss) if weight is None else weight.to(loss.device)[safe_t]
    w = w * valid
    loss = loss * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / w.sum().clamp_min(torch.finfo(loss.dtype).tiny)


REDUCTIONS = ("mean", "sum", "none")


class _ClassLoss(nn.Module):
    """Base of every loss here: ``reduction`` is checked once, at construction."""

    def __init__(self, reduction: Reduction, ignore_index: int) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise LongtailError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction
        self.ignore_index = ignore_index


class CrossEntropyLoss(_ClassLoss):
    """Cross-entropy -w_y log softmax(z)_y, optionally class-weighted (any :mod:`longtail.weights`
    scheme) and with label smoothing eps (Szegedy et al., CVPR 2016): the target is
    (1 - eps) e_y + eps / K, as in ``F.cross_entropy(label_smoothing=eps)``.

    Args:
        weight: per-class weights [K] (finite, >= 0), or None for none.
        label_smoothing: eps in [0, 1).
        reduction, ignore_index: as every loss's (module docstring, "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {"label_smoothing": SHARE}

    def __init__(
        self,
        weight: Any = None,
        reduction: Reduction = "mean",
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction, ignore_index)
        check_params(self.param_ranges, "ce", label_smoothing=label_smoothing)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("weight", _as_weight(weight, "weight"))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.label_smoothing:
            if logits.ndim != 2:
                raise LongtailError(
                    f"logits must have shape [batch, classes], got {tuple(logits.shape)}"
                )
            _checked_targets(target, logits.shape[1], self.ignore_index)
            return F.cross_entropy(
                logits.float(),
                target,
                weight=self.weight,
                ignore_index=self.ignore_index,
                reduction=self.reduction,
                label_smoothing=self.label_smoothing,
            )
        logp = F.log_softmax(logits.float(), dim=1)
        return _weighted_nll(logp, target, None, self.weight, self.reduction, self.ignore_index)


class FocalLoss(_ClassLoss):
    """Softmax focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017):
    FL = -alpha_t (1 - p_t)^gamma log p_t, with alpha a per-class weight vector or None.

    gamma = 0 and alpha = None is cross-entropy; gamma = 0 with alpha is weighted cross-entropy.

    Args:
        alpha: per-class weights [K] (finite, >= 0), or None.
        gamma: the focusing parameter (>= 0; default 2).
        reduction, ignore_index: as every loss's (module docstring, "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {"gamma": NON_NEGATIVE}

    def __init__(
        self,
        alpha: Any = None,
        gamma: float = 2.0,
        reduction: Reduction = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(reduction, ignore_index)
        check_params(self.param_ranges, "focal", gamma=gamma)
        self.gamma = float(gamma)
        self.register_buffer("alpha", _as_weight(alpha))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        gamma = self.gamma
        # 1 - p_t = -expm1(log p_t): exact for p_t near 1, clamped so a zero base has a zero gradient.
        modulate = None if gamma == 0 else (lambda lp: (-torch.expm1(lp)).clamp_min(0) ** gamma)
        return _weighted_nll(logp, target, modulate, self.alpha, self.reduction, self.ignore_index)


class ClassBalancedLoss(_ClassLoss):
    """Class-balanced loss (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples",
    CVPR 2019): weights w_j = (1 - beta) / (1 - beta^n_j), normalised to sum to K, applied to a base
    loss: softmax focal (``base="focal"``), softmax cross-entropy (``"ce"``) or sigmoid (binary
    cross-entropy on one-hot targets, focal-modulated when gamma > 0; summed over classes).

    Args:
        counts: training images per class [K] (every class > 0).
        beta: in [0, 1); 0.9999 by default (beta -> 1 approaches inverse frequency).
        base: ``"focal"``, ``"ce"`` or ``"sigmoid"``.
        gamma: the focal parameter of the focal and sigmoid bases.
        reduction, ignore_index: as every loss's (module docstring, "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {"beta": SHARE, "gamma": NON_NEGATIVE}

    def __init__(
        self,
        counts: Any,
        beta: float = 0.9999,
        base: Literal["focal", "ce", "sigmoid"] = "focal",
        gamma: float = 2.0,
        reduction: Reduction = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(reduction, ignore_index)
        if base not in ("focal", "ce", "sigmoid"):
            raise LongtailError(f"base must be 'focal', 'ce' or 'sigmoid', got {base!r}")
        weights = class_weights(
            _nonempty_counts(counts), "effective_number", beta=beta, normalize="classes"
        )
        self.base, self.gamma = base, float(gamma)
        self.register_buffer("weight", torch.as_tensor(weights, dtype=torch.float32))
        self.inner = FocalLoss(weights, gamma if base == "focal" else 0.0, reduction, ignore_index)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.base != "sigmoid":
            return self.inner(logits, target)
        z = logits.float()
        valid, safe_t = _checked_targets(target, z.shape[1], self.ignore_index)
        onehot = F.one_hot(safe_t, z.shape[1]).float()
        bce = F.binary_cross_entropy_with_logits(z, onehot, reduction="none")
        if self.gamma > 0:
            # (1 - p_t)^gamma with p_t the probability of the correct binary outcome: exp(-bce).
            bce = (-torch.expm1(-bce)).clamp_min(0) ** self.gamma * bce
        w = self.weight.to(z.device)[safe_t] * valid
        loss = bce.sum(1) * w
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / w.sum().clamp_min(torch.finfo(loss.dtype).tiny)


class LDAMLoss(_ClassLoss):
    """Label-distribution-aware margin loss (Cao et al., NeurIPS 2019):
    L = CE(s * (z - m_y e_y), w) with margins m_j = C / n_j^(1/4), C chosen so max_j m_j = max_margin.

    Deferred re-weighting (DRW): from epoch ``drw_epoch`` on (see :meth:`set_epoch`) the class weights
    w switch from 1 to effective-number weights with ``drw_beta``, normalised to sum to K.
    ``s`` scales the logits; the paper uses s = 30 on cosine (normalised) logits, s = 1 suits raw logits.

    Args:
        counts: training images per class [K] (every class > 0).
        max_margin: the largest margin (the rarest class's; > 0).
        s: the logit scale (> 0).
        drw_epoch: the first epoch (0-based) with re-weighting; None: never. The caller calls
            :meth:`set_epoch` at the start of every epoch.
        drw_beta: beta of the effective-number weights after ``drw_epoch``.
        reduction, ignore_index: as every loss's (module docstring, "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {
        "max_margin": POSITIVE,
        "s": POSITIVE,
        "drw_epoch": EPOCH,
        "drw_beta": SHARE,
    }

    def __init__(
        self,
        counts: Any,
        max_margin: float = 0.5,
        s: float = 30.0,
        drw_epoch: int | None = None,
        drw_beta: float = 0.9999,
        reduction: Reduction = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(reduction, ignore_index)
        check_params(
            self.param_ranges,
            "ldam_drw",
            max_margin=max_margin,
            s=s,
            drw_epoch=drw_epoch,
            drw_beta=drw_beta,
        )
        c = _nonempty_counts(counts).astype(np.float64)
        m = 1.0 / np.power(c, 0.25)
        m *= max_margin / m.max()
        self.s = float(s)
        self.drw_epoch = drw_epoch
        self.register_buffer("margins", torch.as_tensor(m, dtype=torch.float32))
        drw = class_weights(c, "effective_number", beta=drw_beta, normalize="classes")
        self.register_buffer("drw_weight", torch.as_tensor(drw, dtype=torch.float32))
        self.weight: Tensor | None = None

    def set_epoch(self, epoch: int) -> None:
        """Switch the DRW class weights on once ``epoch >= drw_epoch``."""
        on = self.drw_epoch is not None and epoch >= self.drw_epoch
        self.weight = self.drw_weight if on else None

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        z = logits.float()
        _, safe_t = _checked_targets(target, z.shape[1], self.ignore_index)
        margin = torch.zeros_like(z).scatter_(
            1, safe_t[:, None], self.margins.to(z.device)[safe_t][:, None]
        )
        logp = F.log_softmax(self.s * (z - margin), dim=1)
        return _weighted_nll(logp, target, None, self.weight, self.reduction, self.ignore_index)


class LogitAdjustedLoss(_ClassLoss):
    """Logit-adjusted cross-entropy (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021):
    L = CE(z + tau * log pi, y) with pi_j = n_j / N the training prior.

    Args:
        counts: training images per class [K] (every class > 0).
        tau: the strength of the adjustment (1 = balanced softmax).
        reduction, ignore_index: as every loss's (module docstring, "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {"tau": NUMBER}

    def __init__(
        self, counts: Any, tau: float = 1.0, reduction: Reduction = "mean", ignore_index: int = -100
    ) -> None:
        super().__init__(reduction, ignore_index)
        self.tau = float(tau)
        self.register_buffer("log_prior", log_prior(counts))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logp = F.log_softmax(logits.float() + self.tau * self.log_prior.to(logits.device), dim=1)
        return _weighted_nll(logp, target, None, None, self.reduction, self.ignore_index)


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax (Ren et al., "Balanced Meta-Softmax", NeurIPS 2020): CE(z + log pi, y),
    i.e. :class:`LogitAdjustedLoss` with tau = 1.

    Args:
        counts: training images per class [K] (every class > 0).
        reduction, ignore_index: as every loss's (module docstring, "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {}

    def __init__(
        self, counts: Any, reduction: Reduction = "mean", ignore_index: int = -100
    ) -> None:
        super().__init__(counts, 1.0, reduction, ignore_index)


def _tree_paths(tree: Sequence[Sequence[Any]]) -> list[list[Any]]:
    paths = [list(keys) for keys in tree]
    if not paths or any(len(keys) != len(paths[0]) for keys in paths) or not paths[0]:
        raise LongtailError(
            "tree must give, for each level from the top, one key per class "
            "(ClassDistribution.tree_paths())"
        )
    return paths


def _log_probs(logits: Tensor, num_classes: int) -> Tensor:
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise LongtailError(
            f"logits must have shape [batch, {num_classes}] for this tree, got {tuple(logits.shape)}"
        )
    return F.log_softmax(logits.float(), dim=1)


class _TreeLoss(_ClassLoss, ABC):
    """A loss on the class tree: the tree's classes, optional class weights, and the reduction
    of per-sample values (``per_sample(log p, targets)``) as ``F.cross_entropy`` does."""

    def __init__(
        self, tree: Sequence[Sequence[Any]], weight: Any, reduction: Reduction, ignore_index: int
    ) -> None:
        super().__init__(reduction, ignore_index)
        self.paths = _tree_paths(tree)
        self.num_classes = len(self.paths[0])
        self.register_buffer("weight", _as_weight(weight, "weight"))

    @abstractmethod
    def per_sample(self, logp: Tensor, target: Tensor) -> Tensor:
        """The loss of each sample [B] from log-probabilities [B, K] and valid targets [B]."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logp = _log_probs(logits, self.num_classes)
        valid, safe_t = _checked_targets(target, self.num_classes, self.ignore_index)
        return _reduce(self.per_sample(logp, safe_t), safe_t, valid, self.weight, self.reduction)


class HierarchicalCrossEntropyLoss(_TreeLoss):
    """Hierarchical cross-entropy, HXE (Bertinetto et al., "Making Better Mistakes: Leveraging
    Class Hierarchies with Deep Networks", CVPR 2020). With a_l the true class's ancestor at
    level l of an L-level tree (a_0 the root, a_L the class), p(a) the summed probability of the
    classes under node a and lambda_l = exp(-alpha (L - l)):

        HXE = -sum_{l=1..L} lambda_l log( p(a_l) / p(a_{l-1}) )

    The terms are the conditional probabilities of each step down the true path, those near the
    top (the coarse decisions) weighted less. alpha = 0 is cross-entropy, as is a flat tree; a
    class with fewer ancestors adds nothing at the levels where it keys itself.

    Args:
        tree: for each level from the top, each class's ancestor there (any hashable key), as
            :meth:`~longtail.distribution.ClassDistribution.tree_paths` gives it.
        alpha: the decay of the level weights (>= 0; default 0.1, the paper's mildest setting).
        weight: per-class weights [K] (finite, >= 0), or None; reduced as ``F.cross_entropy``.
        reduction, ignore_index: as every loss's (module docstring, "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {"alpha": NON_NEGATIVE}

    def __init__(
        self,
        tree: Sequence[Sequence[Any]],
        alpha: float = 0.1,
        weight: Any = None,
        reduction: Reduction = "mean",
        ignore_index: int = -100,
    ) -> None:
        check_params(self.param_ranges, "hxe", alpha=alpha)
        super().__init__(tree, weight, reduction, ignore_index)
        self.alpha, levels = float(alpha), len(self.paths)
        members = []  # per coarser level: [K, K] bool, classes sharing class i's node there
        for keys in self.paths[:-1]:
            node = torch.from_numpy(ancestors(keys)[0])
            members.append(node[:, None] == node[None, :])
        self.register_buffer("members", torch.stack(members) if members else None)
        lam = [float(np.exp(-alpha * (levels - level))) for level in range(1, levels + 1)]
        self.register_buffer("level_weights", torch.tensor(lam, dtype=torch.float32))

    def per_sample(self, logp: Tensor, safe_t: Tensor) -> Tensor:
        lam = self.level_weights
        above = torch.zeros(logp.shape[0], device=logp.device)  # log p(a_0) = log 1
        loss = torch.zeros_like(above)
        for level in range(len(lam) - 1):
            under = self.members[level][safe_t]  # [B, K]: classes under a_{level+1}
            node = torch.logsumexp(logp.masked_fill(~under, float("-inf")), dim=1)
            loss = loss - lam[level] * (node - above)
            above = node
        leaf = logp.gather(1, safe_t[:, None]).squeeze(1)
        return loss - lam[-1] * (leaf - above)


class SoftLabelLoss(_TreeLoss):
    """Cross-entropy against soft labels from the class tree (Bertinetto et al., CVPR 2020):
    the target of class y puts mass

        q_y(j) = exp(-beta h(y, j) / h_max) / sum_k exp(-beta h(y, k) / h_max)

    on class j, with h the height of the lowest common ancestor
    (:func:`~longtail.hierarchy.lca_heights`) and h_max its largest value, so the loss
    -sum_j q_y(j) log p_j asks for probability on the true class's relatives first. Large beta
    tends to one-hot cross-entropy.

    Args:
        tree: for each level from the top, each class's ancestor there, as
            :meth:`~longtail.distribution.ClassDistribution.tree_paths` gives it.
        beta: the hardness (> 0; default 10).
        weight: per-class weights [K] (finite, >= 0), or None; reduced as ``F.cross_entropy``.
        reduction, ignore_index: as every loss's (module docstring, "Common arguments").
    """

    param_ranges: ClassVar[dict[str, Param]] = {"beta": POSITIVE}

    def __init__(
        self,
        tree: Sequence[Sequence[Any]],
        beta: float = 10.0,
        weight: Any = None,
        reduction: Reduction = "mean",
        ignore_index: int = -100,
    ) -> None:
        check_params(self.param_ranges, "soft_labels", beta=beta)
        super().__init__(tree, weight, reduction, ignore_index)
        heights = lca_heights(self.paths).astype(np.float64)
        scaled = -float(beta) * heights / max(heights.max(), 1.0)
        soft = np.exp(scaled - scaled.max(axis=1, keepdims=True))
        self.beta = float(beta)
        self.register_buffer("soft_labels", torch.tensor(soft / soft.sum(1, keepdims=True)).float())

    def per_sample(self, logp: Tensor, safe_t: Tensor) -> Tensor:
        return -(self.soft_labels[safe_t] * logp).sum(1)


def logit_adjust(logits: Tensor, counts: Any, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment (Menon et al., ICLR 2021): z - tau * log pi, applied to a trained
    model's logits so that argmax favours rare classes by the training prior."""
    return logits - tau * log_prior(counts).to(logits.device, logits.dtype)


def tau_normalize(weight: Tensor, tau: float = 1.0) -> Tensor:
    """tau-normalised classifier (Kang et al., "Decoupling Representation and Classifier", ICLR 2020):
    w_j / ||w_j||^tau for each class row w_j of a [K, D] classifier weight."""
    if weight.ndim != 2:
        raise LongtailError(
            f"classifier weight must be [classes, features], got {tuple(weight.shape)}"
        )
    norms = weight.norm(dim=1, keepdim=True).clamp_min(torch.finfo(weight.dtype).tiny)
    return weight / norms.pow(tau)


def weighted_cross_entropy(
    counts: Any,
    scheme: str = "inverse",
    reduction: Reduction = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    **scheme_params: float,
) -> CrossEntropyLoss:
    """Cross-entropy with :mod:`longtail.weights` class weights (``scheme`` and its parameters),
    normalised to sum to K; a class without training samples gets weight 0."""
    params = check_scheme_params(scheme, scheme_params)
    weight = class_weights(counts, scheme, normalize="classes", allow_empty=True, **params)
    return CrossEntropyLoss(weight, reduction, ignore_index, label_smoothing)


__all__ = [
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "HierarchicalCrossEntropyLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "SoftLabelLoss",
    "log_prior",
    "logit_adjust",
    "tau_normalize",
    "weighted_cross_entropy",
]
