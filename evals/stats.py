"""Intervals, verdicts and power for final accuracies, with the seed as the unit of replication.

The data of one preset is a matrix ``C [S, I]``: seed s, held-out item i, and the item's score in
that run (greedy correctness 0/1, or the item's unbiased pass@k estimate). Every run and the base
model are evaluated on the same items, and runs with the same seed share the training prompts'
order and the sampler's seed, so two presets are compared *paired*: ``D = A - B`` cell by cell.

Model (a two-way crossed random-effects ANOVA without replication, Searle, Casella & McCulloch
1992, ch. 4)::

    D[s, i] = mu + a_s + b_i + e_si,   a_s ~ (0, s2_seed),  b_i ~ (0, s2_item),  e_si ~ (0, s2_res)

``a_s`` is what a training seed does to the whole run, ``b_i`` what an item does to the difference
whatever the seed (the held-out items are a sample of the task), ``e_si`` the rest. With the mean
squares ``MS_seed = I * var_s(row means)``, ``MS_item = S * var_i(column means)`` and the residual
``MS_res`` of the two-way table,

    E[MS_seed] = I s2_seed + s2_res,  E[MS_item] = S s2_item + s2_res,  E[MS_res] = s2_res
    Var(mean D) = s2_seed / S + s2_item / I + s2_res / (S I)
                = (MS_seed + MS_item - MS_res) / (S I)                          (1)

and the estimate (1) (its item part ``MS_item - MS_res`` floored at 0; its seed part ``MS_seed``
raised to the 2.5% quantile of ``MS_res * chi2(S-1) / (S-1)`` where it falls below, so two seeds that
agree by chance do not give a zero-width interval) is referred to a t
distribution with Satterthwaite's (1946) degrees of freedom

    nu = (sum_k c_k MS_k)^2 / sum_k (c_k MS_k)^2 / df_k                         (2)

(``df_seed = S - 1``, ``df_item = I - 1``, ``df_res = (S - 1)(I - 1)``). When the items add nothing
beyond what the seeds show, (1) is ``MS_seed / (S I) = var_s(per-seed difference) / S`` and (2) is
``S - 1``: the t interval over the per-seed paired differences. Items enter through each seed's
score; seeds are the unit. No resampling, so nothing depends on a random seed. At least 2 seeds
are needed for an interval (one run has no seed-to-seed spread to measure).

Verdicts (:func:`verdict`) follow the two one-sided tests (TOST, Schuirmann 1987) for a margin ``m``
declared before the runs: "equivalent within +/-m" when the 90% interval lies inside (-m, +m),
"better"/"worse" when the 95% interval excludes 0, otherwise "inconclusive (the data allow a..b)".

Power (:func:`power`, :func:`equivalence_power`): from variance components measured on pilot runs,
the probability that a study with S seeds and I items finds a true difference ``delta`` (noncentral
t with the degrees of freedom of (2)), or shows equivalence within +/-m when the true difference is 0
(``2 F_t(m / se - t_{1-alpha, nu}) - 1``, Chow & Liu 2008, sec. 10.2).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class Components:
    """Variance components of a paired difference (or of one preset's scores), per cell."""

    seed: float  # s2_seed: between-seed variance of a run's mean
    item: float  # s2_item: between-item variance of an item's mean
    res: float  # s2_res: the rest (seed x item)
    seeds: int  # S the components were measured on
    items: int  # I the components were measured on

    def se(self, seeds: int, items: int) -> float:
        """Standard error of the mean difference at ``seeds`` x ``items`` (eq. 1)."""
        return math.sqrt(self.seed / seeds + self.item / items + self.res / (seeds * items))

    def df(self, seeds: int, items: int) -> float:
        """Satterthwaite degrees of freedom (eq. 2) of the estimate of :meth:`se` at this size."""
        S, I = seeds, items
        ms_seed, ms_item, ms_res = I * self.seed + self.res, S * self.item + self.res, self.res
        terms = [(ms_seed, S - 1)]
        if self.item > 0:
            terms += [(ms_item, I - 1), (-ms_res, (S - 1) * (I - 1))]
        return _satterthwaite(terms)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Estimate:
    """A mean (or a paired difference) with its 95% interval, the 90% interval a TOST uses, the
    standard error and the degrees of freedom; NaN bounds when there is no interval (1 seed)."""

    mean: float
    lo: float
    hi: float
    se: float
    df: float
    seeds: int
    items: int
    lo90: float = math.nan
    hi90: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)


def _satterthwaite(terms: list[tuple[float, float]]) -> float:
    """Degrees of freedom of ``sum_k c_k MS_k`` from ``[(c_k MS_k, df_k)]`` (eq. 2)."""
    num = sum(v for v, _ in terms) ** 2
    den = sum(v * v / d for v, d in terms if d > 0)
    return float(num / den) if den > 0 else math.inf


def _matrix(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X[None] if X.ndim == 1 else X


def _mean_squares(D: np.ndarray) -> tuple[float, float, float]:
    """``(MS_seed, MS_item, MS_res)`` of the two-way table ``D [S, I]`` (NaN where a level has one
    entry: no seed part at S = 1, no item part at I = 1, no residual unless both exceed 1)."""
    S, I = D.shape
    grand = D.mean()
    row, col = D.mean(axis=1), D.mean(axis=0)
    ms_seed = I * float(((row - grand) ** 2).sum()) / (S - 1) if S > 1 else math.nan
    ms_item = S * float(((col - grand) ** 2).sum()) / (I - 1) if I > 1 else math.nan
    if S > 1 and I > 1:
        ms_res = float(((D - row[:, None] - col[None, :] + grand) ** 2).sum()) / ((S - 1) * (I - 1))
    else:
        ms_res = math.nan
    return ms_seed, ms_item, ms_res


def components(D) -> Components:
    """Estimate the variance components of ``D [S, I]`` (method of moments on the two-way table's
    mean squares; a negative estimate is set to 0). Needs S >= 2 for the seed part and I >= 2 for
    the item part (a missing part is NaN)."""
    D = _matrix(D)
    S, I = D.shape
    ms_seed, ms_item, ms_res = _mean_squares(D)
    s2_res = ms_res
    s2_seed = max((ms_seed - ms_res) / I, 0.0) if S > 1 and I > 1 else (ms_seed / I if S > 1 else math.nan)
    s2_item = max((ms_item - ms_res) / S, 0.0) if S > 1 and I > 1 else math.nan
    if S == 1 and I > 1:  # one run: item and residual variance are confounded; all counted as item
        s2_item, s2_res = ms_item, 0.0
    return Components(seed=float(s2_seed), item=float(s2_item), res=float(s2_res if S > 1 else 0.0), seeds=S, items=I)


def _interval(D: np.ndarray, clip: tuple[float, float] | None) -> Estimate:
    S, I = D.shape
    mean = float(D.mean())
    if S < 2:
        return Estimate(mean, math.nan, math.nan, math.nan, math.nan, S, I)
    ms_seed, ms_item, ms_res = _mean_squares(D)
    terms = [(ms_seed, S - 1)]
    if I > 1:
        # E[MS_seed] = I s2_seed + s2_res >= s2_res: a seed spread in the lowest 2.5% of what the
        # residual alone gives (seeds that happen to agree exactly) is raised to that quantile, so
        # an interval never has zero width by chance; elsewhere MS_seed is used as is
        floor = ms_res * _st.chi2.ppf(0.025, S - 1) / (S - 1)
        terms = [(max(ms_seed, floor), S - 1)]
        if ms_item > ms_res:  # the items' own part of eq. 1, floored at 0
            terms += [(ms_item, I - 1), (-ms_res, (S - 1) * (I - 1))]
    var = sum(v for v, _ in terms) / (S * I)
    se = math.sqrt(max(var, 0.0))
    df = _satterthwaite(terms) if se > 0 else float(S - 1)
    t95, t90 = _st.t.ppf(0.975, df), _st.t.ppf(0.95, df)
    lo, hi, lo90, hi90 = mean - t95 * se, mean + t95 * se, mean - t90 * se, mean + t90 * se
    if clip is not None:
        lo, hi = max(lo, clip[0]), min(hi, clip[1])
        lo90, hi90 = max(lo90, clip[0]), min(hi90, clip[1])
    return Estimate(mean, float(lo), float(hi), se, float(df), S, I, float(lo90), float(hi90))


def mean_interval(C) -> Estimate:
    """Mean of ``C [S, I]`` (scores in [0, 1]) with its 95% t interval (eqs. 1-2), clipped to [0, 1]."""
    C = _matrix(C)
    if C.size == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0)
    return _interval(C, (0.0, 1.0))


def paired_difference(A, B) -> Estimate:
    """mean(A) - mean(B) for ``A [S, I]`` and ``B [S, I]`` (row s of both = the same seed, column
    i = the same item), with its 95% (and 90%) t interval over seeds, items entering through each
    seed's score (eqs. 1-2).

    ``B`` may have a single row (the base model, evaluated once): it is then the same for every
    seed of ``A``, and the difference is ``A[s, i] - B[0, i]``.
    """
    A, B = _matrix(A), _matrix(B)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"paired difference needs the same items: {A.shape[1]} vs {B.shape[1]}")
    if B.shape[0] not in (1, A.shape[0]):
        raise ValueError(f"paired difference needs the same seeds: {A.shape[0]} vs {B.shape[0]}")
    if A.size == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0)
    return _interval(A - B, (-1.0, 1.0))


def significant(lo: float, hi: float) -> bool:
    """True when a 95% interval of a difference excludes 0."""
    return math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0)


def equivalent(est: Estimate, margin: float | None) -> bool:
    """TOST at level 0.05: the 90% interval lies inside (-margin, +margin)."""
    return (margin is not None and margin > 0 and math.isfinite(est.lo90) and math.isfinite(est.hi90)
            and -margin < est.lo90 and est.hi90 < margin)


def verdict(est: Estimate, margin: float | None = None, digits: int = 3) -> str:
    """The comparison in plain words: "better", "worse", "equivalent within +/-m" or
    "inconclusive (the data allow a..b)"; a significant difference that is also inside the margin
    says so ("better, within +/-m")."""
    f = f"{{:+.{digits}f}}"
    m = None if margin is None or not margin > 0 else f"±{margin:g}"
    if not (math.isfinite(est.lo) and math.isfinite(est.hi)):
        return f"inconclusive ({est.seeds} seed{'s' if est.seeds != 1 else ''}: no interval)"
    if significant(est.lo, est.hi):
        word = "better" if est.lo > 0 else "worse"
        return f"{word}, within {m}" if m and equivalent(est, margin) else word
    if m and equivalent(est, margin):
        return f"equivalent within {m}"
    return f"inconclusive (the data allow {f.format(est.lo)}..{f.format(est.hi)})"


def power(delta: float, comp: Components, seeds: int, items: int, alpha: float = 0.05) -> float:
    """Probability that the two-sided level-``alpha`` interval of a study with ``seeds`` x ``items``
    excludes 0 when the true difference is ``delta`` (noncentral t, Satterthwaite df)."""
    if seeds < 2:
        return math.nan
    se, df = comp.se(seeds, items), comp.df(seeds, items)
    if se == 0:
        return 1.0 if delta != 0 else alpha
    tc = _st.t.ppf(1 - alpha / 2, df)
    nc = delta / se
    return float(_st.nct.sf(tc, df, nc) + _st.nct.cdf(-tc, df, nc))


def equivalence_power(margin: float, comp: Components, seeds: int, items: int, alpha: float = 0.05,
                      delta: float = 0.0) -> float:
    """Probability that the (1 - 2 alpha) interval falls inside (-margin, +margin) (TOST) when the
    true difference is ``delta`` (default 0): ``F(( m - d)/se - t) + F((m + d)/se - t) - 1`` with
    F the t distribution's cdf (Chow & Liu 2008, sec. 10.2), floored at 0."""
    if seeds < 2:
        return math.nan
    se, df = comp.se(seeds, items), comp.df(seeds, items)
    if se == 0:
        return 1.0 if abs(delta) < margin else 0.0
    tc = _st.t.ppf(1 - alpha, df)
    p = _st.t.cdf((margin - delta) / se - tc, df) + _st.t.cdf((margin + delta) / se - tc, df) - 1
    return float(max(p, 0.0))


def seeds_needed(target: float, fn, comp: Components, items: int, max_seeds: int = 200) -> int | None:
    """Smallest S >= 2 with ``fn(comp, S, items) >= target`` (None beyond ``max_seeds``)."""
    for S in range(2, max_seeds + 1):
        if fn(comp, S, items) >= target:
            return S
    return None


def minimum_detectable(comp: Components, seeds: int, items: int, target: float = 0.8,
                       alpha: float = 0.05) -> float:
    """Smallest true difference a study of this size finds with probability ``target``."""
    if seeds < 2:
        return math.nan
    lo, hi = 0.0, 1.0
    if power(hi, comp, seeds, items, alpha) < target:
        return math.inf
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power(mid, comp, seeds, items, alpha) < target else (lo, mid)
    return hi
