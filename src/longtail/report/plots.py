"""Matplotlib plots written as PNG files (Agg backend, no display needed).

Every text comes out as written: plots are drawn with mathtext off (a ``$`` in a class name is a
dollar sign), control characters show escaped and names that are not valid UTF-8 show U+FFFD
(:func:`~longtail._text.terminal_text`).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import matplotlib

from longtail.errors import LongtailError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from longtail._io import atomic_write  # noqa: E402
from longtail._text import terminal_text  # noqa: E402
from longtail.distribution import GROUPS, ClassDistribution  # noqa: E402
from longtail.experiments.comparison import PriorShift  # noqa: E402

GROUP_COLOURS = {"head": "#1f77b4", "medium": "#ff7f0e", "tail": "#d62728"}


def line_styles(n: int) -> list[dict]:
    """``n`` line styles that differ pairwise: 20 distinct colours (tab20, dark shades first),
    then the same colours again with another marker and dash pattern."""
    cmap = plt.get_cmap("tab20")
    colours = [cmap(i) for i in list(range(0, 20, 2)) + list(range(1, 20, 2))]
    markers, dashes = ("o", "s", "^", "D"), ("-", "--", ":", "-.")
    return [
        {"color": colours[k % 20], "marker": markers[k // 20 % 4], "linestyle": dashes[k // 20 % 4]}
        for k in range(n)
    ]


Plot = TypeVar("Plot", bound=Callable[..., Any])


def _literal_text(plot: Plot) -> Plot:
    """``plot`` run with matplotlib's mathtext off, so that text is never parsed as markup."""

    @functools.wraps(plot)
    def literal(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context({"text.parse_math": False}):
            return plot(*args, **kwargs)

    return literal  # type: ignore[return-value]


def _shown(names: Sequence[Any]) -> list[str]:
    """Names as a plot shows them (undecodable bytes as U+FFFD)."""
    return [terminal_text(n) for n in names]


def _save(fig: plt.Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (never through a planted link)."""
    path = Path(path)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")  # nothing is clipped
    plt.close(fig)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
    return path


@_literal_text
def plot_class_counts(dist: ClassDistribution, path: str | Path, title: str | None = None) -> Path:
    """Classes sorted by count (log axis), coloured by head / medium / tail group."""
    order = np.argsort(-dist.counts, kind="stable")
    groups = dist.groups[order]
    width = min(max(6.0, 0.28 * dist.num_classes + 2), 24.0)
    fig, ax = plt.subplots(figsize=(width, 4.5))
    counts = np.maximum(dist.counts[order], 0.8)  # empty classes show as a stub on the log axis
    ax.bar(np.arange(dist.num_classes), counts, color=[GROUP_COLOURS[g] for g in groups])
    ax.set_yscale("log")
    ax.set_xticks(np.arange(dist.num_classes))
    ax.set_xticklabels(
        _shown([dist.class_names[i] for i in order]), rotation=60, ha="right", fontsize=8
    )
    ax.set_ylabel("images (log scale)")
    ax.set_title(
        terminal_text(title)
        if title
        else f"{dist.num_classes} classes, {dist.total:,} images, imbalance ratio {dist.imbalance_ratio:.1f}"
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=GROUP_COLOURS[g]) for g in GROUPS]
    ax.legend(
        handles,
        [f"{g} ({int((groups == g).sum())})" for g in GROUPS],
        title=f"{dist.grouping.rule} rule",
    )
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


@_literal_text
def plot_lorenz(dist: ClassDistribution, path: str | Path) -> Path:
    """Lorenz curve: cumulative share of images against cumulative share of classes (smallest first)."""
    x = np.sort(dist.counts.astype(np.float64))
    share = np.concatenate([[0.0], np.cumsum(x) / x.sum()])
    frac = np.linspace(0, 1, x.size + 1)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(frac, frac, "--", color="grey", label="perfect balance")
    ax.plot(frac, share, marker="o", ms=3, label=f"this data (Gini {dist.gini:.2f})")
    ax.fill_between(frac, share, frac, alpha=0.15)
    top = dist.pareto_share(0.2)
    ax.annotate(
        f"top 20% of classes hold {top:.0%}",
        xy=(0.8, float(np.interp(0.8, frac, share))),  # on the curve, between its points
        xytext=(0.05, 0.85),
        arrowprops={"arrowstyle": "->"},
    )
    ax.set_xlabel("cumulative share of classes (smallest first)")
    ax.set_ylabel("cumulative share of images")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(0, 0.8))
    return _save(fig, path)


@_literal_text
def plot_per_class_recall(
    recalls: Mapping[str, Sequence[float]],
    dist: ClassDistribution,
    path: str | Path,
) -> Path:
    """Per-class recall of several strategies, classes sorted by training count (largest first)."""
    order = np.argsort(-dist.counts, kind="stable")
    fig, ax1 = plt.subplots(figsize=(min(max(8.0, 0.3 * dist.num_classes + 3), 24.0) + 3, 5.5))
    ax2 = ax1.twinx()
    ax2.bar(np.arange(dist.num_classes), dist.counts[order], color="lightgrey", alpha=0.6)
    ax2.set_yscale("log")
    ax2.set_ylabel("training images (grey bars, log)")
    ax1.set_zorder(ax2.get_zorder() + 1)
    ax1.patch.set_visible(False)
    for (name, rec), style in zip(recalls.items(), line_styles(len(recalls)), strict=True):
        ax1.plot(np.arange(dist.num_classes), np.asarray(rec)[order], ms=4, label=name, **style)
    ax1.set_xticks(np.arange(dist.num_classes))
    ax1.set_xticklabels(
        _shown([dist.class_names[i] for i in order]), rotation=60, ha="right", fontsize=8
    )
    ax1.set_ylabel("recall on test")
    ax1.set_ylim(0, 1.02)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.12, 1.0), frameon=False)
    ax1.set_title("Per-class recall, classes sorted by training count")
    return _save(fig, path)


def recall_change(
    recalls: Mapping[str, Sequence[float]], baseline: str, counts: Sequence[int]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(strategies, class order, change): the change in recall against ``baseline``, in points,
    of every other strategy [S, K], with the classes (columns) sorted by training count, largest
    first; nan where a class has no recall (no test images)."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    names = [n for n in recalls if n != baseline]
    base = np.asarray(recalls[baseline], dtype=np.float64)[order]
    change = np.array(
        [100 * (np.asarray(recalls[n], dtype=np.float64)[order] - base) for n in names]
    ).reshape(len(names), len(order))
    return names, order, change


@_literal_text
def plot_recall_change(
    recalls: Mapping[str, Sequence[float]],
    baseline: str,
    dist: ClassDistribution,
    path: str | Path,
) -> Path:
    """Heat map of :func:`recall_change`: strategies x classes (sorted by training count),
    diverging colours centred on zero (blue: recall gained, red: lost), cells labelled in points
    when they are few enough to read."""
    names, order, change = recall_change(recalls, baseline, dist.counts)
    if not names:
        raise LongtailError("a heat map of changes needs a strategy besides the baseline")
    finite = change[np.isfinite(change)]
    top = max(float(np.abs(finite).max()) if finite.size else 0.0, 1.0)
    k = len(order)
    fig, ax = plt.subplots(
        figsize=(min(max(6.0, 0.45 * k + 4.5), 26.0), min(max(3.0, 0.38 * len(names) + 2.2), 20.0))
    )
    im = ax.imshow(np.ma.masked_invalid(change), cmap="RdBu", vmin=-top, vmax=top, aspect="auto")
    ax.set_xticks(np.arange(k))
    ax.set_xticklabels(
        _shown([f"{dist.class_names[i]} ({dist.counts[i]:,})" for i in order]),
        rotation=60,
        ha="right",
        fontsize=8,
    )
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels(_shown(names), fontsize=8)
    if k * len(names) <= 600:
        for i in range(len(names)):
            for j in range(k):
                if np.isfinite(change[i, j]):
                    strong = abs(change[i, j]) > 0.6 * top
                    ax.text(
                        j,
                        i,
                        f"{change[i, j]:+.0f}" if round(change[i, j]) else "0",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if strong else "black",
                    )
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label="recall change (points)")
    ax.set_title(
        f"Change in test recall against {baseline} (points)\n"
        "classes sorted by training count (in brackets)",
        fontsize=10,
    )
    return _save(fig, path)


@_literal_text
def plot_confusion(
    matrix: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Row-normalised confusion matrix heat map (rows = true class)."""
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(class_names)
    size = min(max(5.0, 0.45 * k + 2), 22.0)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(np.arange(k))
    ax.set_yticks(np.arange(k))
    ax.set_xticklabels(_shown(class_names), rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(_shown(class_names), fontsize=8)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if norm[i, j] >= 0.01:
                    ax.text(
                        j,
                        i,
                        f"{norm[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(terminal_text(title or "Confusion matrix (row-normalised)"))
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def _tree_order(dist: ClassDistribution) -> np.ndarray:
    """The classes ordered so that each node's children sit together, the larger nodes first
    at every level."""
    paths = dist.tree_paths()
    counts = dist.counts.astype(np.float64)
    keys = []
    for level_keys in paths:
        mass: dict = {}
        for key, n in zip(level_keys, counts, strict=True):
            mass[key] = mass.get(key, 0.0) + n
        first = {key: i for i, key in reversed(list(enumerate(level_keys)))}
        keys.append([(-mass[key], first[key]) for key in level_keys])
    return np.array(sorted(range(dist.num_classes), key=lambda j: [k[j] for k in keys]))


@_literal_text
def plot_tree(dist: ClassDistribution, path: str | Path) -> Path:
    """Icicle plot of the class tree: one row per level (top first), each node a bar as wide as
    its share of the training images, coloured by its head / medium / tail group at its level;
    a leaf under a rare parent is as narrow as its parent's share times its own."""
    order = _tree_order(dist)
    levels = dist.num_levels
    fig, ax = plt.subplots(figsize=(12, 1.1 * levels + 1.4))
    total = float(dist.total)
    for level in range(1, levels + 1):
        sub = dist.at_level(level)
        names = dist.level_names(level)
        index = {n: i for i, n in enumerate(sub.class_names)}
        runs = [names[j] for j in order]
        nodes = [name for k, name in enumerate(runs) if not k or runs[k - 1] != name]
        rows = np.array([index[name] for name in nodes], dtype=np.int64)
        widths = sub.counts[rows] / total
        lefts = np.concatenate([[0.0], np.cumsum(widths)[:-1]])
        y = levels - level
        colours = [GROUP_COLOURS[sub.groups[i]] for i in rows]
        ax.barh(y, widths, left=lefts, height=0.9, color=colours, edgecolor="white")
        for name, i, left, width in zip(nodes, rows, lefts, widths, strict=True):
            if width > 0.035:
                ax.text(
                    left + width / 2,
                    y,
                    f"{terminal_text(name)}\n{int(sub.counts[i]):,}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white",
                )
    ax.set_yticks(range(levels))
    ax.set_yticklabels([f"level {levels - y}" for y in range(levels)])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of training images")
    ax.set_title(
        f"Class tree: {levels} levels, {dist.num_classes} classes (colour: group at each level)"
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=GROUP_COLOURS[g]) for g in GROUPS]
    ax.legend(handles, list(GROUPS), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    return _save(fig, path)


@_literal_text
def plot_prior_shift(shift: PriorShift, path: str | Path) -> Path:
    """Test accuracy of each strategy under shifted class priors (:mod:`longtail.priors`): from
    the training prior sharpened (left) through uniform to the training prior reversed (right),
    one line per strategy, the seeds' spread as a band."""
    fig, ax = plt.subplots(figsize=(9, 5))
    x = np.arange(len(shift.exponents))
    styles = line_styles(len(shift.accuracy))
    for style, (name, row) in zip(styles, shift.accuracy.items(), strict=True):
        mean = 100 * np.array([s.mean for s in row])
        std = 100 * np.array([s.std for s in row])
        ax.plot(x, mean, ms=3, label=name, **style)
        ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0)
    ax.set_xticks(x)
    ax.set_xticklabels(shift.labels, rotation=30, ha="right", fontsize=8)
    ax.axvline(shift.exponents.index(0.0) if 0.0 in shift.exponents else 0, color="grey", lw=0.8)
    ax.set_ylabel("test accuracy under the prior (%)")
    ax.set_title("Accuracy as the test prior shifts (grey line: uniform = balanced accuracy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)


__all__ = [
    "GROUP_COLOURS",
    "line_styles",
    "plot_class_counts",
    "plot_confusion",
    "plot_lorenz",
    "plot_per_class_recall",
    "plot_prior_shift",
    "plot_recall_change",
    "plot_tree",
    "recall_change",
]
