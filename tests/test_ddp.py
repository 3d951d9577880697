"""A real two-process torchrun (gloo, CPU) run: ranks see disjoint shards of the same global plan."""

import json
from pathlib import Path

import numpy as np

from helpers import torchrun
from longtail.sampling import ClassBalancedSampler

HERE = Path(__file__).parent


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
    unseeded = [r["unseeded"]["seen"] for r in ranks]
    assert set(unseeded[0]).isdisjoint(unseeded[1])
    assert sorted(unseeded[0] + unseeded[1]) == list(range(540))
