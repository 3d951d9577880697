"""Class distribution of a labelled data set: counts, imbalance statistics, groups, hierarchy.

``ClassDistribution`` is the one object that knows the per-class counts, class names, hierarchy
levels and the head / medium / tail split; everything downstream takes it (or a label array).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from longtail._checks import as_counts, as_labels, check_names
from longtail._io import to_json
from longtail._text import markdown_text, terminal_text
from longtail.errors import LongtailError

GROUPS = ("head", "medium", "tail")
GroupRule = Literal["quantile", "shots"]


@dataclass(frozen=True)
class GroupRuleSpec:
    """How classes are split into head / medium / tail.

    ``rule="quantile"``: classes sorted by count (largest first); the first ``head`` fraction of
    classes is head, the last ``tail`` fraction tail, the rest medium (default thirds). Classes of
    equal count always share a group (that of the middle of their tie), so a balanced set is all
    medium, never part "tail".
    ``rule="shots"``: ImageNet-LT convention (Liu et al., CVPR 2019): head = more than ``many``
    images, tail = fewer than ``few`` images, medium otherwise.
    """

    rule: GroupRule = "quantile"
    head: float = 1 / 3
    tail: float = 1 / 3
    many: int = 100
    few: int = 20

    def __post_init__(self) -> None:
        if self.rule not in ("quantile", "shots"):
            raise LongtailError(f"group rule must be 'quantile' or 'shots', got {self.rule!r}")
        if not (0 <= self.head <= 1 and 0 <= self.tail <= 1 and self.head + self.tail <= 1):
            raise LongtailError(
                f"head and tail fractions must lie in [0, 1] and sum to <= 1, got {self.head}, {self.tail}"
            )
        if self.few > self.many:
            raise LongtailError(f"few ({self.few}) must be <= many ({self.many})")


MAX_LEVELS = 32
"""The deepest class tree read (Million-AID has 3 levels): deeper ones are refused, as every
per-level table, plot and metric grows with the number of levels."""


@dataclass(frozen=True)
class ClassDistribution:
    """Per-class counts with names, optional hierarchy and a head/medium/tail split.

    Build it with :meth:`from_labels` or :meth:`from_counts`. ``hierarchy`` gives, for each class,
    the names of its ancestors from the top level down (not the class itself): Million-AID's
    ``dry_field`` has ``("agriculture_land", "arable_land")``; a class with fewer ancestors than the
    deepest one (``lake`` under ``water_area``) stands for itself at the levels below it.

    Example:
        >>> d = ClassDistribution.from_counts([500, 50, 5], class_names=["a", "b", "c"])
        >>> d.imbalance_ratio
        100.0
    """

    counts: np.ndarray
    class_names: tuple[str, ...]
    hierarchy: tuple[tuple[str, ...], ...] | None = None
    grouping: GroupRuleSpec = field(default_factory=GroupRuleSpec)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_labels(
        cls,
        labels: Any,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        hierarchy: Sequence[Sequence[str]] | None = None,
        grouping: GroupRuleSpec | None = None,
    ) -> ClassDistribution:
        """Count integer labels (numpy, torch, list or a dataset with ``targets``)."""
        if num_classes is None and class_names is not None:
            num_classes = len(class_names)
        arr = as_labels(labels, num_classes)
        counts = np.bincount(arr, minlength=num_classes or 0)
        return cls.from_counts(counts, class_names, hierarchy, grouping)

    @classmethod
    def from_counts(
        cls,
        counts: Any,
        class_names: Sequence[str] | None = None,
        hierarchy: Sequence[Sequence[str]] | None = None,
        grouping: GroupRuleSpec | None = None,
    ) -> ClassDistribution:
        """Wrap per-class counts (zero-count classes are kept)."""
        c = as_counts(counts)
        if c.sum() == 0:
            raise LongtailError("all class counts are zero: the data set holds no samples")
        names = check_names(class_names, c.size)
        hier = None
        if hierarchy is not None:
            if len(hierarchy) != c.size:
                raise LongtailError(f"hierarchy has {len(hierarchy)} entries for {c.size} classes")
            hier = tuple(tuple(str(p) for p in path) for path in hierarchy)
            deepest = max(range(c.size), key=lambda i: len(hier[i]))
            if len(hier[deepest]) >= MAX_LEVELS:
                leaf = names[deepest].rsplit("/", 1)[-1]
                where = terminal_text("/".join((*hier[deepest][:3], "...", leaf)))
                raise LongtailError(
                    f"class {where} lies {len(hier[deepest]) + 1} levels deep; longtail reads "
                    f"class trees of at most {MAX_LEVELS} levels. Flatten the folders, or give "
                    "a CSV manifest whose labels name the levels you want"
                )
        c.setflags(write=False)
        return cls(c, names, hier, grouping or GroupRuleSpec())

    def with_grouping(self, **kwargs: Any) -> ClassDistribution:
        """A copy that splits head/medium/tail by another rule (see :class:`GroupRuleSpec`)."""
        return ClassDistribution(
            self.counts, self.class_names, self.hierarchy, GroupRuleSpec(**kwargs)
        )

    # ----------------------------------------------------------------- basic facts
    @property
    def num_classes(self) -> int:
        return int(self.counts.size)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def empty_classes(self) -> list[str]:
        return [self.class_names[i] for i in np.flatnonzero(self.counts == 0)]

    @property
    def frequencies(self) -> np.ndarray:
        """p_j = n_j / N."""
        return self.counts / self.total

    # ----------------------------------------------------------------- statistics
    @property
    def imbalance_ratio(self) -> float:
        """max_j n_j / min_j n_j over the non-empty classes."""
        nz = self.counts[self.counts > 0]
        return float(nz.max() / nz.min())

    def pareto_share(self, top_fraction: float = 0.2) -> float:
        """Share of all samples held by the ceil(top_fraction * K) largest classes."""
        if not 0 < top_fraction <= 1:
            raise LongtailError(f"top_fraction must lie in (0, 1], got {top_fraction}")
        k = max(1, math.ceil(top_fraction * self.num_classes - 1e-9))
        top = np.sort(self.counts)[::-1][:k]
        return float(top.sum() / self.total)

    @property
    def gini(self) -> float:
        """Gini coefficient of the class counts: sum_ij |n_i - n_j| / (2 K^2 mean(n)); 0 = balanced."""
        x = np.sort(self.counts.astype(np.float64))
        k = x.size
        ranks = np.arange(1, k + 1)
        return float(2.0 * np.sum(ranks * x) / (k * x.sum()) - (k + 1) / k)

    @property
    def normalized_entropy(self) -> float:
        """H(p) / log K with 0 log 0 = 0; 1 = balanced (1.0 when K = 1)."""
        if self.num_classes == 1:
            return 1.0
        p = self.frequencies[self.counts > 0]
        return float(-(p * np.log(p)).sum() / math.log(self.num_classes))

    # ----------------------------------------------------------------- groups
    @property
    def groups(self) -> np.ndarray:
        """Group name ('head' | 'medium' | 'tail') of every class, by ``self.grouping``."""
        g = self.grouping
        out = np.full(self.num_classes, "medium", dtype=object)
        if g.rule == "shots":
            out[self.counts > g.many] = "head"
            out[self.counts < g.few] = "tail"
            return out
        order = np.argsort(-self.counts, kind="stable")
        k = self.num_classes
        n_head = int(round(g.head * k))
        n_tail = min(int(round(g.tail * k)), k - n_head)
        by_rank = np.full(k, "medium", dtype=object)
        by_rank[:n_head] = "head"
        if n_tail:
            by_rank[k - n_tail :] = "tail"
        # Classes of equal count share a group: the group of the middle rank of their tie.
        sorted_counts = self.counts[order]
        _, first, size = np.unique(-sorted_counts, return_index=True, return_counts=True)
        middle = first + (size - 1) // 2
        tie_group = np.repeat(by_rank[middle], size)
        out[order] = tie_group
        return out

    def group_indices(self) -> dict[str, np.ndarray]:
        """Class indices of each group, in class order."""
        g = self.groups
        return {name: np.flatnonzero(g == name) for name in GROUPS}

    # ----------------------------------------------------------------- hierarchy
    @property
    def num_levels(self) -> int:
        """Hierarchy depth, counting the classes themselves (1 without hierarchy)."""
        if not self.hierarchy:
            return 1
        return max(len(p) for p in self.hierarchy) + 1

    def level_keys(self, level: int) -> list[tuple[str, ...]]:
        """Each class's ancestor at ``level`` as its path from the top (1 = top folders,
        ``num_levels`` = the classes); a class with fewer ancestors stands for itself below them.
        Folders that share a name under different parents have different keys."""
        if not 1 <= level <= self.num_levels:
            raise LongtailError(f"level must be in 1..{self.num_levels}, got {level}")
        paths = self.hierarchy or ((),) * self.num_classes
        return [
            (*path, name)[:level] if level <= len(path) else (*path, name)
            for path, name in zip(paths, self.class_names, strict=True)
        ]

    def tree_paths(self) -> list[list[tuple[str, ...]]]:
        """Each class's ancestor at every level from the top (its path there): the class tree
        that :class:`~longtail.sampling.HierarchicalSampler` balances."""
        return [self.level_keys(level) for level in range(1, self.num_levels + 1)]

    def level_names(self, level: int) -> list[str]:
        """Name of each class's ancestor at ``level`` (1 = top, ``num_levels`` = the classes):
        the folder name, or its path from the top where that name occurs under several parents."""
        if level == self.num_levels:
            self.level_keys(level)  # range check
            return list(self.class_names)
        if level not in self._level_names:
            keys = self.level_keys(level)
            last: dict[str, set[tuple[str, ...]]] = {}
            for key in keys:
                last.setdefault(key[-1], set()).add(key)
            names = [key[-1] if len(last[key[-1]]) == 1 else "/".join(key) for key in keys]
            self._level_names[level] = names
        return list(self._level_names[level])

    @functools.cached_property
    def _level_names(self) -> dict[int, list[str]]:
        """:meth:`level_names` computed so far, by level (each is asked for once per level)."""
        return {}

    def at_level(self, level: int) -> ClassDistribution:
        """Counts rolled up to ``level``; classes named by first appearance."""
        names = self.level_names(level)
        position = {n: i for i, n in enumerate(dict.fromkeys(names))}
        uniq = list(position)
        idx = np.array([position[n] for n in names], dtype=np.int64)
        counts = np.bincount(idx, weights=self.counts, minlength=len(uniq)).astype(np.int64)
        hier = None
        if level > 1:
            upper = [self.level_names(lv) for lv in range(1, level)]
            first = {n: i for i, n in reversed(list(enumerate(names)))}
            hier = [tuple(u[first[n]] for u in upper) for n in uniq]
        return ClassDistribution(counts, tuple(uniq), tuple(hier) if hier else None, self.grouping)

    def within_parent_imbalance(self, level: int) -> dict[str, float]:
        """For each class at ``level`` (< num_levels), imbalance ratio among its children at level + 1."""
        if not 1 <= level < self.num_levels:
            raise LongtailError(f"level must be in 1..{self.num_levels - 1}, got {level}")
        parents = self.level_names(level)
        children = self.level_names(level + 1)
        child_counts: dict[str, dict[str, int]] = {}
        for parent, child, n in zip(parents, children, self.counts.tolist(), strict=True):
            kids = child_counts.setdefault(parent, {})
            kids[child] = kids.get(child, 0) + n
        out: dict[str, float] = {}
        for parent, kids in child_counts.items():
            c = np.array([n for n in kids.values() if n > 0])
            out[parent] = float(c.max() / c.min()) if c.size else float("nan")
        return out

    def children_counts(self, level: int) -> dict[str, int]:
        """For each class at ``level`` (< num_levels), how many children it has at level + 1."""
        if not 1 <= level < self.num_levels:
            raise LongtailError(f"level must be in 1..{self.num_levels - 1}, got {level}")
        pairs = set(zip(self.level_names(level), self.level_names(level + 1), strict=True))
        out: dict[str, int] = dict.fromkeys(self.level_names(level), 0)
        for parent, _child in pairs:
            out[parent] += 1
        return out

    # ----------------------------------------------------------------- export
    def summary(self) -> dict[str, Any]:
        """The headline statistics."""
        return {
            "num_classes": self.num_classes,
            "total": self.total,
            "max_count": int(self.counts.max()),
            "min_count": int(self.counts.min()),
            "imbalance_ratio": self.imbalance_ratio,
            "pareto_share_top20": self.pareto_share(0.2),
            "gini": self.gini,
            "normalized_entropy": self.normalized_entropy,
            "empty_classes": self.empty_classes,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-able values."""
        groups = self.groups
        d: dict[str, Any] = self.summary()
        d["grouping"] = vars(self.grouping).copy()
        d["classes"] = [
            {"index": i, "name": n, "count": int(c), "group": str(g)}
            for i, (n, c, g) in enumerate(zip(self.class_names, self.counts, groups, strict=True))
        ]
        d["groups"] = {
            name: {
                "classes": [self.class_names[i] for i in idx],
                "samples": int(self.counts[idx].sum()),
            }
            for name, idx in self.group_indices().items()
        }
        if self.num_levels > 1:
            d["levels"] = {}
            for level in range(1, self.num_levels):
                sub = self.at_level(level)
                d["levels"][str(level)] = {
                    "num_classes": sub.num_classes,
                    "imbalance_ratio": sub.imbalance_ratio,
                    "counts": dict(zip(sub.class_names, sub.counts.tolist(), strict=True)),
                    "shares": dict(zip(sub.class_names, sub.frequencies.tolist(), strict=True)),
                    "children": self.children_counts(level),
                    "within_parent_imbalance": self.within_parent_imbalance(level),
                }
        return d

    def to_json(self, indent: int = 2) -> str:
        """Strict JSON (an undefined statistic, e.g. the imbalance among no children, is null)."""
        return to_json(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        """A Markdown report: headline statistics, the groups, every class, and hierarchy levels."""
        s = self.summary()
        lines = [
            "| statistic | value |",
            "|---|---|",
            f"| classes | {s['num_classes']} |",
            f"| samples | {s['total']:,} |",
            f"| largest / smallest class | {s['max_count']:,} / {s['min_count']:,} |",
            f"| imbalance ratio (max/min, non-empty) | {s['imbalance_ratio']:.1f} |",
            f"| share of samples in top 20% of classes | {s['pareto_share_top20']:.1%} |",
            f"| Gini coefficient | {s['gini']:.3f} |",
            f"| normalised entropy | {s['normalized_entropy']:.3f} |",
        ]
        if s["empty_classes"]:
            empty = ", ".join(markdown_text(c) for c in s["empty_classes"])
            lines.append(f"| empty classes | {empty} |")
        lines += [
            "",
            f"Groups ({self.grouping.rule} rule):",
            "",
            "| group | classes | samples |",
            "|---|---|---|",
        ]
        for name, idx in self.group_indices().items():
            lines.append(f"| {name} | {len(idx)} | {int(self.counts[idx].sum()):,} |")
        lines += ["", "| class | count | share | group |", "|---|---|---|---|"]
        groups = self.groups
        for i in np.argsort(-self.counts, kind="stable"):
            lines.append(
                f"| {markdown_text(self.class_names[i])} | {int(self.counts[i]):,} | "
                f"{self.frequencies[i]:.2%} | {groups[i]} |"
            )
        for level in range(1, self.num_levels):
            sub = self.at_level(level)
            within = self.within_parent_imbalance(level)
            lines += [
                "",
                f"Level {level} ({sub.num_classes} classes, imbalance ratio {sub.imbalance_ratio:.1f}):",
                "",
            ]
            children = self.children_counts(level)
            lines += [
                "| class | count | share of images | children | imbalance among its children |",
                "|---|---|---|---|---|",
            ]
            for name, n, share in zip(sub.class_names, sub.counts, sub.frequencies, strict=True):
                lines.append(
                    f"| {markdown_text(name)} | {int(n):,} | {share:.2%} | {children[name]} | "
                    f"{within[name]:.1f} |"
                )
        return "\n".join(lines) + "\n"


__all__ = [
    "GROUPS",
    "ClassDistribution",
    "GroupRule",
    "GroupRuleSpec",
]
