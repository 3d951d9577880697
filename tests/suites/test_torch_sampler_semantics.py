"""PyTorch's own sampler tests (test/test_dataloader.py: RandomSampler, WeightedRandomSampler),
ported to run against longtail's samplers, and the behaviours their users rely on: a fresh plan
every iteration, seeds that follow ``generator`` / ``torch.manual_seed``, argument checks."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from longtail.sampling import (
    BalancedBatchSampler,
    ClassBalancedSampler,
    CurriculumSampler,
    HybridSampler,
    InstanceSampler,
    PowerSampler,
    ProgressiveSampler,
    RepeatFactorSampler,
    WeightedSampler,
)
from longtail.strategies.registry import make_sampler

LABELS = np.repeat(np.arange(4), [40, 30, 20, 10])
N = LABELS.size
DATASET = TensorDataset(torch.arange(N), torch.from_numpy(LABELS))
WEIGHTS = [0.1, 0.9, 0.4, 0.7, 3.0, 0.6]

SAMPLERS = {
    "instance": lambda **kw: InstanceSampler(LABELS, **kw),
    "instance_replacement": lambda **kw: InstanceSampler(LABELS, True, 5, **kw),
    "weighted": lambda **kw: WeightedSampler(WEIGHTS, 5, True, **kw),
    "weighted_noreplace": lambda **kw: WeightedSampler(WEIGHTS, 5, False, **kw),
    "weighted_labels": lambda **kw: WeightedSampler(labels=LABELS, **kw),
    "class_balanced": lambda **kw: ClassBalancedSampler(LABELS, **kw),
    "class_balanced_cycle": lambda **kw: ClassBalancedSampler(LABELS, cycle=True, **kw),
    "sqrt": lambda **kw: PowerSampler(LABELS, **kw),
    "progressive": lambda **kw: ProgressiveSampler(LABELS, total_epochs=3, **kw),
    "hybrid": lambda **kw: HybridSampler(LABELS, **kw),
    "curriculum": lambda **kw: CurriculumSampler(LABELS, **kw),
    "repeat_factor": lambda **kw: RepeatFactorSampler(LABELS, threshold=0.5, **kw),
    "balanced_batch": lambda **kw: BalancedBatchSampler(LABELS, 2, 3, **kw),
}


# --------------------------------------------------------------- ported: test_sampler_reproducibility
@pytest.mark.parametrize("name", SAMPLERS)
def test_same_generator_seed_gives_the_same_samples(name):
    def fn():
        return SAMPLERS[name](generator=torch.Generator().manual_seed(42))

    assert list(fn()) == list(fn())


@pytest.mark.parametrize("name", SAMPLERS)
def test_without_seed_or_generator_follows_torch_manual_seed(name):
    sampler = SAMPLERS[name]()
    torch.manual_seed(0)
    l1 = list(sampler) + list(sampler)
    torch.manual_seed(0)
    l2 = list(sampler) + list(sampler)
    assert l1 == l2
    assert l1[: len(l1) // 2] != l1[len(l1) // 2 :]  # every iteration is a new draw
    torch.manual_seed(1)
    assert list(sampler) != l1[: len(l1) // 2]  # not one fixed sequence for every run

    its = (iter(sampler), iter(sampler))
    ls = ([], [])
    for idx in range(len(sampler)):
        for i in range(2):
            if idx == 0:
                torch.manual_seed(0)
            ls[i].append(next(its[i]))
    assert ls[0] == ls[1]


# --------------------------------------------------------------- epochs and generators
@pytest.mark.parametrize("name", SAMPLERS)
def test_each_iteration_moves_to_the_next_epoch_until_set_epoch_pins_it(name):
    s = SAMPLERS[name](seed=3)
    a, b, c = list(s), list(s), list(s)
    assert a != b != c
    ref = SAMPLERS[name](seed=3)
    for epoch, got in enumerate((a, b, c)):
        assert got == [list(x) if name == "balanced_batch" else x for x in ref.plan(epoch).tolist()]
    s.set_epoch(1)
    assert list(s) == b and list(s) == b  # pinned: every iteration yields epoch 1


@pytest.mark.parametrize("name", SAMPLERS)
def test_generator_is_read_at_each_iteration_not_at_construction(name):
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    s = SAMPLERS[name](generator=g)
    assert torch.equal(g.get_state(), state)  # constructing draws nothing from it
    first = list(s)
    assert not torch.equal(g.get_state(), state)
    g.manual_seed(7)  # re-seeding the caller's generator takes effect
    assert list(s) == first


def test_seed_overrides_generator_and_global_rng():
    a = ClassBalancedSampler(LABELS, seed=5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    b = ClassBalancedSampler(LABELS, seed=5)
    assert list(a) == list(b)


# --------------------------------------------------------------- ported: test_random_sampler
def _stat(sampler):
    counts = Counter(sampler)
    repeated = sum(v > 1 for v in counts.values())
    return repeated, min(counts), max(counts), sum(counts.values())


def test_random_sampler_port():
    torch.manual_seed(0)
    n = N + 1  # at least one sample drawn twice
    repeated, low, high, total = _stat(InstanceSampler(LABELS, replacement=True, num_samples=n))
    assert repeated > 0 and low >= 0 and high < N and total == n
    assert _stat(InstanceSampler(LABELS)) == (0, 0, N - 1, N)
    assert _stat(InstanceSampler(LABELS, num_samples=2 * N)) == (N, 0, N - 1, 2 * N)
    repeated, low, high, total = _stat(InstanceSampler(LABELS, num_samples=N - 1))
    assert repeated == 0 and low >= 0 and high < N and total == N - 1
    assert _stat(InstanceSampler(LABELS, num_samples=N + 1)) == (1, 0, N - 1, N + 1)
    with pytest.raises(
        TypeError, match="replacement should be a boolean value, but got replacement=0"
    ):
        InstanceSampler(LABELS, replacement=0)
    with pytest.raises(ValueError, match="num_samples"):
        InstanceSampler(LABELS, num_samples=0)


@pytest.mark.parametrize("replacement", [True, False])
def test_random_sampler_len_port(replacement):
    num_samples = N + 5
    sampler = InstanceSampler(LABELS, replacement=replacement, num_samples=num_samples, seed=0)
    assert len(sampler) == num_samples == sum(1 for _ in sampler)
    assert len(DataLoader(DATASET, batch_size=1, sampler=sampler)) == num_samples
    assert len(DataLoader(DATASET, batch_size=6, sampler=sampler)) == math.ceil(num_samples / 6)


def test_weighted_sampler_len_and_dataloader_port():
    s = WeightedSampler(WEIGHTS, 11, seed=0)
    assert len(s) == 11 == sum(1 for _ in s)
    assert len(DataLoader(TensorDataset(torch.arange(6)), batch_size=4, sampler=s)) == 3


# --------------------------------------------------------------- argument checks, as torch's
@pytest.mark.parametrize("bad", ["False", "True", 0, 1, None])
def test_weighted_sampler_replacement_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="replacement should be a boolean value"):
        WeightedSampler(WEIGHTS, 3, replacement=bad)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_num_samples_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="num_samples"):
        WeightedSampler(WEIGHTS, bad)


def test_weights_must_be_one_dimensional():
    with pytest.raises(ValueError, match="1d sequence"):
        WeightedSampler([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("bad", ["0", 1.5, True])
def test_seed_must_be_an_integer(bad):
    with pytest.raises(ValueError, match="seed"):
        ClassBalancedSampler(LABELS, seed=bad)


# --------------------------------------------------------------- weights are live, as torch's
def test_assigning_weights_takes_effect():
    s = WeightedSampler([1.0, 1.0, 1.0], 300, seed=0)
    s.weights = [0.0, 0.0, 1.0]
    assert set(s) == {2}
    assert s.weights.dtype == torch.float64


def test_editing_weights_in_place_takes_effect_at_the_next_iteration():
    w = torch.ones(4, dtype=torch.float64)
    s = WeightedSampler(w, 400, seed=0)
    assert set(s) == {0, 1, 2, 3}
    w[:3] = 0.0  # the sampler shares this tensor, as WeightedRandomSampler does
    assert set(s) == {3}
    s.weights[3] = -1.0
    with pytest.raises(ValueError, match=">= 0"):
        list(s)


def test_label_derived_weights_are_read_only():
    s = WeightedSampler(labels=LABELS, seed=0)
    with pytest.raises(ValueError, match="read-only"):
        s.weights[0] = 5.0


def test_scheme_parameters_that_the_scheme_ignores_are_refused():
    with pytest.raises(ValueError, match="alpha=500.*ignored.*smooth_inverse"):
        WeightedSampler(labels=LABELS, scheme="inverse", scheme_kwargs={"alpha": 500})
    with pytest.raises(ValueError, match="number"):
        WeightedSampler(labels=LABELS, scheme="smooth_inverse", scheme_kwargs={"alpha": "abc"})
    with pytest.raises(ValueError, match="ignored"):
        make_sampler("weighted", LABELS, alpha="abc")


# --------------------------------------------------------------- classes without samples
def test_num_classes_counts_trailing_empty_classes():
    s = CurriculumSampler(LABELS, num_classes=6, seed=0)
    assert s.groups.num_classes == 6
    s.update([0.5, 0.5, 0.5, 0.5, np.nan, np.nan])  # one value per class, empty ones unmeasured
    assert set(LABELS[list(s)]) == {0, 1, 2, 3}


def test_curriculum_class_without_validation_images_keeps_its_weight():
    s = CurriculumSampler(LABELS, seed=0, max_ratio=100)
    before = s.current_weights.copy()
    s.update([0.2, 0.8, np.nan, 0.5])
    w = s.current_weights
    a = 1 / (np.array([0.2, 0.8, 0.5]) + 0.05)
    # the unmeasured class takes the mean adjustment of the measured ones: not the largest up-weight
    assert w[2] / before[2] == pytest.approx(a.mean())
    assert w[2] / before[2] < w[0] / before[0]
    s.update([0.4, 0.8, np.nan, 0.5])  # still unmeasured: unchanged measured classes move
    assert s.performance[2] != s.performance[2]  # nan kept
    s.update([0.4, 0.8, 0.9, 0.5])
    assert s.performance[2] == 0.9
    s.update([0.4, 0.8, np.nan, 0.5])
    assert s.performance[2] == 0.9  # keeps its last measurement
