"""The trainings of a comparison as Ray tasks, on a local Ray instance or a cluster.

Each training is one task with its resource request (a GPU where the cluster has GPUs, else the
CPUs of one training), submitted once its first stage has finished, and writing into the same
run folders as every other executor (on a cluster, the output folder lies on shared storage). A
task lost with its worker or node is re-run by Ray (``max_retries``); the re-run resumes the
run's checkpoint, and a finished run is never trained again (its identity is found in its
folder). Needs the ``ray`` extra: ``pip install 'longtail[ray]'``.
"""

from __future__ import annotations

from typing import Any

import torch

from longtail.data.bundle import DataBundle
from longtail.errors import LongtailError
from longtail.experiments.execute import Outcome, Report, failure_text, run_training
from longtail.experiments.plan import ComparisonPlan, Training
from longtail.training.results import RunResult
from longtail.training.runtime import training_threads

RETRIES = 3
"""How many times Ray re-runs a task whose worker or node was lost."""


def _task(training: Training, first: RunResult | None, data: DataBundle, threads: int) -> Outcome:
    torch.set_num_threads(threads)
    return run_training(training, data, first)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise LongtailError("--launcher ray needs Ray: pip install 'longtail[ray]'") from None
    return ray


def run_on_ray(
    plan: ComparisonPlan, data: DataBundle, report: Report, address: str | None = None
) -> dict[Training, Outcome]:
    """Run ``plan``'s trainings as Ray tasks on the cluster at ``address`` (None: a Ray instance
    already started in this process, else a local one); each starts once its first stage has
    finished."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level="ERROR")
    threads = training_threads()
    gpus = ray.cluster_resources().get("GPU", 0)
    resources = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": threads}
    task = ray.remote(max_retries=RETRIES, **resources)(_task)
    data_ref = ray.put(data)
    outcomes: dict[Training, Outcome] = {}
    waiting, running = list(plan.trainings), {}
    while waiting or running:
        for training in [t for t in waiting if t.first is None or t.first in outcomes]:
            waiting.remove(training)
            first = None if training.first is None else outcomes[training.first].result
            if training.first is not None and first is None:
                outcomes[training] = Outcome(None, False, 0.0, "its first stage failed")
                report(training, outcomes[training])
                continue
            running[task.remote(training, first, data_ref, threads)] = training
        if not running:
            continue
        done, _ = ray.wait(list(running), num_returns=1)
        for ref in done:
            training = running.pop(ref)
            outcomes[training] = outcome = _result(ray, ref)
            report(training, outcome)
    return outcomes


def _result(ray: Any, ref: Any) -> Outcome:
    try:
        return ray.get(ref)
    except Exception as err:  # noqa: BLE001 - the task failed (after its retries): the others go on
        cause = getattr(err, "cause", None)  # a RayTaskError's own exception
        return Outcome(None, False, 0.0, failure_text(cause if cause is not None else err))


__all__ = ["RETRIES", "run_on_ray"]
