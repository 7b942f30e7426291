"""pass@k, maj@k and confidence intervals: hand-computed values and identities."""
from __future__ import annotations

import math
import random
from math import comb

import pytest

from evals.passk import aggregate_items, item_metrics, maj_at_k, mean_ci95, pass_at_k, t_quantile_975


def test_pass_at_k_hand_values():
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the fraction correct
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # n=4, c=1, k=3: 1 - C(3,3)/C(4,3) = 1 - 1/4
    assert pass_at_k(4, 1, 3) == pytest.approx(0.75)
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 1, 8) == 1.0  # n - c < k: every k-subset holds the correct one
    assert pass_at_k(8, 8, 1) == 1.0


def test_pass_at_k_matches_binomial_formula_on_large_n():
    for n, c, k in [(200, 13, 10), (100, 50, 1), (64, 7, 16), (1000, 1, 100)]:
        exact = 1 - comb(n - c, k) / comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.8])
@pytest.mark.parametrize("n,k", [(8, 1), (8, 4), (16, 8), (10, 10)])
def test_pass_at_k_is_unbiased(p, n, k):
    """E_{c ~ Bin(n, p)}[pass@k(n, c, k)] == 1 - (1 - p)^k, exactly (Chen et al. 2021)."""
    expectation = sum(comb(n, c) * p**c * (1 - p) ** (n - c) * pass_at_k(n, c, k) for c in range(n + 1))
    assert expectation == pytest.approx(1 - (1 - p) ** k, rel=1e-9)


def test_pass_at_k_monte_carlo_and_naive_estimator_is_biased():
    rng = random.Random(0)
    p, n, k, trials = 0.2, 8, 4, 20000
    est, naive = 0.0, 0.0
    for _ in range(trials):
        draws = [rng.random() < p for _ in range(n)]
        est += pass_at_k(n, sum(draws), k)
        naive += 1 - (1 - sum(draws) / n) ** k  # plug-in estimate: biased low
    truth = 1 - (1 - p) ** k
    assert est / trials == pytest.approx(truth, abs=0.01)
    assert naive / trials < truth - 0.02


def test_pass_at_k_errors():
    with pytest.raises(ValueError, match="at least k=4"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 0)


def test_maj_at_k_votes_and_ties():
    answers = ["4", "5", "5", "4", "7"]
    correct = [True, False, False, True, False]
    assert maj_at_k(answers, correct, 1) == 1.0  # "4"
    assert maj_at_k(answers, correct, 3) == 0.0  # "5" x2 beats "4"
    # k=4: "4" x2 vs "5" x2, tie -> "4" appeared first
    assert maj_at_k(answers, correct, 4) == 1.0
    assert maj_at_k(["5", "4", "4", "5"], [False, True, True, False], 4) == 0.0  # tie -> "5" first
    # None never wins
    assert maj_at_k([None, None, "3"], [False, False, True], 3) == 1.0
    assert maj_at_k([None, None], [False, False], 2) == 0.0
    with pytest.raises(ValueError, match="at least k=3"):
        maj_at_k(["1"], [True], 3)
    with pytest.raises(ValueError):
        maj_at_k(["1", "2"], [True], 1)


def test_t_quantile_and_mean_ci95():
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile_975(10_000) == pytest.approx(1.96, abs=1e-3)
    m, h = mean_ci95([0.4, 0.6])
    # s = sqrt(0.02) = 0.1414; h = 12.706 * 0.1414 / sqrt(2) = 1.2706
    assert m == pytest.approx(0.5)
    assert h == pytest.approx(12.706 * 0.1, abs=1e-3)
    m, h = mean_ci95([1.0, 2.0, 3.0, 4.0, 5.0])
    assert m == 3.0 and h == pytest.approx(2.776 * math.sqrt(2.5 / 5), abs=1e-3)
    m, h = mean_ci95([0.3])
    assert m == 0.3 and math.isnan(h)
    m, h = mean_ci95([])
    assert math.isnan(m) and math.isnan(h)
    assert mean_ci95([1.0, float("nan"), 3.0, None])[0] == 2.0


def test_ci95_covers_the_truth_about_95_percent_of_the_time():
    rng = random.Random(1)
    hits = 0
    for _ in range(2000):
        xs = [rng.gauss(1.0, 2.0) for _ in range(4)]
        m, h = mean_ci95(xs)
        hits += abs(m - 1.0) <= h
    assert 0.93 <= hits / 2000 <= 0.97


def test_item_metrics_and_aggregate():
    m = item_metrics([True, False, False, True], ["2", "3", "3", "2"], [1, 2, 4])
    assert m["pass@1"] == pytest.approx(0.5)
    assert m["pass@2"] == pytest.approx(1 - comb(2, 2) / comb(4, 2))
    assert m["pass@4"] == 1.0
    assert m["maj@4"] == 1.0  # tie "2" vs "3", "2" first
    agg = aggregate_items([{"pass@1": 1.0}, {"pass@1": 0.0}, {"pass@1": 0.5}])
    assert agg["pass@1"][0] == pytest.approx(0.5)
    assert agg["pass@1"][1] == pytest.approx(4.303 * 0.5 / math.sqrt(3), abs=1e-3)
    assert aggregate_items([]) == {}
