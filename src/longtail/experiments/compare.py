"""``longtail compare``: train several strategies under identical conditions and report them side by side."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from longtail._io import write_text
from longtail._lock import folder_lock
from longtail._text import console_text
from longtail.data.bundle import DataBundle
from longtail.distribution import ClassDistribution
from longtail.errors import LongtailError
from longtail.experiments.execute import (
    Outcome,
    run_in_process,
    run_in_processes,
    train_commands,
)
from longtail.experiments.plan import ComparisonPlan, Row, Training, parse_row, plan_comparison
from longtail.metrics import HEADLINE, compare_runs, metric_info
from longtail.priors import SHIFT_EXPONENTS, shift_label, shifted_accuracies, target_prior
from longtail.report.comparison import comparison_markdown
from longtail.report.html import report_html
from longtail.report.plots import (
    plot_class_counts,
    plot_confusion,
    plot_per_class_recall,
    plot_prior_shift,
    plot_recall_change,
)
from longtail.report.tables import print_comparison, write_tables
from longtail.training.loop import TrainConfig, TrainingDiverged, resolved_config
from longtail.training.results import (
    Comparison,
    LevelComparison,
    PriorShift,
    RunResult,
    Stat,
    TestResult,
    Uncertainty,
)
from longtail.uncertainty import bootstrap_interval, indistinct, paired_interval, seed_interval


@dataclass
class Collected:
    """The results of a comparison's runs as they come in: per strategy, the finished runs
    (in seed order), the first divergence message, and the wall time over its seeds."""

    runs: dict[str, list[RunResult]] = field(default_factory=dict)
    diverged: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    trainings: int = 0
    reused: int = 0
    grid: int = 0
    costs: dict[str, int] = field(default_factory=dict)  # stage trainings per seed

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
    jobs: int = 1,
    launcher: str = "local",
    ray_address: str | None = None,
) -> Comparison:
    """Train every strategy with every seed (same model, epochs, split) and write the comparison:
    ``report.md``, ``results.csv``, ``results.json``, ``comparison.md``, plots, and each run's
    log, checkpoint and metrics under ``runs/STRATEGY/seedN``.

    Strategies with the same first stage and seed share one training of it
    (:mod:`longtail.experiments.plan`); with ``jobs`` > 1 independent trainings run in that many
    local processes (:mod:`longtail.experiments.execute`), with ``launcher="ray"`` as Ray tasks
    on the cluster at ``ray_address`` (:mod:`longtail.experiments.ray_launcher`), to the same
    numbers. Finished runs
    whose identity matches are reused; a run folder of another identity is refused (see
    :func:`~longtail.training.loop.train`). A strategy whose training diverges (non-finite
    loss) in any seed is marked "diverged" in every table, left out of the means and never called
    best. The output folder is locked for the duration."""
    with folder_lock(out):
        execution = Execution(jobs, launcher, ray_address)
        return _run_compare(
            data, strategies, seeds, base, Path(out), console or Console(), execution
        )


@dataclass(frozen=True)
class Execution:
    """How a comparison's trainings run: ``jobs`` local processes, or Ray tasks."""

    jobs: int = 1
    launcher: str = "local"
    ray_address: str | None = None

    @property
    def parallel(self) -> int | None:
        """How many trainings run at once (None: as many as the Ray cluster takes)."""
        return None if self.launcher == "ray" else self.jobs

    def run(self, plan: ComparisonPlan, data: DataBundle, report: Any) -> dict[Training, Outcome]:
        if self.launcher == "ray":
            from longtail.experiments.ray_launcher import run_on_ray

            return run_on_ray(plan, data, report, self.ray_address)
        if self.jobs > 1:
            return run_in_processes(plan, data, report, self.jobs)
        return run_in_process(plan, data, report)


def list_runs(
    data: DataBundle,
    strategies: Sequence[str],
    seeds: Sequence[int],
    base: TrainConfig,
    out: str | Path,
    data_options: dict[str, Any],
) -> list[str]:
    """The ``longtail train`` commands of the comparison's trainings, in dependency order, with
    their option files written under ``out/commands`` (see
    :func:`~longtail.experiments.execute.train_commands`); nothing is trained."""
    out = Path(out)
    plan = plan_comparison(data, _checked(strategies, seeds), seeds, base, out)
    return train_commands(plan, data_options, out)


class RunsFailed(RuntimeError):
    """Some trainings of a comparison failed (the others finished and are kept)."""


def _checked(strategies: Sequence[str], seeds: Sequence[int]) -> list[Row]:
    """The rows parsed (:func:`~longtail.experiments.plan.parse_row`), distinct, and at least one
    seed (building each for the data is :func:`~longtail.experiments.plan.plan_comparison`'s
    check)."""
    if not strategies:
        raise LongtailError(
            "no strategies given; pass e.g. --strategies instance+ce,class_balanced+focal"
        )
    parsed = [parse_row(s) for s in strategies]
    if len({p.slug for p in parsed}) != len(parsed):
        raise LongtailError(f"strategies must be distinct, got {list(strategies)}")
    if not seeds:
        raise LongtailError("at least one seed is needed")
    return parsed


def _run_compare(
    data: DataBundle,
    strategies: Sequence[str],
    seeds: Sequence[int],
    base: TrainConfig,
    out: Path,
    console: Console,
    execution: Execution,
) -> Comparison:
    parsed = _checked(strategies, seeds)
    plan = plan_comparison(data, parsed, seeds, base, out)  # every strategy built: fails early
    dist = data.distribution
    plot_class_counts(
        dist,
        out / "class_counts.png",
        title=f"Training set: {dist.num_classes} classes, imbalance ratio {dist.imbalance_ratio:.0f}",
    )
    started = time.perf_counter()
    progress = TrainingsReport(console, len(plan.trainings), execution.parallel)
    outcomes = execution.run(plan, data, progress.report)
    _check_failures(plan, outcomes)
    collected = _collect(plan, parsed, seeds, outcomes)
    comparison = _comparison(collected, parsed, seeds, base, data, time.perf_counter() - started)
    _write_outputs(comparison, collected, dist, out)
    title = f"{data.name}: {len(parsed)} strategies x {len(seeds)} seeds, {base.epochs} epochs, model {base.model}"
    print_comparison(console, comparison, title)
    console.print(
        f"Report written to [bold]{console_text(str(out))}/report.md[/bold] ({comparison.seconds:.0f}s)"
    )
    return comparison


def _check_failures(plan: ComparisonPlan, outcomes: dict[Training, Outcome]) -> None:
    failed = [t for t in plan.trainings if outcomes[t].result is None]
    if failed:
        names = ", ".join(t.name for t in failed)
        raise RunsFailed(
            f"{len(failed)} of {len(plan.trainings)} trainings failed ({names}); the others are "
            "kept: fix the cause and run the same command again to finish"
        )


def _collect(
    plan: ComparisonPlan,
    parsed: list[Row],
    seeds: Sequence[int],
    outcomes: dict[Training, Outcome],
) -> Collected:
    """Each strategy's runs in seed order, its wall time (with the first stage it needs), and how
    many trainings this call ran and reused."""
    collected = Collected(grid=plan.grid)
    for row in parsed:
        for seed in seeds:
            training = plan.results[(row.label, seed)]
            outcome = outcomes[training]
            seconds = outcome.seconds
            if training.first is not None:
                seconds += outcomes[training.first].seconds
            assert outcome.result is not None
            collected.add(row.label, outcome.result, seconds)
        last = plan.results[(row.label, seeds[0])]
        collected.costs[row.label] = int(last.trains) + int(last.first is not None)
    for training in plan.trainings:
        if training.trains:
            reused = outcomes[training].reused
            collected.trainings += not reused
            collected.reused += reused
    return collected


class TrainingsReport:
    """One line per finished training: runs done / running / waiting, and an estimate of the
    time left from the trainings that finished."""

    def __init__(self, console: Console, total: int, parallel: int | None) -> None:
        self.console, self.total, self.parallel = console, total, parallel
        self.done, self.seconds = 0, 0.0

    def report(self, training: Training, outcome: Outcome) -> None:
        self.done += 1
        trained = outcome.result is not None and not outcome.reused
        self.seconds += outcome.seconds if trained else 0.0
        left = self.total - self.done
        at_once = self.parallel or 1
        running = min(at_once, left)
        queue = f"{running} running, {left - running} waiting" if self.parallel else f"{left} to go"
        estimate = ""
        if self.seconds and left:
            estimate = f", about {_duration(self.seconds / self.done * left / at_once)} left"
        state = f"[{self.done}/{self.total}, {queue}{estimate}]"
        if outcome.result is None:
            text = f"[red]failed[/red]\n{console_text(outcome.error or '')}"
        else:
            text = _progress_line(outcome.result, outcome.reused, outcome.seconds)
        self.console.print(f"{console_text(state)} {console_text(training.name)}: {text}")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _progress_line(result: RunResult, reused: bool, seconds: float) -> str:
    if result.diverged is not None:
        return f"[red]diverged[/red] ({console_text(result.diverged.message)})"
    test = result.test
    assert test is not None
    return (
        f"balanced accuracy {100 * test.metric('balanced_accuracy'):.1f}%, "
        f"tail recall {100 * test.metric('tail_recall'):.1f}%"
        + (" (reused)" if reused else f" ({seconds:.1f}s)")
    )


def _comparison(
    collected: Collected,
    parsed: list[Row],
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
    table = compare_runs(summaries, metrics=HEADLINE)
    prior = target_prior(
        config["target_prior"], data.distribution.counts, data.distribution.class_names
    )
    return Comparison.from_table(
        table,
        uncertainty=uncertainties(Comparison.from_table(table), collected, prior),
        costs=collected.costs,
        recipes={row.label: dict(row.recipe) for row in parsed if row.recipe},
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
        trainings=collected.trainings,
        reused=collected.reused,
        grid=collected.grid,
        levels=level_comparisons(
            {n: [r.test for r in collected.runs[n]] for n in converged}, data.distribution
        ),
        prior_shift=prior_shift(
            {n: [r.test for r in collected.runs[n]] for n in converged}, data.distribution
        ),
        **_small_test(collected.runs[converged[0]][0].test, data.distribution),
    )


MIN_TEST_IMAGES = 5
"""A class with fewer test images than this has a recall too coarse to read alone."""


def _small_test(test: TestResult, dist: ClassDistribution) -> dict[str, Any]:
    """The classes with fewer than :data:`MIN_TEST_IMAGES` test images, and their groups."""
    support = np.array([row["support"] for row in test.per_class])
    few = np.flatnonzero(support < MIN_TEST_IMAGES)
    return {
        "small_test": {dist.class_names[i]: int(support[i]) for i in few},
        "small_test_groups": sorted({str(dist.groups[i]) for i in few}),
    }


def uncertainties(
    comparison: Comparison, collected: Collected, prior: np.ndarray | None
) -> list[Uncertainty]:
    """How sure each strategy's headline number is, and whether it is tied with the best."""
    metric = comparison.headline
    best = comparison.best(metric)
    if best is None:
        return []
    row = comparison.metrics[metric]
    out = []
    for name, stat in row.items():
        confusions = [r.test.confusion_matrix for r in collected.runs[name]]
        diff, low, high = paired_interval(row[best].values, stat.values)
        out.append(
            Uncertainty(
                name,
                stat.mean,
                *seed_interval(stat.values),
                *bootstrap_interval(confusions, prior),
                diff,
                low,
                high,
                name != best and indistinct(row[best].values, stat.values),
            )
        )
    return out


def prior_shift(tests: dict[str, list[TestResult]], dist: ClassDistribution) -> PriorShift:
    """Each strategy's accuracy under the shifted test priors of :data:`SHIFT_EXPONENTS`, from
    its per-class test recall, mean and std over seeds."""
    accuracy = {}
    for name, runs in tests.items():
        curves = np.array([shifted_accuracies(t.known_recall, dist.counts) for t in runs])
        accuracy[name] = [
            Stat(float(col.mean()), float(col.std()), len(col), values=col.tolist())
            for col in curves.T
        ]
    labels = [shift_label(t, dist.imbalance_ratio) for t in SHIFT_EXPONENTS]
    return PriorShift(list(SHIFT_EXPONENTS), labels, accuracy)


def level_comparisons(
    tests: dict[str, list[TestResult]], dist: ClassDistribution
) -> list[LevelComparison]:
    """The strategies' test results (``tests[strategy]``, one per seed) compared at each coarser
    level of ``dist``'s class tree, top first."""
    out = []
    for level in range(1, dist.num_levels):
        summaries = {n: [t.levels[str(level)].summary for t in runs] for n, runs in tests.items()}
        table = compare_runs(summaries, metrics=HEADLINE)
        classes = list(dist.at_level(level).class_names)
        out.append(LevelComparison(level, classes, Comparison.from_dict(table).metrics))
    return out


def _write_outputs(comparison: Comparison, collected: Collected, dist: Any, out: Path) -> None:
    """The tables, plots and ``report.md`` of ``comparison``."""
    write_tables(comparison, out)
    mean_recall = {n: collected.mean_recall(n) for n in comparison.per_class_recall}
    plot_per_class_recall(mean_recall, dist, out / "per_class_recall.png")
    best = comparison.best(comparison.headline)
    baseline = comparison.baseline
    if len(mean_recall) > 1:
        plot_recall_change(mean_recall, baseline, dist, out / "recall_change.png")
    if comparison.prior_shift is not None:
        plot_prior_shift(comparison.prior_shift, out / "prior_shift.png")
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
        f"{best} (best {metric_info(comparison.headline).label}), summed over seeds",
    )
    report = comparison_markdown(comparison, dist, collected.timings)
    write_text(out / "report.md", report)
    title = f"Strategy comparison on {comparison.data}"
    write_text(out / "report.html", report_html(report, out, title))


__all__ = [
    "RunsFailed",
    "level_comparisons",
    "prior_shift",
    "list_runs",
    "Collected",
    "run_compare",
]
