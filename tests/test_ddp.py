"""A real two-process torchrun (gloo, CPU) run: ranks see disjoint shards of the same global plan."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from longtail.sampling import ClassBalancedSampler

HERE = Path(__file__).parent


def torchrun(script: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_process_dataloader_ranks_are_disjoint(tmp_path):
    proc = torchrun(HERE / "ddp_sampler_worker.py", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    inst = [r["instance"]["seen"] for r in ranks]
    assert ranks[0]["instance"]["replicas"] == 2 and ranks[1]["instance"]["rank"] == 1
    assert len(inst[0]) == len(inst[1]) == 270
    assert set(inst[0]).isdisjoint(inst[1]) and sorted(inst[0] + inst[1]) == list(range(540))
    labels = np.repeat(np.arange(4), [400, 100, 30, 10])
    plan = ClassBalancedSampler(labels, seed=5)
    plan.set_epoch(1)
    expected = plan.plan(1)
    cb = [r["class_balanced"]["seen"] for r in ranks]
    assert cb[0] == expected[0::2].tolist() and cb[1] == expected[1::2].tolist()
