"""Bootstrap intervals of final accuracies: bounded, paired, and calibrated on a known case."""
import numpy as np

from evals.stats import bootstrap_mean, bootstrap_paired_diff, significant


def test_interval_stays_in_the_unit_interval_with_two_seeds():
    # the case a t interval with 1 degree of freedom got wrong: two seeds, a low accuracy
    C = np.zeros((2, 64))
    C[0, :6] = 1
    C[1, :16] = 1
    mean, lo, hi = bootstrap_mean(C)
    assert 0.0 <= lo <= mean <= hi <= 1.0
    assert abs(mean - 11 / 64) < 1e-12


def test_interval_covers_the_truth_at_least_at_the_nominal_rate():
    """Items of varying difficulty shared by every seed, seeds that shift accuracy a little: the
    interval covers the population accuracy at least 95% of the time (resampling both levels is
    conservative) and stays informative."""
    rng = np.random.default_rng(1)
    hits, widths, trials = 0, [], 200
    for t in range(trials):
        q = rng.beta(0.6, 1.4, size=256)  # item difficulty, population mean 0.3
        shift = rng.normal(0, 0.03, size=(3, 1))  # seed effect
        C = (rng.random((3, 256)) < np.clip(q + shift, 0, 1)).astype(float)
        _, lo, hi = bootstrap_mean(C, n_boot=500, seed=t)
        hits += lo <= 0.3 <= hi
        widths.append(hi - lo)
    assert hits / trials >= 0.93
    assert np.mean(widths) < 0.15


def test_pairing_cancels_what_is_shared():
    rng = np.random.default_rng(0)
    hard = rng.random(256) < 0.5  # item difficulty shared by both presets
    B = np.tile(hard, (3, 1)).astype(float)
    A = B.copy()
    A[:, :10] = 1.0  # A solves 10 more items, on every seed
    d, lo, hi = bootstrap_paired_diff(A, B)
    unpaired = bootstrap_mean(A)[2] - bootstrap_mean(A)[1]
    assert d > 0 and significant(lo, hi)
    assert hi - lo < unpaired / 2  # far tighter than the width of either accuracy alone


def test_no_difference_is_not_significant():
    rng = np.random.default_rng(3)
    A = (rng.random((3, 256)) < 0.4).astype(float)
    B = (rng.random((3, 256)) < 0.4).astype(float)
    d, lo, hi = bootstrap_paired_diff(A, B)
    assert lo < 0 < hi and not significant(lo, hi)


def test_difference_against_a_single_base_row():
    base = np.zeros((1, 100))
    A = np.zeros((3, 100))
    A[:, :30] = 1
    d, lo, hi = bootstrap_paired_diff(A, base)
    assert abs(d - 0.3) < 1e-12 and 0.2 < lo < 0.3 < hi < 0.4
