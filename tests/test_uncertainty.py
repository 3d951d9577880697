"""Intervals over seeds, over test images and for paired differences, against hand computations."""

import numpy as np
import pytest

from longtail.uncertainty import bootstrap_interval, paired_interval, seed_interval, t_quantile


def test_the_seed_interval_is_the_t_interval_by_hand():
    low, high = seed_interval([0.80, 0.82, 0.84])
    half = 4.303 * 0.02 / np.sqrt(3)  # t_{0.975, 2} = 4.303, sample std 0.02
    assert (low, high) == pytest.approx((0.82 - half, 0.82 + half))
    assert np.isnan(seed_interval([0.8])[0])


def test_the_t_table_matches_scipy():
    from scipy import stats

    for df in (1, 2, 3, 4, 9, 29, 30):
        assert t_quantile(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)
    assert t_quantile(200) == pytest.approx(1.96)


def test_paired_differences_tell_apart_what_the_seeds_alone_cannot():
    # seed by seed b is always 0.4 points below a, though both spread over a point
    a = [0.820, 0.830, 0.826]
    b = [0.816, 0.826, 0.822]
    diff, low, high = paired_interval(a, b)
    assert diff == pytest.approx(0.004) and low > 0 and high > 0
    assert seed_interval(a)[0] < np.mean(b) < seed_interval(a)[1]  # the seed intervals overlap
    with pytest.raises(ValueError, match="differ in number"):
        paired_interval(a, b[:2])


def test_the_bootstrap_over_test_images_matches_resampling_the_images():
    confusion = np.array([[80, 20], [6, 4]])  # recall 0.8 of 100 images, 0.4 of 10
    low, high = bootstrap_interval([confusion], draws=4000, seed=1)
    # the same by re-sampling each class's images with replacement
    rng = np.random.default_rng(2)
    right = [np.r_[np.ones(80), np.zeros(20)], np.r_[np.ones(4), np.zeros(6)]]
    draws = [np.mean([rng.choice(r, r.size).mean() for r in right]) for _ in range(4000)]
    ref_low, ref_high = np.percentile(draws, [2.5, 97.5])
    assert low == pytest.approx(ref_low, abs=0.015) and high == pytest.approx(ref_high, abs=0.015)
    # normal approximation: 0.6 +- 1.96 sqrt(0.8 * 0.2 / 100 + 0.4 * 0.6 / 10) / 2; the rare
    # class, whose recall moves in steps of 10 points, makes most of it
    half = 1.96 * np.sqrt(0.8 * 0.2 / 100 + 0.4 * 0.6 / 10) / 2
    assert (low, high) == pytest.approx((0.6 - half, 0.6 + half), abs=0.03)
    # two seeds average: the interval narrows
    both = bootstrap_interval([confusion, confusion], draws=4000, seed=1)
    assert both[1] - both[0] < high - low
    # under a prior that ignores the rare class only the frequent one's spread is left
    only = bootstrap_interval([confusion], prior=np.array([1.0, 0.0]), draws=4000, seed=1)
    assert only[1] - only[0] < 0.2
