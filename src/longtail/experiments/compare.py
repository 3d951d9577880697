"""``longtail compare``: train several strategies under identical conditions and report them side by side."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from longtail._io import write_text
from longtail._lock import folder_lock
from longtail.data.bundle import DataBundle
from longtail.metrics import HEADLINE, compare_runs
from longtail.report.comparison import comparison_markdown
from longtail.report.plots import (
    plot_class_counts,
    plot_confusion,
    plot_per_class_recall,
    plot_recall_change,
)
from longtail.report.tables import print_table, rich_table, write_tables
from longtail.strategies import Strategy, build_strategy, parse_strategy
from longtail.training.identity import run_identity
from longtail.training.loop import TrainConfig, TrainingDiverged, resolved_config, train
from longtail.training.results import Comparison, RunResult


def _finished(run_dir: Path, identity: dict[str, Any]) -> RunResult | None:
    """A finished (or diverged) run's result when its identity is the one asked for, so compare
    resumes; a run of another identity is left for :func:`train` to refuse."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        result = RunResult.load(path)
    except ValueError:
        return None
    if result.identity != identity:
        return None
    return result if result.test is not None or result.diverged is not None else None


@dataclass
class Collected:
    """The results of a comparison's runs as they come in: per strategy, the finished runs
    (in seed order), the first divergence message, and the wall time over its seeds."""

    runs: dict[str, list[RunResult]] = field(default_factory=dict)
    diverged: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, label: str, result: RunResult, seconds: float) -> None:
        self.timings[label] = self.timings.get(label, 0.0) + seconds
        if result.diverged is not None:
            self.diverged.setdefault(label, result.diverged.message)
        else:
            self.runs.setdefault(label, []).append(result)

    def converged(self, labels: list[str]) -> list[str]:
        return [n for n in labels if n in self.runs and n not in self.diverged]

    def mean_recall(self, label: str) -> np.ndarray:
        return np.mean([r.test.recall for r in self.runs[label]], axis=0)

    def confusion(self, label: str) -> np.ndarray:
        return sum(r.test.confusion_matrix for r in self.runs[label])


def run_compare(
    data: DataBundle,
    strategies: Sequence[str],
    seeds: Sequence[int],
    base: TrainConfig,
    out: str | Path,
    console: Console | None = None,
) -> Comparison:
    """Train every strategy with every seed (same model, epochs, split) and write the comparison:
    ``report.md``, ``results.csv``, ``results.json``, ``comparison.md``, plots, and each run's
    log, checkpoint and metrics under ``runs/STRATEGY/seedN``.

    Finished runs whose identity matches are reused; a run folder of another identity is refused
    (see :func:`~longtail.training.loop.train`). A strategy whose training diverges (non-finite
    loss) in any seed is marked "diverged" in every table, left out of the means and never called
    best. The output folder is locked for the duration."""
    with folder_lock(out):
        return _run_compare(data, strategies, seeds, base, Path(out), console or Console())


def _checked(
    data: DataBundle, strategies: Sequence[str], seeds: Sequence[int], base: TrainConfig
) -> list[Strategy]:
    """The strategies parsed and built once, so that a typo or a bad parameter fails now, not
    after hours of other runs."""
    if not strategies:
        raise ValueError(
            "no strategies given; pass e.g. --strategies instance+ce,class_balanced+focal"
        )
    parsed = [parse_strategy(s) for s in strategies]
    if len({p.slug for p in parsed}) != len(parsed):
        raise ValueError(f"strategies must be distinct, got {list(strategies)}")
    if not seeds:
        raise ValueError("at least one seed is needed")
    for strategy in parsed:
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
    return parsed


def _run_compare(
    data: DataBundle,
    strategies: Sequence[str],
    seeds: Sequence[int],
    base: TrainConfig,
    out: Path,
    console: Console,
) -> Comparison:
    parsed = _checked(data, strategies, seeds, base)
    dist = data.distribution
    plot_class_counts(
        dist,
        out / "class_counts.png",
        title=f"Training set: {dist.num_classes} classes, imbalance ratio {dist.imbalance_ratio:.0f}",
    )
    started = time.perf_counter()
    collected = Collected()
    total = len(parsed) * len(seeds)
    for done, (strategy, seed) in enumerate(((st, sd) for st in parsed for sd in seeds), start=1):
        t0 = time.perf_counter()
        result, reused = _run_one(data, base, strategy, seed, out)
        collected.add(strategy.label, result, time.perf_counter() - t0)
        line = _progress_line(result, reused, time.perf_counter() - t0)
        console.print(f"[{done}/{total}] {escape(strategy.label)} seed {seed}: {line}")
    comparison = _comparison(collected, parsed, seeds, base, data, time.perf_counter() - started)
    _write_outputs(comparison, collected, dist, out)
    print_table(
        console,
        rich_table(
            comparison,
            title=f"{data.name}: {len(parsed)} strategies x {len(seeds)} seeds, {base.epochs} epochs, model {base.model}",
        ),
    )
    console.print(
        f"Report written to [bold]{escape(str(out))}/report.md[/bold] ({comparison.seconds:.0f}s)"
    )
    return comparison


def _run_one(
    data: DataBundle, base: TrainConfig, strategy: Strategy, seed: int, out: Path
) -> tuple[RunResult, bool]:
    """(the run of ``strategy`` with ``seed``, whether it was reused as it was)."""
    config = resolved_config(replace(base, strategy=strategy.label, seed=seed), data)
    run_dir = out / "runs" / strategy.slug / f"seed{seed}"
    identity = run_identity(config, data.fingerprint())
    result = _finished(run_dir, identity)
    if result is not None:
        return result, True
    try:
        return train(config, data, run_dir, resume=True), False
    except TrainingDiverged as err:
        return RunResult(identity, asdict(config), diverged=err.divergence), False


def _progress_line(result: RunResult, reused: bool, seconds: float) -> str:
    if result.diverged is not None:
        return f"[red]diverged[/red] ({escape(result.diverged.message)})"
    test = result.test
    assert test is not None
    return (
        f"balanced accuracy {100 * test.metric('balanced_accuracy'):.1f}%, "
        f"tail recall {100 * test.metric('tail_recall'):.1f}%"
        + (" (reused)" if reused else f" ({seconds:.1f}s)")
    )


def _comparison(
    collected: Collected,
    parsed: list[Strategy],
    seeds: Sequence[int],
    base: TrainConfig,
    data: DataBundle,
    seconds: float,
) -> Comparison:
    labels = [p.label for p in parsed]
    converged = collected.converged(labels)
    if not converged:
        raise TrainingDiverged(
            "every strategy diverged (non-finite loss); lower the learning rate, e.g. "
            f"--lr {base.lr / 10:g}. First message: {next(iter(collected.diverged.values()))}",
            0,
            0,
        )
    summaries = {n: [r.test.summary for r in collected.runs[n]] for n in converged}
    config = asdict(resolved_config(base, data))
    return Comparison.from_table(
        compare_runs(summaries, metrics=HEADLINE),
        strategies=labels,
        diverged=collected.diverged,
        unreadable_images=len(data.unreadable_images()),
        selected_epochs={n: [r.selected_epoch for r in collected.runs[n]] for n in converged},
        chosen_tau={
            n: taus
            for n in converged
            if (taus := [t for r in collected.runs[n] for t in r.chosen_taus])
        },
        seeds=list(seeds),
        config={k: v for k, v in config.items() if k not in ("strategy", "seed", "progress")},
        data=data.name,
        seconds=seconds,
        classes=list(data.distribution.class_names),
        class_counts=data.distribution.counts.tolist(),
        per_class_recall={n: collected.mean_recall(n).tolist() for n in converged},
    )


def _write_outputs(comparison: Comparison, collected: Collected, dist: Any, out: Path) -> None:
    """The tables, plots and ``report.md`` of ``comparison``."""
    write_tables(comparison, out)
    mean_recall = {n: collected.mean_recall(n) for n in comparison.per_class_recall}
    plot_per_class_recall(mean_recall, dist, out / "per_class_recall.png")
    best = comparison.best("balanced_accuracy")
    baseline = comparison.baseline
    if len(mean_recall) > 1:
        plot_recall_change(mean_recall, baseline, dist, out / "recall_change.png")
    plot_confusion(
        collected.confusion(baseline),
        dist.class_names,
        out / "confusion_baseline.png",
        f"{baseline} (baseline), summed over seeds",
    )
    plot_confusion(
        collected.confusion(best),
        dist.class_names,
        out / "confusion_best.png",
        f"{best} (best balanced accuracy), summed over seeds",
    )
    write_text(out / "report.md", comparison_markdown(comparison, dist, collected.timings))


__all__ = [
    "Collected",
    "run_compare",
]
