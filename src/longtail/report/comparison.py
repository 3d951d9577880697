"""The comparison report (``report.md``): a :class:`~longtail.training.results.Comparison` as
Markdown, with the plots written beside it."""

from __future__ import annotations

import numpy as np

from longtail._text import markdown_text
from longtail.distribution import ClassDistribution
from longtail.experiments.comparison import Comparison, PriorShift
from longtail.metrics import metric_info
from longtail.report.tables import CHANCE_HELP, legend, level_title, markdown_table
from longtail.uncertainty import indistinct


def comparison_markdown(
    comparison: Comparison, dist: ClassDistribution, timings: dict[str, float]
) -> str:
    """``report.md``: the set-up, the results table, a reading of it, the plots and per-class
    recall; ``timings`` is each strategy's wall time over its seeds."""
    lines = [
        f"# Strategy comparison on {markdown_text(comparison.data)}",
        "",
        _setup(comparison, dist),
        "",
        "## Results",
        "",
        _results_note(comparison),
        "",
        markdown_table(comparison),
        legend(comparison),
        "",
        *_how_sure(comparison),
        *_level_tables(comparison),
        "## Reading the table",
        "",
        *reading(comparison),
        "",
        *_prior_shift(comparison),
        *_figures(comparison),
        "## Per-class recall (%)",
        "",
        *_per_class(comparison, dist),
        "",
        "Wall time per strategy (all seeds): "
        + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()),
        "",
    ]
    return "\n".join(lines)


def _setup(comparison: Comparison, dist: ClassDistribution) -> str:
    cfg = comparison.settings
    groups = ", ".join(str(len(v)) for v in dist.group_indices().values())
    return (
        f"Training set: {dist.total:,} images in {dist.num_classes} classes, imbalance ratio "
        f"{dist.imbalance_ratio:.1f} (head / medium / tail = {groups} classes by count thirds). "
        f"Model `{cfg.model}`, {cfg.epochs} epochs, batch {cfg.batch_size}, "
        f"{cfg.optimizer} lr {cfg.lr}, training augmentation `{cfg.augment}`, "
        f"seeds {comparison.seeds}; every number below was measured in this run on the test split. "
        f"{_own_settings(comparison)}{_trainings(comparison)}"
    )


def _own_settings(comparison: Comparison) -> str:
    """A sentence on the rows that train with settings of their own (written after ``@``)."""
    if not comparison.recipes:
        return ""
    rows = "; ".join(
        f"`{label}`: " + ", ".join(f"{k} `{v}`" for k, v in recipe.items())
        for label, recipe in comparison.recipes.items()
    )
    return f"Rows with settings of their own train with them instead ({rows}). "


def _trainings(comparison: Comparison) -> str:
    needed = comparison.trainings + comparison.reused
    return (
        f"The {comparison.grid} runs (strategies x seeds) needed {needed} stage trainings, first "
        f"stages shared and post-hoc stages evaluated rather than trained: {comparison.trainings} "
        f"trained by this call, {comparison.reused} finished ones reused."
    )


def _results_note(comparison: Comparison) -> str:
    text = "Percent, mean ± std over seeds; in brackets the change against the baseline in points. "
    if comparison.config.get("select_best", True):
        chosen = "; ".join(
            f"{n} {', '.join(str(e) for e in eps)}" for n, eps in comparison.selected_epochs.items()
        )
        text += (
            "Each run's tested model is its epoch with the best validation balanced accuracy "
            f"(epochs chosen, by seed: {chosen})."
        )
    else:
        text += "Each run's tested model is its last epoch's."
    if comparison.chosen_tau:
        taus = "; ".join(
            f"{n} {', '.join(f'{t:g}' for t in ts)}" for n, ts in comparison.chosen_tau.items()
        )
        text += f" Second stages chose tau on the validation split (by seed: {taus})."
    return text


def _points(comparison: Comparison, metric: str, name: str) -> tuple[float, float]:
    """(mean in percent, change against the baseline in points) of ``name``'s ``metric``."""
    stat = comparison.metrics[metric][name]
    return 100 * stat.mean, stat.delta_points or 0.0


TIE_RULE = "seeds overlapping, or a paired difference whose 95% interval holds 0"
"""The one definition of a tie (:func:`longtail.uncertainty.indistinct`), in words."""


def tied(comparison: Comparison, metric: str, name: str) -> list[str]:
    """The other strategies the seeds cannot tell apart from ``name`` on ``metric``
    (:func:`longtail.uncertainty.indistinct`: mean +- std over seeds overlap, or with 3 seeds
    or more the paired difference's 95% interval holds 0)."""
    row = comparison.metrics.get(metric, {})
    mine = row[name]
    return [
        other
        for other, stat in row.items()
        if other != name
        and other not in comparison.diverged
        and indistinct(mine.values or [mine.mean], stat.values or [stat.mean])
    ]


def reading(comparison: Comparison) -> list[str]:
    """What the table says, as Markdown bullets computed from it (the report's and the
    README's "how to read it"): the best strategy and those tied with it, the best tail recall
    and its price, the best that keeps head recall, what does not help, the mildest mistakes,
    the best under shifted priors."""
    headline = comparison.headline
    best = comparison.best(headline)
    lines = [
        f"- **{name}** diverged (its loss became nan or infinite), so it has no results: {msg}"
        for name, msg in comparison.diverged.items()
    ]
    if comparison.unreadable_images:
        lines.append(
            f"- {comparison.unreadable_images} unreadable image(s) were replaced by other "
            "images of their class (listed in `bad_images.log`)."
        )
    if best is None:
        return lines
    if best in comparison.at_chance:
        return [*lines, nothing_learned(comparison)]
    lines += [_best_line(comparison, headline, best), _tail_line(comparison, best)]
    lines += _chance_line(comparison)
    lines += _gentle(comparison, headline) + _no_gain(comparison, headline)
    lines += _severity(comparison)
    if comparison.prior_shift is not None:
        lines += ["- " + line for line in _shift_reading(comparison.prior_shift)]
    return lines


def nothing_learned(comparison: Comparison) -> str:
    """The reading of a comparison whose best strategy cannot be told from chance."""
    label = metric_info(comparison.headline).label
    return (
        f"- **Nothing was learned that the test split can show**: no strategy's {label} can be "
        f"told from chance ({100 * comparison.chance:.1f}%, what a model that ignores its input "
        "scores; the 95% interval over test images reaches it), so no strategy is named best. "
        f"What helps: {CHANCE_HELP}."
    )


def _chance_line(comparison: Comparison) -> list[str]:
    """The strategies, other than the best, whose headline cannot be told from chance."""
    names = comparison.at_chance
    if not names:
        return []
    listed = ", ".join(f"**{markdown_text(n)}**" for n in names)
    return [
        f"- At chance ({100 * comparison.chance:.1f}%; the 95% interval over test images "
        f"reaches it), so they learned nothing the test split can show: {listed}."
    ]


def _stat_text(comparison: Comparison, metric: str, name: str) -> str:
    stat = comparison.metrics[metric][name]
    return f"{100 * stat.mean:.1f} ± {100 * stat.std:.1f}%"


def _best_line(comparison: Comparison, headline: str, best: str) -> str:
    _, delta = _points(comparison, headline, best)
    ties = tied(comparison, headline, best)
    line = (
        f"- Best {metric_info(headline).label}: **{best}** ({_stat_text(comparison, headline, best)}, "
        f"{delta:+.1f} points against {comparison.baseline})"
    )
    if ties:
        line += "; the seeds cannot tell it from " + ", ".join(f"**{t}**" for t in ties)
        line += f" ({TIE_RULE})"
        cost = comparison.costs
        if cost and all(n in cost for n in [best, *ties]):
            cheapest = min([best, *ties], key=lambda n: (cost[n], n != best))
            line += (
                f", so take the cheapest: **{cheapest}** ({cost[cheapest]} training"
                f"{'s' if cost[cheapest] > 1 else ''} per seed)"
            )
    return line + "."


def _how_sure(comparison: Comparison) -> list[str]:
    """The headline metric of each strategy with its intervals and its difference from the best."""
    if not comparison.uncertainty:
        return []
    label = metric_info(comparison.headline).label
    lines = [
        f"### How sure: {label}",
        "",
        "95% intervals: over seeds (Student t), over test images (bootstrap, class by class), and "
        "of the difference from the best strategy seed by seed; *tied* marks a strategy the data "
        "cannot tell from the best.",
        "",
        "| strategy | mean | over seeds | over test images | difference from the best | |",
        "|---|---|---|---|---|---|",
    ]
    for u in sorted(comparison.uncertainty, key=lambda u: -u.mean):
        interval = f"{100 * u.seed_low:.1f} to {100 * u.seed_high:.1f}"
        images = f"{100 * u.image_low:.1f} to {100 * u.image_high:.1f}"
        diff = (
            f"{-100 * u.vs_best:+.1f} ({-100 * u.vs_best_high:+.1f} to {-100 * u.vs_best_low:+.1f})"
            if u.strategy != comparison.best(comparison.headline)
            else "the best"
        )
        mark = "tied" if u.tied else ""
        name = markdown_text(u.strategy)
        lines.append(f"| {name} | {100 * u.mean:.1f} | {interval} | {images} | {diff} | {mark} |")
    return [*lines, ""]


def _tail_line(comparison: Comparison, best: str) -> str:
    best_tail = comparison.best("tail_recall") or best
    _, tail_delta = _points(comparison, "tail_recall", best_tail)
    _, head_delta = _points(comparison, "head_recall", best_tail)
    return (
        f"- If tail recall matters most: **{best_tail}** "
        f"({_stat_text(comparison, 'tail_recall', best_tail)}, {tail_delta:+.1f} points"
        f"{_cost(comparison, best_tail)}); it pays {head_delta:+.1f} points of head recall."
    )


def _cost(comparison: Comparison, name: str) -> str:
    """ ", N trainings per seed" when the comparison knows it."""
    n = comparison.costs.get(name)
    return "" if n is None else f", {n} training{'s' if n > 1 else ''} per seed"


def _gentle(comparison: Comparison, headline: str, limit: float = 3.0) -> list[str]:
    """The best strategy whose head recall drops by at most ``limit`` points."""
    head = comparison.metrics.get("head_recall", {})
    keep = {
        n: s.mean
        for n, s in comparison.metrics[headline].items()
        if n != comparison.baseline
        and n in head
        and (head[n].delta_points or 0.0) >= -limit
        and np.isfinite(s.mean)
    }
    if not keep:
        return []
    name = max(keep, key=keep.__getitem__)
    _, delta = _points(comparison, headline, name)
    _, head_delta = _points(comparison, "head_recall", name)
    return [
        f"- If head recall may not drop more than {limit:g} points: **{name}** ({delta:+.1f} "
        f"points of {metric_info(headline).label}, {head_delta:+.1f} of head recall"
        f"{_cost(comparison, name)})."
    ]


def _no_gain(comparison: Comparison, headline: str) -> list[str]:
    """The strategies the seeds cannot tell apart from the baseline."""
    same = tied(comparison, headline, comparison.baseline)
    if not same:
        return []
    names = ", ".join(f"**{n}**" for n in same)
    return [
        f"- No better than {comparison.baseline} on {metric_info(headline).label} "
        f"({TIE_RULE}): {names}."
    ]


def _level_tables(comparison: Comparison) -> list[str]:
    """A table per coarser level of the class tree: the same runs, judged there."""
    lines = []
    for level in comparison.levels:
        members = ", ".join(markdown_text(c) for c in level.classes)
        lines += [
            f"### {level_title(level)}",
            "",
            f"Classes at level {level.level}: {members}. Each image counts as right when the "
            "tree node holding the most of the model's probability is its class's ancestor.",
            "",
            markdown_table(comparison.at_level(level)),
        ]
    return lines


def _severity(comparison: Comparison) -> list[str]:
    """The strategy whose mistakes stay closest to the truth in the tree."""
    stats = comparison.metrics.get("mistake_severity", {})
    finite = {n: s.mean for n, s in stats.items() if np.isfinite(s.mean)}
    if not finite:
        return []
    best = min(finite, key=finite.__getitem__)
    base = finite.get(comparison.baseline, float("nan"))
    inside = comparison.metrics["mistakes_within_parent"][best].mean
    return [
        f"- Mildest mistakes: **{best}** (mean LCA height {finite[best]:.2f} against "
        f"{base:.2f} for {comparison.baseline}; {100 * inside:.1f}% of its mistakes stay inside "
        "the true parent)."
    ]


def _prior_shift(comparison: Comparison) -> list[str]:
    """Accuracy under shifted test priors: a table and the strategy best across the range."""
    shift = comparison.prior_shift
    if shift is None:
        return []
    names = list(shift.accuracy)
    lines = [
        "## When the test prior shifts",
        "",
        "Accuracy (%) on test data whose classes follow q ~ pi^t, pi the training prior: t = 1 "
        "is the training prior, 0 uniform (balanced accuracy), -1 the training prior reversed; "
        "computed exactly from each run's per-class recall, mean over seeds.",
        "",
        "| test prior | " + " | ".join(markdown_text(n) for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, label in enumerate(shift.labels):
        cells = " | ".join(f"{100 * shift.accuracy[n][i].mean:.1f}" for n in names)
        lines.append(f"| {label} | {cells} |")
    lines += [
        "",
        *_shift_reading(shift),
        "",
        "![accuracy under shifted priors](prior_shift.png)",
        "",
    ]
    return lines


def _shift_reading(shift: PriorShift) -> list[str]:
    """The strategy with the best worst case over the priors, and the best at each end."""
    worst = {n: float(np.nanmin(shift.mean(n))) for n in shift.accuracy}
    robust = max(worst, key=worst.__getitem__)
    ends = {
        label: max(shift.accuracy, key=lambda n: shift.mean(n)[i])
        for i, label in ((0, shift.labels[0]), (-1, shift.labels[-1]))
    }
    ranges = ", ".join(f"**{n}** at {label}" for label, n in ends.items())
    return [
        f"Best across the whole range: **{robust}**, whose lowest accuracy over these priors is "
        f"{100 * worst[robust]:.1f}%; the best at the two ends: {ranges}."
    ]


def _figures(comparison: Comparison) -> list[str]:
    lines = []
    if len(comparison.per_class_recall) > 1:
        lines += ["![change in per-class recall against the baseline](recall_change.png)", ""]
    return lines + [
        "![per-class recall](per_class_recall.png)",
        "",
        "![training distribution](class_counts.png)",
        "",
        "| confusion, baseline | confusion, best |",
        "|---|---|",
        "| ![baseline](confusion_baseline.png) | ![best](confusion_best.png) |",
        "",
    ]


def _per_class(comparison: Comparison, dist: ClassDistribution) -> list[str]:
    recalls = {n: recall_array(r) for n, r in comparison.per_class_recall.items()}
    lines = [
        "| class | train images | group | " + " | ".join(recalls) + " |",
        "|---|---|---|" + "---|" * len(recalls),
    ]
    groups = dist.groups
    for i in np.argsort(-dist.counts, kind="stable"):
        cells = " | ".join(f"{100 * r[i]:.1f}" for r in recalls.values())
        name = markdown_text(dist.class_names[i])
        lines.append(f"| {name} | {int(dist.counts[i]):,} | {groups[i]} | {cells} |")
    return lines


def recall_array(values: list[float | None]) -> np.ndarray:
    """Per-class recall as floats, nan where a class has none."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


__all__ = ["comparison_markdown", "nothing_learned", "reading", "recall_array", "tied"]
