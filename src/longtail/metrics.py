"""Per-class and per-group metrics for long-tailed classification, computed exactly by streaming.

:class:`MetricAccumulator` keeps a K x K confusion matrix, top-k hit counts and calibration bin sums
(``update(logits, targets)`` per batch, ``compute()`` at the end), so a million-image evaluation never
holds all logits, and the numbers equal computing everything at once.

Conventions (those of scikit-learn with ``zero_division=0``):

- precision of a class never predicted is 0; recall of a class with no support is 0; F1 is 0 when
  precision + recall = 0;
- balanced accuracy is the mean recall over classes present in the targets
  (``sklearn.metrics.balanced_accuracy_score``);
- macro F1 is the mean F1 over classes present in the targets or the predictions
  (``f1_score(average="macro")`` with its default labels);
- a group's mean recall / F1 is taken over the group's classes present in the targets.

Given the class tree (``tree=``, as :meth:`ClassDistribution.tree_paths` gives it), the
accumulator also judges the model at every coarser level: logits are turned into probabilities
and rolled up (a parent's probability is the sum of its children's), predictions given as classes
are rolled up to their ancestors, and each level gets the same report, with its groups taken at
that level (:attr:`ClassificationReport.levels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from longtail.distribution import GROUPS, ClassDistribution
from longtail.errors import LongtailError, shorten
from longtail.hierarchy import ancestors, mistake_severity, roll_up_probabilities


@dataclass(frozen=True)
class MetricInfo:
    """How a headline number reads: its label, a short column name, whether it is a share
    (shown in percent, changes in percentage points) or a quantity in its own unit (changes in
    that unit), and which way is better."""

    name: str
    label: str
    short: str
    share: bool = True
    higher_is_better: bool = True

    def change(self, value: float, baseline: float) -> float:
        """``value - baseline`` in points for a share, in the metric's unit otherwise."""
        return (100.0 if self.share else 1.0) * (value - baseline)


METRICS = {
    m.name: m
    for m in (
        MetricInfo("target_accuracy", "accuracy under the target prior", "target acc"),
        MetricInfo("accuracy", "overall accuracy", "acc"),
        MetricInfo("balanced_accuracy", "balanced accuracy", "bal acc"),
        MetricInfo("macro_f1", "macro F1", "macro F1"),
        MetricInfo("head_f1", "head F1", "head F1"),
        MetricInfo("medium_f1", "medium F1", "med F1"),
        MetricInfo("tail_f1", "tail F1", "tail F1"),
        MetricInfo("head_recall", "head recall", "head R"),
        MetricInfo("medium_recall", "medium recall", "med R"),
        MetricInfo("tail_recall", "tail recall", "tail R"),
        MetricInfo(
            "mistake_severity", "mistake severity (mean LCA height)", "severity", False, False
        ),
        MetricInfo("mistakes_within_parent", "mistakes inside the true parent", "in parent"),
        MetricInfo("top5_accuracy", "top-5 accuracy", "top-5"),
        MetricInfo("ece", "calibration error (ECE)", "ECE", higher_is_better=False),
    )
}

# what a comparison reports, in this order (the first with --target-prior, the last two on
# data with a class tree)
HEADLINE = (
    "target_accuracy",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "head_f1",
    "medium_f1",
    "tail_f1",
    "head_recall",
    "medium_recall",
    "tail_recall",
    "mistake_severity",
    "mistakes_within_parent",
)


def metric_info(name: str) -> MetricInfo:
    """The record of ``name`` (a share, named as itself, when longtail has none for it)."""
    return METRICS.get(name) or MetricInfo(name, name, name)


def confusion_matrix(predictions: Any, targets: Any, num_classes: int) -> np.ndarray:
    """C[i, j] = number of samples of true class i predicted as j (int64, K x K)."""
    p = torch.as_tensor(predictions).reshape(-1).long()
    t = torch.as_tensor(targets).reshape(-1).long()
    _check_range(p, t, num_classes)
    return (
        torch.bincount(t * num_classes + p, minlength=num_classes**2)
        .reshape(num_classes, num_classes)
        .cpu()
        .numpy()
    )


def _check_range(p: Tensor, t: Tensor, k: int) -> None:
    if p.shape != t.shape:
        raise LongtailError(
            f"predictions and targets differ in length: {tuple(p.shape)} vs {tuple(t.shape)}"
        )
    for name, x in (("predictions", p), ("targets", t)):
        if x.numel() and (x.min() < 0 or x.max() >= k):
            raise LongtailError(
                f"{name} must lie in [0, {k - 1}]; found {int(x.min())}..{int(x.max())}"
            )


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


@dataclass
class ClassificationReport:
    """Metrics of one evaluation. Per-class arrays have length K."""

    confusion: np.ndarray
    class_names: tuple[str, ...]
    topk: dict[int, float] = field(default_factory=dict)
    ece: float | None = None
    groups: np.ndarray | None = None
    tree: Any = None  # the class tree (ClassDistribution.tree_paths), when it has levels
    levels: dict[int, ClassificationReport] = field(default_factory=dict)  # coarser levels

    @property
    def support(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def predicted(self) -> np.ndarray:
        return self.confusion.sum(axis=0)

    @property
    def precision(self) -> np.ndarray:
        return _safe_div(np.diag(self.confusion).astype(np.float64), self.predicted)

    @property
    def recall(self) -> np.ndarray:
        return _safe_div(np.diag(self.confusion).astype(np.float64), self.support)

    @property
    def known_recall(self) -> np.ndarray:
        """Per-class recall, nan for a class without images here (whose recall of 0 is a
        convention, not a measurement)."""
        return np.where(self.support > 0, self.recall, np.nan)

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision, self.recall
        return _safe_div(2 * p * r, p + r)

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.confusion.sum(), 1))

    @property
    def balanced_accuracy(self) -> float:
        present = self.support > 0
        return float(self.recall[present].mean()) if present.any() else 0.0

    @property
    def macro_f1(self) -> float:
        seen = (self.support > 0) | (self.predicted > 0)
        return float(self.f1[seen].mean()) if seen.any() else 0.0

    def group_mean(self, values: np.ndarray, group: str) -> float:
        """Mean of per-class ``values`` over ``group``'s classes with support (nan if none)."""
        if self.groups is None:
            raise LongtailError("no head/medium/tail groups: pass a ClassDistribution to compute()")
        mask = (self.groups == group) & (self.support > 0)
        return float(values[mask].mean()) if mask.any() else float("nan")

    def summary(self) -> dict[str, float]:
        """Headline numbers: accuracy, balanced accuracy, macro F1, group F1/recall, top-k, ECE."""
        out = {
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
        }
        if self.groups is not None:
            f1, recall = self.f1, self.recall
            for g in GROUPS:
                out[f"{g}_f1"] = self.group_mean(f1, g)
            for g in GROUPS:
                out[f"{g}_recall"] = self.group_mean(recall, g)
        for k, v in self.topk.items():
            out[f"top{k}_accuracy"] = v
        if self.ece is not None:
            out["ece"] = self.ece
        if self.tree is not None:
            out.update(mistake_severity(self.confusion, self.tree))
        return out

    def per_class(self) -> list[dict[str, Any]]:
        p, r, f, s = self.precision, self.recall, self.f1, self.support
        rows = []
        for i, name in enumerate(self.class_names):
            row = {
                "class": name,
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            if self.groups is not None:
                row["group"] = str(self.groups[i])
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """summary, per_class, confusion and, with a tree, ``levels`` (each coarser level's
        report in the same form, keyed by level number: "1" = the top)."""
        out: dict[str, Any] = {
            "summary": self.summary(),
            "per_class": self.per_class(),
            "confusion": self.confusion.tolist(),
        }
        if self.levels:
            out["levels"] = {str(n): r.to_dict() for n, r in self.levels.items()}
        return out


class MetricAccumulator:
    """Streaming evaluation: ``update(logits_or_predictions, targets)`` per batch, then ``compute()``.

    Works on CPU or GPU tensors (state lives on the device of the first batch). With logits [B, K] it
    also tracks top-k accuracy for ``topk`` and the expected calibration error over ``ece_bins``
    equal-width confidence bins: ECE = sum_b (n_b / N) |acc_b - conf_b| (Guo et al., ICML 2017).
    """

    def __init__(
        self,
        num_classes: int,
        topk: Sequence[int] = (1, 5),
        ece_bins: int = 15,
        tree: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        if num_classes < 1:
            raise LongtailError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.topk = tuple(k for k in topk if k <= num_classes)
        self.ece_bins = ece_bins
        self._ancestors: dict[int, Tensor] = {}
        self._levels: dict[int, MetricAccumulator] = {}
        for level, keys in enumerate((tree or [])[:-1], start=1):
            if len(keys) != num_classes:
                raise LongtailError(f"tree level {level} has {len(keys)} entries for {num_classes}")
            node, nodes = ancestors(keys)
            self._ancestors[level] = torch.from_numpy(node)
            self._levels[level] = MetricAccumulator(nodes, topk, ece_bins)
        self.reset()

    @classmethod
    def for_distribution(cls, distribution: ClassDistribution, **kwargs: Any) -> MetricAccumulator:
        """An accumulator for ``distribution``'s classes that also judges every coarser level of
        its tree (when it has one)."""
        tree = distribution.tree_paths() if distribution.num_levels > 1 else None
        return cls(distribution.num_classes, tree=tree, **kwargs)

    def reset(self) -> None:
        self._confusion: Tensor | None = None
        self._topk_hits: dict[int, Tensor] = {}
        self._bins: Tensor | None = None  # [3, bins]: count, sum confidence, sum correct
        self._seen_logits = False
        for level in self._levels.values():
            level.reset()

    @torch.no_grad()
    def update(self, outputs: Tensor, targets: Tensor) -> None:
        """Add a batch: ``outputs`` are logits [B, K] or predicted classes [B]. Logits that are
        nan or infinite are refused (``ValueError``): their argmax would count as a prediction of
        class 0 (or of whichever class holds the infinity), a score the model never earned."""
        targets = targets.reshape(-1).long()
        k = self.num_classes
        if outputs.ndim == 2:
            if outputs.shape[1] != k:
                raise LongtailError(f"logits have {outputs.shape[1]} columns for num_classes={k}")
            if outputs.is_floating_point() and not bool(torch.isfinite(outputs).all()):
                bad = int((~torch.isfinite(outputs)).any(1).sum())
                raise LongtailError(
                    f"{bad} of {outputs.shape[0]} rows of logits are nan or infinite: the model "
                    "diverged or overflowed (in float16, say); fix it before scoring it"
                )
            preds = outputs.argmax(1)
            self._update_logits(outputs.float(), preds, targets.to(outputs.device))
        else:
            preds = outputs.reshape(-1).long()
        targets = targets.to(preds.device)
        _check_range(preds, targets, k)
        cm = torch.bincount(targets * k + preds, minlength=k * k).reshape(k, k)
        self._confusion = cm if self._confusion is None else self._confusion + cm
        self._update_levels(outputs, preds, targets)

    def _update_levels(self, outputs: Tensor, preds: Tensor, targets: Tensor) -> None:
        """Each coarser level sees the batch rolled up: the log of its nodes' summed
        probabilities for logits (so its argmax, top-k and confidence are those of the rolled-up
        probabilities), the ancestors of the predicted classes otherwise."""
        probs = outputs.float().softmax(1) if outputs.ndim == 2 else None
        for level, acc in self._levels.items():
            up = self._ancestors[level].to(targets.device)
            if probs is None:
                acc.update(up[preds], up[targets])
                continue
            rolled = roll_up_probabilities(probs, up, acc.num_classes)
            acc.update(rolled.clamp_min(torch.finfo(rolled.dtype).tiny).log(), up[targets])

    def _update_logits(self, logits: Tensor, preds: Tensor, targets: Tensor) -> None:
        self._seen_logits = True
        if self.topk:
            top = logits.topk(max(self.topk), dim=1).indices
            hits = top == targets[:, None]
            for k in self.topk:
                n = hits[:, :k].any(1).sum()
                self._topk_hits[k] = self._topk_hits.get(k, 0) + n
        conf = logits.softmax(1).max(1).values
        # bin b holds confidences in (b/B, (b+1)/B]
        b = (torch.ceil(conf * self.ece_bins).long() - 1).clamp(0, self.ece_bins - 1)
        correct = (preds == targets).float()
        stats = torch.stack(
            [
                torch.bincount(b, minlength=self.ece_bins).float(),
                torch.bincount(b, weights=conf, minlength=self.ece_bins),
                torch.bincount(b, weights=correct, minlength=self.ece_bins),
            ]
        ).double()
        self._bins = stats if self._bins is None else self._bins + stats

    def state(self) -> Tensor:
        """All statistics as one flat float64 tensor (for ``all_reduce`` across DDP ranks)."""
        k = self.num_classes
        parts = [
            self._confusion.double().flatten()
            if self._confusion is not None
            else torch.zeros(k * k, dtype=torch.float64)
        ]
        dev = parts[0].device
        parts.append(
            torch.tensor(
                [float(self._topk_hits.get(t, 0)) for t in self.topk],
                dtype=torch.float64,
                device=dev,
            )
        )
        parts.append(
            self._bins.flatten()
            if self._bins is not None
            else torch.zeros(3 * self.ece_bins, dtype=torch.float64, device=dev)
        )
        parts.append(torch.tensor([float(self._seen_logits)], dtype=torch.float64, device=dev))
        parts += [level.state().to(dev) for level in self._levels.values()]
        return torch.cat(parts)

    def _own_state_size(self) -> int:
        return self.num_classes**2 + len(self.topk) + 3 * self.ece_bins + 1

    def load_state(self, flat: Tensor) -> None:
        """Inverse of :meth:`state` (after summing it over ranks)."""
        k, nt, nb = self.num_classes, len(self.topk), self.ece_bins
        flat = flat.double()
        self._confusion = flat[: k * k].round().long().reshape(k, k)
        hits = flat[k * k : k * k + nt]
        self._topk_hits = {t: hits[i].round().long() for i, t in enumerate(self.topk)}
        self._bins = flat[k * k + nt : k * k + nt + 3 * nb].reshape(3, nb)
        start = self._own_state_size()
        self._seen_logits = bool(flat[start - 1] > 0)
        for level in self._levels.values():
            size = level._own_state_size()
            level.load_state(flat[start : start + size])
            start += size

    def compute(
        self,
        distribution: ClassDistribution | None = None,
        class_names: Sequence[str] | None = None,
    ) -> ClassificationReport:
        """The report; ``distribution`` (of the training set) supplies class names and head/medium/tail."""
        if self._confusion is None:
            raise LongtailError("no batches were added; call update() before compute()")
        cm = self._confusion.cpu().numpy().astype(np.int64)
        total = int(cm.sum())
        names = class_names or (
            distribution.class_names
            if distribution is not None
            else tuple(str(i) for i in range(self.num_classes))
        )
        groups = None
        if distribution is not None:
            if distribution.num_classes != self.num_classes:
                raise LongtailError(
                    f"distribution has {distribution.num_classes} classes, metrics {self.num_classes}"
                )
            groups = distribution.groups
        topk, ece = {}, None
        if self._seen_logits and total:
            topk = {k: float(self._topk_hits[k]) / total for k in self.topk}
            count, conf, correct = self._bins.cpu().numpy()
            nz = count > 0
            ece = float(np.sum(np.abs(correct[nz] - conf[nz])) / total)
        tree = None
        if distribution is not None and distribution.num_levels > 1:
            tree = distribution.tree_paths()
        levels = {
            level: acc.compute(distribution.at_level(level) if distribution is not None else None)
            for level, acc in self._levels.items()
        }
        return ClassificationReport(cm, tuple(names), topk, ece, groups, tree, levels)


def evaluate(
    outputs: Any, targets: Any, num_classes: int, distribution: ClassDistribution | None = None
) -> ClassificationReport:
    """One-shot evaluation of logits [N, K] or predictions [N]."""
    if distribution is not None and distribution.num_classes == num_classes:
        acc = MetricAccumulator.for_distribution(distribution)
    else:
        acc = MetricAccumulator(num_classes)
    acc.update(torch.as_tensor(outputs), torch.as_tensor(targets))
    return acc.compute(distribution)


def compare_runs(
    runs: dict[str, list[dict[str, float]]],
    metrics: Sequence[str] = HEADLINE,
    baseline: str | None = None,
) -> dict[str, Any]:
    """Comparison of strategies: for each metric and strategy, each seed's value, their mean and
    std (population, ddof = 0), and the change
    of the mean against ``baseline`` (default: the first strategy): in percentage points for a
    share, in the metric's own unit otherwise (:class:`MetricInfo`). A metric that no summary
    holds (mistake severity on flat classes) is left out.

    ``runs[strategy]`` is a list of summaries (one per seed) as given by
    :meth:`ClassificationReport.summary`.
    """
    if not runs:
        raise LongtailError("no runs to compare")
    names = list(runs)
    baseline = baseline or names[0]
    if baseline not in runs:
        raise LongtailError(f"baseline {baseline!r} is not among the strategies {shorten(names)}")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for m in metrics:
        row = {}
        for s in names:
            values = np.array([r[m] for r in runs[s] if m in r], dtype=np.float64)
            if values.size == 0:
                continue
            finite = values[np.isfinite(values)]  # a group with no classes gives nan
            row[s] = {
                "mean": float(finite.mean()) if finite.size else float("nan"),
                "std": float(finite.std()) if finite.size else float("nan"),
                "n": int(values.size),
                "values": values.tolist(),
            }
        if baseline in row:
            for s in row:
                change = metric_info(m).change(row[s]["mean"], row[baseline]["mean"])
                row[s]["delta_points"] = change
        if row:
            table[m] = row
    return {"baseline": baseline, "strategies": names, "metrics": table}


__all__ = [
    "HEADLINE",
    "METRICS",
    "MetricInfo",
    "metric_info",
    "ClassificationReport",
    "MetricAccumulator",
    "compare_runs",
    "confusion_matrix",
    "evaluate",
]
