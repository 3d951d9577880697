"""``longtail compare``: train several strategies under identical conditions and report them side by side."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from longtail._io import markdown_cell, strict_loads, write_text
from longtail._lock import folder_lock
from longtail.data.bundle import DataBundle
from longtail.metrics import HEADLINE, compare_runs
from longtail.report.plots import (
    plot_class_counts,
    plot_confusion,
    plot_per_class_recall,
    plot_recall_change,
)
from longtail.report.tables import markdown_table, print_table, rich_table, write_tables
from longtail.strategies import build_strategy, parse_strategy
from longtail.training.identity import run_identity
from longtail.training.loop import TrainConfig, TrainingDiverged, resolved_config, train


def _finished(run_dir: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """A finished (or diverged) run's record when its identity is the one asked for, so compare
    resumes; a run of another identity is left for :func:`train` to refuse."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        result = strict_loads(path.read_text())
    except ValueError:
        return None
    if result.get("identity") != identity:
        return None
    return result if "test" in result or "diverged" in result else None


def run_compare(
    data: DataBundle,
    strategies: Sequence[str],
    seeds: Sequence[int],
    base: TrainConfig,
    out: str | Path,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train every strategy with every seed (same model, epochs, split) and write the comparison:
    ``report.md``, ``results.csv``, ``results.json``, ``comparison.md``, plots, and each run's
    log, checkpoint and metrics under ``runs/STRATEGY/seedN``.

    Finished runs whose identity matches are reused; a run folder of another identity is refused
    (see :func:`~longtail.training.loop.train`). A strategy whose training diverges (non-finite
    loss) in any seed is marked "diverged" in every table, left out of the means and never called
    best. The output folder is locked for the duration."""
    with folder_lock(out):
        return _run_compare(data, strategies, seeds, base, Path(out), console or Console())


def _run_compare(
    data: DataBundle,
    strategies: Sequence[str],
    seeds: Sequence[int],
    base: TrainConfig,
    out: Path,
    console: Console,
) -> dict[str, Any]:
    if not strategies:
        raise ValueError(
            "no strategies given; pass e.g. --strategies instance+ce,class_balanced+focal"
        )
    parsed = [parse_strategy(s) for s in strategies]  # fail early on a typo
    if len({p.slug for p in parsed}) != len(parsed):
        raise ValueError(f"strategies must be distinct, got {list(strategies)}")
    if not seeds:
        raise ValueError("at least one seed is needed")
    for strategy in parsed:  # a bad parameter fails now, not after hours of other runs
        try:
            build_strategy(
                strategy,
                data.train.targets,
                data.distribution.counts,
                seed=base.seed,
                epochs=base.epochs,
                batch_size=base.batch_size,
            )
        except ValueError as err:
            raise ValueError(f"strategy {strategy.label}: {err}") from None
    dist = data.distribution
    plot_class_counts(
        dist,
        out / "class_counts.png",
        title=f"Training set: {dist.num_classes} classes, imbalance ratio {dist.imbalance_ratio:.0f}",
    )
    summaries: dict[str, list[dict[str, float]]] = {}
    recalls: dict[str, list[np.ndarray]] = {}
    confusions: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    fingerprint = data.fingerprint()
    diverged: dict[str, str] = {}
    selected: dict[str, list[int | None]] = {}
    taus: dict[str, list[float]] = {}
    started = time.perf_counter()
    total = len(parsed) * len(seeds)
    done = 0
    for strategy in parsed:
        for seed in seeds:
            done += 1
            config = resolved_config(replace(base, strategy=strategy.label, seed=seed), data)
            run_dir = out / "runs" / strategy.slug / f"seed{seed}"
            t0 = time.perf_counter()
            result = _finished(run_dir, run_identity(config, fingerprint))
            reused = result is not None
            if result is None:
                try:
                    result = train(config, data, run_dir, resume=True)
                except TrainingDiverged as err:
                    result = {"diverged": {"message": str(err)}}
            timings[strategy.label] = timings.get(strategy.label, 0.0) + time.perf_counter() - t0
            if "diverged" in result:
                diverged.setdefault(strategy.label, result["diverged"]["message"])
                console.print(
                    f"[{done}/{total}] {escape(strategy.label)} seed {seed}: [red]diverged[/red] "
                    f"({escape(result['diverged']['message'])})"
                )
                continue
            selected.setdefault(strategy.label, []).append(result.get("selected_epoch"))
            for choice in result.get("stages", []):
                if choice.get("tau") is not None:
                    taus.setdefault(strategy.label, []).append(choice["tau"])
            test = result["test"]
            summaries.setdefault(strategy.label, []).append(test["summary"])
            recalls.setdefault(strategy.label, []).append(
                np.array(
                    [np.nan if c["recall"] is None else c["recall"] for c in test["per_class"]],
                    dtype=np.float64,
                )
            )
            cm = np.array(test["confusion"])
            confusions[strategy.label] = confusions.get(strategy.label, 0) + cm
            s = test["summary"]
            console.print(
                f"[{done}/{total}] {escape(strategy.label)} seed {seed}: balanced accuracy {100 * s['balanced_accuracy']:.1f}%, "
                f"tail recall {100 * s['tail_recall']:.1f}%"
                + (" (reused)" if reused else f" ({time.perf_counter() - t0:.1f}s)")
            )
    converged = [p.label for p in parsed if p.label in summaries and p.label not in diverged]
    if not converged:
        raise TrainingDiverged(
            "every strategy diverged (non-finite loss); lower the learning rate, e.g. "
            f"--lr {base.lr / 10:g}. First message: {next(iter(diverged.values()))}",
            0,
            0,
        )
    comparison = compare_runs({n: summaries[n] for n in converged}, metrics=HEADLINE)
    comparison["strategies"] = [p.label for p in parsed]
    comparison["diverged"] = diverged
    comparison["unreadable_images"] = len(data.unreadable_images())
    comparison["selected_epochs"] = {n: selected[n] for n in converged}
    comparison["chosen_tau"] = {n: taus[n] for n in converged if n in taus}
    comparison["seeds"] = list(seeds)
    comparison["config"] = {
        k: v
        for k, v in asdict(resolved_config(base, data)).items()
        if k not in ("strategy", "seed", "progress")
    }
    comparison["data"] = data.name
    comparison["seconds"] = time.perf_counter() - started
    mean_recall = {name: np.mean(recalls[name], axis=0) for name in converged}
    comparison["classes"] = list(dist.class_names)
    comparison["class_counts"] = dist.counts.tolist()
    comparison["per_class_recall"] = {n: r.tolist() for n, r in mean_recall.items()}
    write_tables(comparison, out)
    plot_per_class_recall(mean_recall, dist, out / "per_class_recall.png")
    best = _argmax(comparison["metrics"]["balanced_accuracy"])
    baseline = comparison["baseline"]
    if len(mean_recall) > 1:
        plot_recall_change(mean_recall, baseline, dist, out / "recall_change.png")
    plot_confusion(
        confusions[baseline],
        dist.class_names,
        out / "confusion_baseline.png",
        f"{baseline} (baseline), summed over seeds",
    )
    plot_confusion(
        confusions[best],
        dist.class_names,
        out / "confusion_best.png",
        f"{best} (best balanced accuracy), summed over seeds",
    )
    write_text(out / "report.md", _report(comparison, data, best, mean_recall, timings))
    print_table(
        console,
        rich_table(
            comparison,
            title=f"{data.name}: {len(parsed)} strategies x {len(seeds)} seeds, {base.epochs} epochs, model {base.model}",
        ),
    )
    console.print(
        f"Report written to [bold]{escape(str(out))}/report.md[/bold] ({comparison['seconds']:.0f}s)"
    )
    return comparison


def _argmax(row: dict[str, dict[str, float]]) -> str | None:
    """The strategy with the largest finite mean (None when no mean is finite)."""
    finite = {n: e["mean"] for n, e in row.items() if np.isfinite(e["mean"])}
    return max(finite, key=finite.__getitem__) if finite else None


def _report(
    comparison: dict[str, Any],
    data: DataBundle,
    best: str,
    recalls: dict[str, np.ndarray],
    timings: dict[str, float],
) -> str:
    m = comparison["metrics"]
    baseline = comparison["baseline"]
    dist = data.distribution
    cfg = comparison["config"]
    best_tail = _argmax(m["tail_recall"]) or best
    lines = [
        f"# Strategy comparison on {data.name}",
        "",
        f"Training set: {dist.total:,} images in {dist.num_classes} classes, imbalance ratio {dist.imbalance_ratio:.1f} "
        f"(head / medium / tail = {', '.join(str(len(v)) for v in dist.group_indices().values())} classes by count thirds). "
        f"Model `{cfg['model']}`, {cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['optimizer']} lr {cfg['lr']}, "
        f"training augmentation `{cfg['augment']}`, "
        f"seeds {comparison['seeds']}; every number below was measured in this run on the test split.",
        "",
        "## Results",
        "",
        "Percent, mean ± std over seeds; in brackets the change against the baseline in points. "
        + (
            "Each run's tested model is its epoch with the best validation balanced accuracy "
            "(epochs chosen, by seed: "
            + "; ".join(
                f"{n} {', '.join(str(e) for e in eps)}"
                for n, eps in comparison["selected_epochs"].items()
            )
            + ")."
            if cfg.get("select_best", True)
            else "Each run's tested model is its last epoch's."
        )
        + (
            " Second stages chose tau on the validation split (by seed: "
            + "; ".join(
                f"{n} {', '.join(f'{t:g}' for t in ts)}"
                for n, ts in comparison.get("chosen_tau", {}).items()
            )
            + ")."
            if comparison.get("chosen_tau")
            else ""
        ),
        "",
        markdown_table(comparison),
        "## Reading the table",
        "",
        *(
            f"- **{name}** diverged (its loss became nan or infinite), so it has no results: {msg}"
            for name, msg in comparison["diverged"].items()
        ),
        *(
            [
                f"- {comparison['unreadable_images']} unreadable image(s) were replaced by other "
                "images of their class (listed in `bad_images.log`)."
            ]
            if comparison["unreadable_images"]
            else []
        ),
        f"- Best balanced accuracy: **{best}** ({100 * m['balanced_accuracy'][best]['mean']:.1f}%, "
        f"{m['balanced_accuracy'][best].get('delta_points', 0):+.1f} points against {baseline}).",
        f"- Best tail recall: **{best_tail}** ({100 * m['tail_recall'][best_tail]['mean']:.1f}%, "
        f"{m['tail_recall'][best_tail].get('delta_points', 0):+.1f} points); its head recall changed by "
        f"{m['head_recall'][best_tail].get('delta_points', 0):+.1f} points.",
        "",
        *(
            ["![change in per-class recall against the baseline](recall_change.png)", ""]
            if len(comparison["per_class_recall"]) > 1
            else []
        ),
        "![per-class recall](per_class_recall.png)",
        "",
        "![training distribution](class_counts.png)",
        "",
        "| confusion, baseline | confusion, best |",
        "|---|---|",
        "| ![baseline](confusion_baseline.png) | ![best](confusion_best.png) |",
        "",
        "## Per-class recall (%)",
        "",
        "| class | train images | group | " + " | ".join(recalls) + " |",
        "|---|---|---|" + "---|" * len(recalls),
    ]
    groups = dist.groups
    for i in np.argsort(-dist.counts, kind="stable"):
        cells = " | ".join(f"{100 * r[i]:.1f}" for r in recalls.values())
        name = markdown_cell(dist.class_names[i])
        lines.append(f"| {name} | {int(dist.counts[i]):,} | {groups[i]} | {cells} |")
    lines += [
        "",
        "Wall time per strategy (all seeds): "
        + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()),
        "",
    ]
    return "\n".join(lines)
