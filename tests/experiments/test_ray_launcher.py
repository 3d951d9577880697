"""compare over a real Ray cluster started here on 127.0.0.1: the same numbers, and a worker
killed mid-run is re-run to the end."""

import threading
import time

import pytest

from helpers import short_config, small_embedded
from longtail.experiments.compare import run_compare
from longtail.experiments.plan import parse_row

ray = pytest.importorskip("ray", reason="install the test extras: pip install -e '.[test]'")
psutil = pytest.importorskip("psutil", reason="install the test extras: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level="ERROR",
        log_to_driver=False,
    )
    yield
    ray.shutdown()


def _kill_worker_once(watched, killed: list) -> None:
    """Kill the Ray worker process running a task, once ``watched`` (a checkpoint) appears."""
    deadline = time.time() + 120
    while time.time() < deadline and not watched.exists():
        time.sleep(0.05)
    for proc in psutil.process_iter(["cmdline"]):
        if any("ray::_task" in part for part in proc.info["cmdline"] or []):
            proc.kill()
            killed.append(proc.pid)
            return


def test_a_comparison_on_ray_survives_a_killed_worker_with_the_same_numbers(cluster, tmp_path):
    data = small_embedded(10)
    strategies = ["instance+ce", "sqrt+ce:crt"]
    config = short_config().__class__(**{**short_config().__dict__, "epochs": 4})
    local = run_compare(data, strategies, [0], config, tmp_path / "local")
    out = tmp_path / "ray"
    watched = out / "runs" / parse_row("sqrt+ce").slug / "seed0" / "checkpoint.pt"
    killed: list[int] = []
    watcher = threading.Thread(target=_kill_worker_once, args=(watched, killed))
    watcher.start()
    remote = run_compare(data, strategies, [0], config, out, launcher="ray")
    watcher.join()
    assert killed, "no Ray worker was running when the checkpoint appeared"
    assert remote.metrics == local.metrics and remote.per_class_recall == local.per_class_recall
    again = run_compare(data, strategies, [0], config, out, launcher="ray")
    assert (again.trainings, again.reused) == (0, 3)  # finished runs are never re-run
