"""Seed-level intervals, verdicts and power: checked by simulation through the real functions.

The simulations draw fresh items and fresh seeds every replicate from a model with known variance
components (item difficulty, a seed effect per run, seed x item noise, optionally an item-specific
difference between the presets), score them 0/1 as a greedy eval does, and count how often the
default 95% interval of the paired difference excludes 0 when the true difference is 0.
"""
import math

import numpy as np
import pytest

from evals.stats import (Components, components, equivalence_power, mean_interval, minimum_detectable,
                         paired_difference, power, seeds_needed, significant, verdict)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _null_study(rng, S, I, seed_sd, noise_sd, item_diff_sd):
    """Two presets with equal expected accuracy over the item population: shared item difficulty,
    a per-run seed effect (correlated within a seed, as shared data order makes it), seed x item
    noise and an item-specific preset effect that is +d_i for one preset and -d_i for the other
    (symmetric, so the population difference is exactly 0)."""
    theta = rng.normal(-0.8, 1.5, size=I)
    d = rng.normal(0, item_diff_sd, size=I)
    shared = rng.normal(0, seed_sd, size=(S, 1))
    out = []
    for sign in (1.0, -1.0):
        own = rng.normal(0, seed_sd, size=(S, 1))
        logit = theta + d * sign + (shared + own) / math.sqrt(2) + rng.normal(0, noise_sd, size=(S, I))
        out.append((rng.random((S, I)) < _sigmoid(logit)).astype(float))
    return out


@pytest.mark.parametrize("S", [3, 5, 10])
@pytest.mark.parametrize("seed_sd,noise_sd,item_diff_sd", [(0.4, 0.3, 0.0), (0.1, 0.8, 0.0), (0.2, 0.3, 0.5)])
def test_false_positive_rate_is_nominal(S, seed_sd, noise_sd, item_diff_sd):
    """True difference 0: the default interval excludes 0 in 5% +/- 2% of studies, at 3, 5 and 10
    seeds, whether the seeds, the items' noise or item-specific differences dominate."""
    rng = np.random.default_rng(1000 * S + int(100 * seed_sd) + int(10 * item_diff_sd))
    trials, hits = 1500, 0
    for _ in range(trials):
        A, B = _null_study(rng, S, 256, seed_sd, noise_sd, item_diff_sd)
        e = paired_difference(A, B)
        hits += significant(e.lo, e.hi)
    rate = hits / trials
    assert 0.03 <= rate <= 0.07, rate


def test_seed_level_t_interval_when_items_add_nothing():
    """Without item structure the interval is the t interval over per-seed differences (df S-1)."""
    from scipy import stats

    rng = np.random.default_rng(0)
    A = rng.normal(0, 0.1, size=(4, 50)) + rng.normal(0, 0.05, size=(4, 1))
    B = np.zeros((4, 50))
    # remove any item structure exactly: every column of A - B has the same mean
    A = A - A.mean(axis=0, keepdims=True) + A.mean()
    e = paired_difference(A, B)
    per_seed = (A - B).mean(axis=1)
    half = stats.t.ppf(0.975, 3) * per_seed.std(ddof=1) / 2
    assert e.df == pytest.approx(3)
    assert e.mean == pytest.approx(per_seed.mean())
    assert (e.hi - e.lo) / 2 == pytest.approx(half)


def test_results_do_not_depend_on_any_random_state():
    rng = np.random.default_rng(4)
    A, B = _null_study(rng, 3, 256, 0.3, 0.3, 0.2)
    np.random.seed(1)
    first = paired_difference(A, B)
    np.random.seed(2)
    assert paired_difference(A, B) == first


def test_reported_power_matches_simulated_power():
    """Gaussian cells with known components and a true difference: the share of simulated studies
    whose interval excludes 0 matches :func:`power` (and TOST's share matches equivalence_power)."""
    comp = Components(seed=0.02 ** 2, item=0.05 ** 2, res=0.4 ** 2, seeds=0, items=0)
    rng = np.random.default_rng(7)
    for S, I, delta in [(5, 256, 0.03), (10, 512, 0.02), (3, 1024, 0.05)]:
        reported = power(delta, comp, S, I)
        trials, hits, eq = 1500, 0, 0
        for _ in range(trials):
            D = (delta + rng.normal(0, math.sqrt(comp.seed), (S, 1)) + rng.normal(0, math.sqrt(comp.item), (1, I))
                 + rng.normal(0, math.sqrt(comp.res), (S, I)))
            e = paired_difference(D, np.zeros((1, I)))
            hits += significant(e.lo, e.hi)
        assert abs(hits / trials - reported) < 0.05, (S, I, delta, hits / trials, reported)
        assert 0.2 < reported < 0.95  # the check has teeth: neither trivially 0 nor 1
    # equivalence: true difference 0, margin 0.03
    for S, I in [(5, 1024), (10, 1024)]:
        reported = equivalence_power(0.03, comp, S, I)
        trials, eq = 1500, 0
        for _ in range(trials):
            D = (rng.normal(0, math.sqrt(comp.seed), (S, 1)) + rng.normal(0, math.sqrt(comp.item), (1, I))
                 + rng.normal(0, math.sqrt(comp.res), (S, I)))
            e = paired_difference(D, np.zeros((1, I)))
            eq += "equivalent" in verdict(e, 0.03)
        assert abs(eq / trials - reported) < 0.05, (S, I, eq / trials, reported)


def test_components_are_recovered_from_a_large_pilot():
    rng = np.random.default_rng(3)
    S, I = 40, 2000
    D = rng.normal(0, 0.05, (S, 1)) + rng.normal(0, 0.1, (1, I)) + rng.normal(0, 0.3, (S, I))
    c = components(D)
    assert c.seed == pytest.approx(0.05 ** 2, rel=0.5)
    assert c.item == pytest.approx(0.1 ** 2, rel=0.15)
    assert c.res == pytest.approx(0.3 ** 2, rel=0.05)


def test_planning_helpers_are_monotone():
    comp = Components(seed=0.015 ** 2, item=0.02 ** 2, res=0.35 ** 2, seeds=3, items=256)
    assert power(0.02, comp, 10, 1024) > power(0.02, comp, 3, 1024) > 0.05
    n = seeds_needed(0.8, lambda c, S, I: power(0.02, c, S, I), comp, 1024)
    assert n is not None and power(0.02, comp, n, 1024) >= 0.8 > power(0.02, comp, n - 1, 1024)
    mde = minimum_detectable(comp, 10, 1024)
    assert power(mde, comp, 10, 1024) == pytest.approx(0.8, abs=1e-3)
    assert minimum_detectable(comp, 3, 256) > mde


def test_interval_stays_in_the_unit_interval_with_two_seeds():
    C = np.zeros((2, 64))
    C[0, :6] = 1
    C[1, :16] = 1
    e = mean_interval(C)
    assert 0.0 <= e.lo <= e.mean <= e.hi <= 1.0
    assert abs(e.mean - 11 / 64) < 1e-12


def test_pairing_cancels_what_is_shared():
    rng = np.random.default_rng(0)
    hard = rng.random(256) < 0.5  # item difficulty shared by both presets
    B = np.tile(hard, (3, 1)).astype(float)
    A = B.copy()
    A[:, :10] = 1.0  # A solves 10 more items, on every seed
    e = paired_difference(A, B)
    assert e.mean > 0 and significant(e.lo, e.hi)
    assert e.hi - e.lo < (mean_interval(A).hi - mean_interval(A).lo) / 2


def test_one_seed_has_no_interval():
    e = paired_difference(np.ones((1, 10)), np.zeros((1, 10)))
    assert e.mean == 1.0 and math.isnan(e.lo) and verdict(e) == "inconclusive (1 seed: no interval)"


def test_verdicts_in_plain_words():
    from evals.stats import Estimate

    def est(lo, hi, lo90, hi90):
        return Estimate((lo + hi) / 2, lo, hi, 0.01, 9, 10, 1024, lo90, hi90)

    assert verdict(est(0.01, 0.05, 0.015, 0.045), 0.02) == "better"
    assert verdict(est(-0.05, -0.01, -0.045, -0.015), 0.02) == "worse"
    assert verdict(est(-0.015, 0.012, -0.012, 0.009), 0.02) == "equivalent within ±0.02"
    assert verdict(est(0.002, 0.012, 0.003, 0.011), 0.02) == "better, within ±0.02"
    assert verdict(est(-0.026, 0.041, -0.02, 0.035), 0.02) == "inconclusive (the data allow -0.026..+0.041)"
    assert verdict(est(-0.026, 0.041, -0.02, 0.035)).startswith("inconclusive")


def test_difference_against_a_single_base_row():
    rng = np.random.default_rng(5)
    base = (rng.random((1, 200)) < 0.1).astype(float)
    A = (rng.random((3, 200)) < 0.35).astype(float)
    e = paired_difference(A, base)
    assert e.mean == pytest.approx(A.mean() - base.mean())
    assert e.lo > 0 and verdict(e, 0.02) == "better"


def test_two_seeds_that_happen_to_agree_still_have_an_interval():
    """Two seeds with the same per-seed difference (14 of 256 items each, on different items): the
    seed-to-seed spread is 0 by chance, not the uncertainty; the interval keeps the residual's."""
    A = np.zeros((2, 256))
    B = np.zeros((2, 256))
    A[0, :20], B[0, 20:26] = 1, 1
    A[1, 30:50], B[1, 60:66] = 1, 1
    e = paired_difference(A, B)
    assert e.mean == pytest.approx(14 / 256)
    assert e.hi - e.lo > 0.005 and e.lo < 14 / 256 < e.hi
