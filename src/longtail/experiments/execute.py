"""Executors of a comparison's trainings: in this process, or over local processes (one job per
device, torch's thread count set per job). Every executor writes the same run folders and gives
the same numbers: a run's identity excludes how it is executed.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from longtail._io import output_folder, write_json
from longtail.data.bundle import DataBundle
from longtail.data.index import available_cpus
from longtail.errors import LongtailError
from longtail.experiments.plan import ComparisonPlan, Training
from longtail.training.loop import TrainingDiverged, train
from longtail.training.results import Divergence, RunResult
from longtail.training.runtime import CPU_JOBS, training_threads


@dataclass
class Outcome:
    """What became of one training: its result (None when it failed), whether a finished run
    was taken as it was, its wall time, and the end of its traceback when it failed."""

    result: RunResult | None
    reused: bool
    seconds: float
    error: str | None = None


Report = Callable[[Training, Outcome], None]
"""Called as each training ends (in the order they end)."""


def finished(run_dir: Path, identity: dict[str, Any], levels: int = 1) -> RunResult | None:
    """A finished (or diverged) run's result when its identity is the one asked for, so compare
    resumes; a run of another identity is left for :func:`train` to refuse, and a run tested
    without the coarser levels of a ``levels``-level class tree (by an older longtail) is tested
    again from its checkpoint."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        result = RunResult.load(path)
    except ValueError:
        return None
    if result.identity != identity:
        return None
    if result.test is not None and len(result.test.levels) < levels - 1:
        return None
    return result if result.test is not None or result.diverged is not None else None


def run_training(training: Training, data: DataBundle, first: RunResult | None) -> Outcome:
    """Run ``training`` (or take its finished run); ``first`` is its first stage's result."""
    t0 = time.perf_counter()
    result = finished(training.run_dir, training.identity, data.distribution.num_levels)
    if result is not None:
        return Outcome(result, True, time.perf_counter() - t0)
    config = asdict(training.config)
    if first is not None and first.diverged is not None:  # never trained on a broken model
        message = f"its first stage diverged: {first.diverged.message}"
        return Outcome(
            RunResult(training.identity, config, diverged=Divergence(message)), False, 0.0
        )
    try:
        start = None if training.first is None else training.first.run_dir
        result = train(training.config, data, training.run_dir, resume=True, first_stage=start)
    except TrainingDiverged as err:
        result = RunResult(training.identity, config, diverged=err.divergence)
    return Outcome(result, False, time.perf_counter() - t0)


def run_in_process(
    plan: ComparisonPlan, data: DataBundle, report: Report
) -> dict[Training, Outcome]:
    """Every training of ``plan`` in turn, in this process; a failure stops the comparison."""
    outcomes: dict[Training, Outcome] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(training_threads())
    try:
        for training in plan.trainings:
            first = None if training.first is None else outcomes[training.first].result
            outcomes[training] = outcome = run_training(training, data, first)
            report(training, outcome)
    finally:
        torch.set_num_threads(threads)
    return outcomes


# --- local processes ----------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _start_worker(data: DataBundle, threads: int, devices: Any) -> None:
    torch.set_num_threads(threads)
    _WORKER["data"], _WORKER["device"] = data, devices.get()


def _worker_training(training: Training, first: RunResult | None) -> Outcome:
    device = _WORKER["device"]
    if device is not None:
        training = replace(training, config=replace(training.config, device=device))
    try:
        return run_training(training, _WORKER["data"], first)
    except Exception as err:  # noqa: BLE001 - reported with the training; the others go on
        return Outcome(None, False, 0.0, failure_text(err))


def failure_text(err: BaseException) -> str:
    """How a failed training is reported: a user error's one line, any other exception's whole
    traceback (it is a bug, and the traceback is what a report of it needs)."""
    if isinstance(err, LongtailError):
        return " ".join(str(err).split())
    return "".join(traceback.format_exception(err)).strip() + "\n(a bug: please report it)"


def job_devices(jobs: int) -> list[str | None]:
    """The device of each of ``jobs`` local jobs: the visible GPUs in turn, else the CPU."""
    gpus = torch.cuda.device_count()
    return [f"cuda:{k % gpus}" if gpus else None for k in range(jobs)]


def auto_jobs() -> int:
    """``--jobs auto``: one job per visible GPU; on a CPU, up to 4 jobs sharing the cores."""
    return torch.cuda.device_count() or max(1, min(CPU_JOBS, available_cpus()))


def run_in_processes(
    plan: ComparisonPlan, data: DataBundle, report: Report, jobs: int
) -> dict[Training, Outcome]:
    """The trainings of ``plan`` over ``jobs`` local processes, each pinned to its device with
    torch's thread count set (:func:`training_threads`); a training starts once its first stage
    has finished. A failing training is reported and the others go on."""
    threads = training_threads()
    context = multiprocessing.get_context("spawn")
    devices = context.SimpleQueue()
    for device in job_devices(jobs):
        devices.put(device)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    outcomes: dict[Training, Outcome] = {}
    waiting = list(plan.trainings)
    running: dict[Future, Training] = {}
    with ProcessPoolExecutor(jobs, context, _start_worker, (data, threads, devices)) as pool:
        while waiting or running:
            for training in [t for t in waiting if _ready(t, outcomes)]:
                waiting.remove(training)
                first = None if training.first is None else outcomes[training.first].result
                running[pool.submit(_worker_training, training, first)] = training
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                training = running.pop(future)
                outcomes[training] = outcome = future.result()
                report(training, outcome)
            for training in [t for t in waiting if _blocked(t, outcomes)]:
                waiting.remove(training)
                outcomes[training] = outcome = Outcome(None, False, 0.0, "its first stage failed")
                report(training, outcome)
    return outcomes


def _ready(training: Training, outcomes: dict[Training, Outcome]) -> bool:
    return training.first is None or training.first in outcomes


def _blocked(training: Training, outcomes: dict[Training, Outcome]) -> bool:
    """Whether ``training``'s first stage failed (it cannot run, and is left out)."""
    first = training.first
    return first is not None and first in outcomes and outcomes[first].result is None


__all__ = [
    "Outcome",
    "auto_jobs",
    "failure_text",
    "finished",
    "job_devices",
    "run_in_process",
    "run_in_processes",
    "run_training",
    "train_commands",
]


# --- any other scheduler --------------------------------------------------------------------


def train_commands(plan: ComparisonPlan, data_options: dict[str, Any], out: Path) -> list[str]:
    """One self-contained ``longtail train --config FILE --out DIR --resume`` command per
    training of ``plan``, in dependency order (a first stage before what follows it); the option
    files are written under ``out/commands``. ``data_options`` are the command line's data
    options (``data``, ``level``, ...). Run them anywhere that sees the same folders, in any
    order that respects the dependencies; ``compare`` run afterwards collects them."""
    from longtail.training.config import option_names

    folder = output_folder(out, out / "commands")
    lines = []
    for k, training in enumerate(plan.trainings, start=1):
        config = asdict(training.config)
        options = {"strategy": training.config.strategy, "seed": training.config.seed}
        for name, (option, negated) in option_names(type(training.config)).items():
            if name not in ("device", "num_workers") and config[name] is not None:
                options[option] = (not config[name]) if negated else config[name]
        options.update({k: v for k, v in data_options.items() if v not in (None, False)})
        if training.first is not None:
            options["first_stage"] = str(training.first.run_dir)
        path = folder / f"{k:04d}-{training.run_dir.parent.name}-seed{training.config.seed}.json"
        write_json(path, options)
        lines.append(
            f"longtail train --config {_quoted(path)} --out {_quoted(training.run_dir)} --resume"
        )
    return lines


def _quoted(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
