"""A real two-process torchrun (gloo, CPU) run: ranks see disjoint shards of the same global plan."""

import json

import numpy as np

from helpers import WORKERS, torchrun
from longtail.sampling import ClassBalancedSampler


def test_two_process_dataloader_ranks_are_disjoint(tmp_path):
    proc = torchrun(WORKERS / "ddp_sampler_worker.py", str(tmp_path))
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


def test_accelerate_splits_a_global_longtail_plan_between_processes(tmp_path):
    from lightning_worker import LABELS

    from helpers import torchrun
    from longtail.sampling import WeightedSampler

    proc = torchrun(WORKERS / "accelerate_worker.py", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    plans = []
    for epoch in range(3):
        sampler = WeightedSampler(labels=LABELS, scheme="inverse", seed=7, num_replicas=1)
        sampler.set_epoch(epoch)
        plan = list(sampler)
        batches = [ranks[r][str(epoch)] for r in range(2)]
        assert len(batches[0]) == len(batches[1])  # as many steps on every process
        # batches alternate between the processes: together, in order, they are the plan (the
        # last one completed from the epoch's start, accelerate's even_batches)
        together = [i for pair in zip(*batches, strict=True) for batch in pair for i in batch]
        assert together[: len(plan)] == plan
        assert together[len(plan) :] == plan[: len(together) - len(plan)]
        plans.append(plan)
    assert plans[0] != plans[1] != plans[2]  # accelerate's set_epoch reached the sampler
