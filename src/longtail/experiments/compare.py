"""``longtail compare``: train several strategies under identical conditions and report them side by side."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from longtail._lock import folder_lock
from longtail._text import console_text
from longtail.data.bundle import DataBundle
from longtail.errors import LongtailError
from longtail.experiments.comparison import Collected, Comparison, build_comparison
from longtail.experiments.execute import (
    Outcome,
    run_in_process,
    run_in_processes,
    train_commands,
)
from longtail.experiments.outputs import write_outputs
from longtail.experiments.plan import ComparisonPlan, Row, Training, parse_row, plan_comparison
from longtail.report.plots import (
    plot_class_counts,
)
from longtail.report.tables import print_comparison
from longtail.training.backbones import frozen_features
from longtail.training.loop import TrainConfig
from longtail.training.results import RunResult


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
        data = frozen_features(base, data)  # once for every strategy x seed (tune frozen)
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
    comparison = build_comparison(
        collected, parsed, seeds, base, data, time.perf_counter() - started
    )
    write_outputs(comparison, collected, dist, out)
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


__all__ = [
    "RunsFailed",
    "TrainingsReport",
    "list_runs",
    "run_compare",
]
