"""Time and peak memory to produce one epoch of indices, longtail samplers vs torch's
WeightedRandomSampler on the same weights, for N labels over 51 classes (Million-AID-like counts).

Usage: python benchmarks/samplers.py [--sizes 1e6 1e7 1e8] [--repeats 3]

Each sampler's epoch is timed consumed two ways, the same for torch and longtail: as an index tensor
(torch: the ``torch.multinomial`` call its ``__iter__`` makes; longtail: the plan, zero-copy) and as
Python ints drawn one by one from ``iter(sampler)`` (what a DataLoader does). Construction (grouping the
labels by class once) is timed separately; one untimed warm-up epoch comes first for both.
Peak memory is the growth of the process's peak RSS while the sampler is built and both epochs
run, in a fresh subprocess per (sampler, N), on top of the labels array itself.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import subprocess
import sys
import time

import numpy as np


def million_aid_like_labels(n: int, seed: int = 0) -> np.ndarray:
    """N labels over 51 classes with counts spread log-uniformly from 2,000 to 45,000 (scaled to N)."""
    rng = np.random.default_rng(seed)
    counts = np.exp(np.linspace(np.log(45_000), np.log(2_000), 51))
    counts = np.maximum(1, np.floor(counts / counts.sum() * n)).astype(np.int64)
    counts[0] += n - counts.sum()
    labels = np.repeat(np.arange(51, dtype=np.int64), counts)
    rng.shuffle(labels)
    return labels


def run_one(name: str, n: int) -> dict[str, float]:
    import torch

    from longtail.sampling import (
        ClassBalancedSampler,
        HybridSampler,
        PowerSampler,
        RepeatFactorSampler,
        WeightedSampler,
    )
    from longtail.weights import sample_weights

    labels = million_aid_like_labels(n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if name == "torch.WeightedRandomSampler":
        weights = torch.from_numpy(sample_weights(labels, "inverse"))
        sampler = torch.utils.data.WeightedRandomSampler(weights, n)
    elif name == "WeightedSampler(labels)":
        sampler = WeightedSampler(labels=labels, scheme="inverse")
    elif name == "WeightedSampler(weights)":
        sampler = WeightedSampler(sample_weights(labels, "inverse"))
    elif name == "ClassBalancedSampler":
        sampler = ClassBalancedSampler(labels)
    elif name == "PowerSampler(sqrt)":
        sampler = PowerSampler(labels, q=0.5)
    elif name == "HybridSampler":
        sampler = HybridSampler(labels)
    elif name == "RepeatFactorSampler":
        sampler = RepeatFactorSampler(labels)
    else:
        raise ValueError(name)
    t1 = time.perf_counter()

    def epoch_tensor(epoch: int) -> torch.Tensor:
        # torch: the multinomial its __iter__ runs; ours: the plan, zero-copy
        if isinstance(sampler, torch.utils.data.WeightedRandomSampler):
            return torch.multinomial(sampler.weights, sampler.num_samples, sampler.replacement)
        sampler.set_epoch(epoch)
        return torch.from_numpy(sampler.local_plan())

    epoch_len = epoch_tensor(0).numel()  # warm-up epoch, not timed (first-touch page faults)
    t1b = time.perf_counter()
    epoch_tensor(1)
    t2 = time.perf_counter()
    # another epoch consumed as a DataLoader does: Python ints from iter(sampler), one at a time
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(2)
    collections.deque(iter(sampler), maxlen=0)
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "build_s": t1 - t0,
        "tensor_s": t2 - t1b,
        "list_s": t3 - t2,
        "epoch_len": epoch_len,
        "peak_mib": (peak - base) / 1024,
    }


SAMPLERS = [
    "torch.WeightedRandomSampler",
    "WeightedSampler(labels)",
    "WeightedSampler(weights)",
    "ClassBalancedSampler",
    "PowerSampler(sqrt)",
    "HybridSampler",
    "RepeatFactorSampler",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(float(args.one[1])))))
        return
    print(
        "one epoch's indices, 'tensor': as an index tensor; 'iter': Python ints from iter(sampler), as a DataLoader takes them"
    )
    print(
        f"{'N':>12} {'sampler':28} {'build s':>8} {'tensor s':>9} {'iter s':>8} {'peak MiB':>9} {'x torch (tensor)':>17} {'x torch (iter)':>15}"
    )
    for n in (int(s) for s in args.sizes):
        ref = None
        for name in SAMPLERS:
            if name == "torch.WeightedRandomSampler" and n > 2**24:
                print(f"{n:>12,} {name:28} refuses more than 2^24 categories")
                continue
            best = None
            for _ in range(args.repeats):
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", name, str(n)],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode:
                    print(f"{n:>12,} {name:28} failed: {proc.stderr.strip().splitlines()[-1]}")
                    break
                r = json.loads(proc.stdout)
                best = r if best is None or r["tensor_s"] < best["tensor_s"] else best
            if best is None:
                continue
            if name.startswith("torch"):
                ref = best
            ratios = ("", "")
            if ref is not None and not name.startswith("torch"):
                ratios = (
                    f"{ref['tensor_s'] / best['tensor_s']:.1f}x",
                    f"{ref['list_s'] / best['list_s']:.1f}x",
                )
            print(
                f"{n:>12,} {name:28} {best['build_s']:8.2f} {best['tensor_s']:9.2f} {best['list_s']:8.2f} "
                f"{best['peak_mib']:9.0f} {ratios[0]:>17} {ratios[1]:>15}",
                flush=True,
            )


if __name__ == "__main__":
    main()
