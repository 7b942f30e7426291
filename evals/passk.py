"""Sample-based accuracy estimators: pass@k, maj@k, and a mean with a 95% confidence interval.

All functions are pure (no I/O, no models) and work on plain Python numbers.

- pass@k  (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1):
  with n samples of which c are correct, the unbiased estimate of "at least one of k draws is
  correct" is  1 - C(n-c, k) / C(n, k).
- maj@k   (self-consistency, Wang et al. 2023): the majority answer among the first k samples
  is graded.
- mean_ci95: mean over seeds / items with a Student-t 95% interval.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 95% Student-t quantiles t_{0.975, df}. Beyond the table the next smaller tabulated df
# is used (slightly conservative); beyond df=120 the normal quantile 1.96.
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
    18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
    26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct (Chen et al. 2021, eq. 1).

        pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k / i)

    The product form avoids the huge binomials. ``E[pass_at_k(n, C, k)] = 1 - (1-p)^k`` when
    ``C ~ Binomial(n, p)``. Raises ``ValueError`` when ``k > n`` (the estimate needs k draws).
    """
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError(f"pass_at_k expects ints, got n={n!r} c={c!r} k={k!r}")
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got k={k}")
    if n < k:
        raise ValueError(f"pass@{k} needs at least k={k} samples per item, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"correct count c={c} must be in [0, n={n}]")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """Majority vote over the first ``k`` samples: 1.0 if the most frequent answer is correct.

    ``answers[i]`` is the verifier's extracted (normalised) answer of sample i, ``None`` when no
    answer could be extracted; ``None`` never wins a vote. Ties are broken deterministically in
    favour of the answer whose first occurrence comes earliest among the first k samples. The
    winner is graded by ``correct`` of that first occurrence. Returns 0.0 when none of the first k
    samples has an answer. Raises ``ValueError`` when fewer than k samples are given.
    """
    if len(answers) != len(correct):
        raise ValueError(f"maj@k: {len(answers)} answers but {len(correct)} correctness flags")
    if k < 1:
        raise ValueError(f"maj@k needs k >= 1, got k={k}")
    if len(answers) < k:
        raise ValueError(f"maj@{k} needs at least k={k} samples per item, got n={len(answers)}")
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, a in enumerate(answers[:k]):
        if a is None:
            continue
        counts[a] = counts.get(a, 0) + 1
        first.setdefault(a, i)
    if not counts:
        return 0.0
    winner = min(counts, key=lambda a: (-counts[a], first[a]))  # most votes, then earliest
    return 1.0 if correct[first[winner]] else 0.0


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t quantile t_{0.975, df} (scipy when installed, else a table)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    try:
        from scipy.stats import t  # optional dependency

        return float(t.ppf(0.975, df))
    except ImportError:
        pass
    if df > 120:
        return 1.96
    return _T975[max(d for d in _T975 if d <= df)]


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% confidence half-width of the mean, ``t_{0.975, n-1} * s / sqrt(n)``.

    ``s`` is the sample standard deviation (ddof=1). NaN/None values are dropped first.
    Returns ``(nan, nan)`` for no values and ``(mean, nan)`` for one value (no spread to use).
    """
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    mean = sum(xs) / n
    if n == 1:
        return mean, math.nan
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, t_quantile_975(n - 1) * math.sqrt(var / n)


def item_metrics(correct: Sequence[bool], answers: Sequence[str | None], k_values: Sequence[int]) -> dict[str, float]:
    """pass@k and maj@k of one item for every k in ``k_values`` (keys ``"pass@k"``, ``"maj@k"``)."""
    n, c = len(correct), sum(bool(x) for x in correct)
    out: dict[str, float] = {}
    for k in k_values:
        out[f"pass@{k}"] = pass_at_k(n, c, k)
        out[f"maj@{k}"] = maj_at_k(answers, correct, k)
    return out


def aggregate_items(per_item: Sequence[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean over items with a 95% CI for every metric key the items share: ``{key: (mean, ci95)}``.

    The interval treats items as i.i.d. draws from the task distribution (the usual benchmark
    standard error); it says nothing about seed-to-seed variance of training.
    """
    if not per_item:
        return {}
    keys = [k for k in per_item[0] if all(k in d for d in per_item)]
    return {k: mean_ci95([d[k] for d in per_item]) for k in keys}
