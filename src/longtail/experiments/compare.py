"""``longtail compare``: train several strategies under identical conditions and report them side by side."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from longtail.data.bundle import DataBundle
from longtail.experiments.strategies import parse_strategy
from longtail.metrics import HEADLINE, compare_runs
from longtail.report.plots import plot_class_counts, plot_confusion, plot_per_class_recall
from longtail.report.tables import markdown_table, rich_table, write_tables
from longtail.training.loop import TrainConfig, train


def _finished(run_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    """A finished run's result, if it exists with the same configuration (so compare resumes)."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if result.get("config") == asdict(config) and "test" in result else None


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
    log, checkpoint and metrics under ``runs/STRATEGY/seedN``. Finished runs are reused."""
    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parsed = [parse_strategy(s) for s in strategies]  # fail early on a typo
    if len({p.slug for p in parsed}) != len(parsed):
        raise ValueError(f"strategies must be distinct, got {list(strategies)}")
    if not seeds:
        raise ValueError("at least one seed is needed")
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
    started = time.perf_counter()
    total = len(parsed) * len(seeds)
    done = 0
    for strategy in parsed:
        for seed in seeds:
            done += 1
            config = replace(base, strategy=strategy.label, seed=seed)
            run_dir = out / "runs" / strategy.slug / f"seed{seed}"
            t0 = time.perf_counter()
            result = _finished(run_dir, config)
            reused = result is not None
            if result is None:
                result = train(config, data, run_dir, resume=True)
            test = result["test"]
            summaries.setdefault(strategy.label, []).append(test["summary"])
            recalls.setdefault(strategy.label, []).append(
                np.array([c["recall"] for c in test["per_class"]])
            )
            cm = np.array(test["confusion"])
            confusions[strategy.label] = confusions.get(strategy.label, 0) + cm
            timings[strategy.label] = timings.get(strategy.label, 0.0) + time.perf_counter() - t0
            s = test["summary"]
            console.print(
                f"[{done}/{total}] {escape(strategy.label)} seed {seed}: balanced accuracy {100 * s['balanced_accuracy']:.1f}%, "
                f"tail recall {100 * s['tail_recall']:.1f}%"
                + (" (reused)" if reused else f" ({time.perf_counter() - t0:.1f}s)")
            )
    comparison = compare_runs(summaries, metrics=HEADLINE)
    comparison["seeds"] = list(seeds)
    comparison["config"] = {
        k: v for k, v in asdict(base).items() if k not in ("strategy", "seed", "progress")
    }
    comparison["data"] = data.name
    comparison["seconds"] = time.perf_counter() - started
    write_tables(comparison, out)
    mean_recall = {name: np.mean(r, axis=0) for name, r in recalls.items()}
    plot_per_class_recall(mean_recall, dist, out / "per_class_recall.png")
    best = max(summaries, key=lambda n: comparison["metrics"]["balanced_accuracy"][n]["mean"])
    baseline = comparison["baseline"]
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
    (out / "report.md").write_text(_report(comparison, data, best, mean_recall, timings))
    console.print(
        rich_table(
            comparison,
            title=f"{data.name}: {len(parsed)} strategies x {len(seeds)} seeds, {base.epochs} epochs, model {base.model}",
        )
    )
    console.print(f"Report written to [bold]{out}/report.md[/bold] ({comparison['seconds']:.0f}s)")
    return comparison


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
    best_tail = max(m["tail_recall"], key=lambda n: m["tail_recall"][n]["mean"])
    lines = [
        f"# Strategy comparison on {data.name}",
        "",
        f"Training set: {dist.total:,} images in {dist.num_classes} classes, imbalance ratio {dist.imbalance_ratio:.1f} "
        f"(head / medium / tail = {', '.join(str(len(v)) for v in dist.group_indices().values())} classes by count thirds). "
        f"Model `{cfg['model']}`, {cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['optimizer']} lr {cfg['lr']}, "
        f"seeds {comparison['seeds']}; every number below was measured in this run on the test split.",
        "",
        "## Results",
        "",
        "Percent, mean ± std over seeds; in brackets the change against the baseline in points.",
        "",
        markdown_table(comparison),
        "## Reading the table",
        "",
        f"- Best balanced accuracy: **{best}** ({100 * m['balanced_accuracy'][best]['mean']:.1f}%, "
        f"{m['balanced_accuracy'][best].get('delta_points', 0):+.1f} points against {baseline}).",
        f"- Best tail recall: **{best_tail}** ({100 * m['tail_recall'][best_tail]['mean']:.1f}%, "
        f"{m['tail_recall'][best_tail].get('delta_points', 0):+.1f} points); its head recall changed by "
        f"{m['head_recall'][best_tail].get('delta_points', 0):+.1f} points.",
        "",
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
        lines.append(f"| {dist.class_names[i]} | {int(dist.counts[i]):,} | {groups[i]} | {cells} |")
    lines += [
        "",
        "Wall time per strategy (all seeds): "
        + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()),
        "",
    ]
    return "\n".join(lines)
